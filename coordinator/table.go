package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/karch-archive/karch/archive"
)

// Table is the Iceberg table that committed windows join (icetable.Table). The manifest
// stays the truth and is committed first; the table follows it, one snapshot per window,
// in window order (docs/DESIGN.md, "The Iceberg table").
type Table interface {
	// Append adds the committed window m, whose manifest ref names, unless the table holds
	// it already, and reports whether it added it.
	Append(ctx context.Context, m *archive.Manifest, ref archive.ManifestRef) (bool, error)
	// Holds reports which windows of the pipeline the table holds, by start.
	Holds(ctx context.Context, pipeline string) (map[time.Time]bool, error)
}

// join adds a committed window to the table. A failure does not stop the archive, which
// the table only mirrors: it is kept as the run's error, and no later window is tried in
// this run, as it would enter the table out of order; the next run catches up.
func (c *coordinator) join(ctx context.Context, s *stored) {
	if c.deps.Table == nil || c.tableErr != nil || !s.Parquet() {
		return
	}
	added, err := c.deps.Table.Append(ctx, s.Manifest, s.ref)
	if err != nil {
		c.tableErr = fmt.Errorf("window %s is committed, and not yet in the table: %w", s.Window.Start.Format(time.RFC3339), err)
		c.log.Warn("the table lags the archive: the next run appends what it lacks", "window", s.Window.Start, "err", err)
		return
	}
	if added {
		c.log.Info("window added to the table", "window", s.Window.Start)
	}
	c.deps.Observer.Table(s.Window)
}

// catchUp appends the committed windows up to head that the table lacks, oldest first: a
// run that died between a manifest and its snapshot, or a catalog that was down, left
// them. It walks the chain back from head to the newest window the table holds (or to a
// window without Parquet objects, or the chain's first).
func (c *coordinator) catchUp(ctx context.Context, head *stored) {
	if c.deps.Table == nil || head == nil {
		return
	}
	holds, err := c.deps.Table.Holds(ctx, c.cfg.Pipeline)
	if err != nil {
		c.tableErr = fmt.Errorf("read the table: %w", err)
		c.log.Warn("the table cannot be read: the next run appends what it lacks", "err", err)
		return
	}
	var missing []*stored
	for s := head; s.Parquet() && !holds[s.Window.Start.UTC()]; {
		missing = append(missing, s)
		if s.Previous == nil {
			break
		}
		if s, err = c.readManifest(ctx, s.Previous.Key); err != nil {
			c.tableErr = fmt.Errorf("catch the table up: %w", err)
			return
		}
	}
	if len(missing) > 0 {
		c.log.Info("appending committed windows that the table lacks", "windows", len(missing), "from", missing[len(missing)-1].Window.Start)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		c.join(ctx, missing[i])
	}
	if len(missing) == 0 && holds[head.Window.Start.UTC()] {
		c.deps.Observer.Table(head.Window)
	}
}
