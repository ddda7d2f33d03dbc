// Package audit checks a pipeline's archive without trusting the run that wrote it: every
// committed manifest against its objects, its receipts and plan, and the chain of windows
// (docs/DESIGN.md, "The promise"). It is what `karch verify` runs.
package audit

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// Options say how far a verification goes.
type Options struct {
	// From and To bound the windows checked by start, [From, To); zero: unbounded.
	From, To time.Time
	// Deep reads every object: decompresses it, decodes every record, checks offsets and
	// recomputes counts and digests. Quick (the default) asks the store for size and
	// checksum only.
	Deep bool
	// Parallel bounds the objects checked at once (default 4).
	Parallel int
	// Progress, when set, hears of each object checked, with its stored size.
	Progress func(bytes int64)
	// Kafka, when set, is the source cluster: every archived record of a range it still
	// holds is compared with its own, and every partition of the topic must be covered.
	Kafka Kafka
}

// Problem is one thing wrong with the archive, named by the object it is about.
type Problem struct {
	// Key is the object's key relative to the store's root, "" for the chain itself.
	Key string `json:"key,omitempty"`
	// Offset is the record's offset where the problem is one record.
	Offset *int64 `json:"offset,omitempty"`
	What   string `json:"problem"`
}

func (p Problem) String() string {
	s := p.What
	if p.Offset != nil {
		s = fmt.Sprintf("offset %d: %s", *p.Offset, s)
	}
	if p.Key != "" {
		s = p.Key + ": " + s
	}
	return s
}

// Window is what verification found of one committed window.
type Window struct {
	Window   archive.Window `json:"window"`
	Manifest string         `json:"manifest"`
	// SHA256 is the digest of the manifest's stored bytes, which the next manifest records.
	SHA256   string        `json:"sha256"`
	Objects  int           `json:"objects"`
	Records  int64         `json:"records"`
	Bytes    int64         `json:"bytes"`
	Gaps     []archive.Gap `json:"gaps,omitempty"`
	Problems []Problem     `json:"problems"`
}

// Report is a verification's outcome.
type Report struct {
	Pipeline string   `json:"pipeline"`
	Deep     bool     `json:"deep"`
	Windows  []Window `json:"windows"`
	// Chain holds the problems between windows: a window missing from the chain, offsets
	// that do not continue, a manifest that does not match its successor's record of it.
	Chain []Problem `json:"chain"`
	// Uncommitted lists windows with a plan and no manifest yet.
	Uncommitted []archive.Window `json:"uncommitted,omitempty"`
}

// Problems counts every problem in the report.
func (r *Report) Problems() int {
	n := len(r.Chain)
	for _, w := range r.Windows {
		n += len(w.Problems)
	}
	return n
}

// Verify checks every committed window of pipeline in b that starts in [opts.From, opts.To).
// Problems with the archive go into the report; an error means the check could not be done
// (the store failed), and is retryable unless marked otherwise.
func Verify(ctx context.Context, b blob.Bucket, pipeline string, opts Options) (*Report, error) {
	if opts.Parallel < 1 {
		opts.Parallel = 4
	}
	folders, err := listWindows(ctx, b, pipeline, opts)
	if err != nil {
		return nil, err
	}
	r := &Report{Pipeline: pipeline, Deep: opts.Deep, Windows: []Window{}, Chain: []Problem{}}
	var ids map[string]string
	if opts.Kafka != nil {
		if ids, err = opts.Kafka.TopicIDs(ctx); err != nil {
			return nil, err
		}
	}
	var committed []*window
	for _, f := range folders {
		if !f.committed {
			r.Uncommitted = append(r.Uncommitted, f.window)
			continue
		}
		w, err := checkWindow(ctx, b, f, opts)
		if err == nil && opts.Kafka != nil && w.manifest != nil {
			err = w.checkKafka(ctx, b, opts.Kafka, ids)
		}
		if err != nil {
			return nil, err
		}
		committed = append(committed, w)
		r.Windows = append(r.Windows, w.report)
	}
	chain, err := checkChain(ctx, b, committed)
	if err != nil {
		return nil, err
	}
	r.Chain = append(r.Chain, chain...)
	if n := len(committed); opts.Kafka != nil && n > 0 && committed[n-1].manifest != nil {
		uncovered, err := checkTopic(ctx, opts.Kafka, committed[n-1], ids)
		if err != nil {
			return nil, err
		}
		r.Chain = append(r.Chain, uncovered...)
	}
	for i, w := range committed {
		r.Windows[i] = w.report // checkChain adds to the windows' reports
	}
	return r, nil
}

// folder is one window's folder in the store.
type folder struct {
	dir       string
	window    archive.Window
	committed bool
	receipts  []string
}

// listWindows lists the pipeline's window folders in scope, oldest first.
func listWindows(ctx context.Context, b blob.Bucket, pipeline string, opts Options) ([]*folder, error) {
	byDir := map[string]*folder{}
	var order []*folder
	err := b.List(ctx, pipeline+"/dt=", func(o blob.ObjectInfo) error {
		w, ok := archive.ParseWindowDir(o.Key)
		if !ok || (!opts.From.IsZero() && w.Start.Before(opts.From)) || (!opts.To.IsZero() && !w.Start.Before(opts.To)) {
			return nil
		}
		dir := archive.WindowDir(pipeline, w.Start, w.End.Sub(w.Start))
		f := byDir[dir]
		if f == nil {
			f = &folder{dir: dir, window: w}
			byDir[dir] = f
			order = append(order, f)
		}
		switch rel := strings.TrimPrefix(o.Key, dir); {
		case rel == archive.ManifestName:
			f.committed = true
		case path.Dir(rel) == path.Dir(archive.ReceiptKey(0)):
			f.receipts = append(f.receipts, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the windows of %s: %w", pipeline, err)
	}
	slices.SortStableFunc(order, func(a, b *folder) int { return a.window.Start.Compare(b.window.Start) })
	return order, nil
}
