package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
)

// Runner runs the shards of a plan.
type Runner interface {
	// Run runs every shard of plan, whose URL the shards read, and returns once all have
	// succeeded or one has failed for good. A permanent failure is marked
	// failure.Permanent.
	Run(ctx context.Context, planURL string, plan *archive.Plan) error
}

// Deps are the coordinator's connections to the world.
type Deps struct {
	// Bucket is the destination, rooted at the pipeline's prefix; StoreURL is the same
	// place as a URL, for the shards.
	Bucket   blob.Bucket
	StoreURL string
	Locker   lock.Locker
	Offsets  OffsetLister
	Runner   Runner
	// Batches runs a backfill's shards; only RunBackfill needs it.
	Batches BatchRunner
	// Table, when set, is the Iceberg table that each committed window joins.
	Table Table
	// Observer, when set, hears of the chain's head and of each window, for metrics.
	Observer Observer
	Logger   *slog.Logger
	Now      func() time.Time
	Version  string
}

// Observer hears what a run learns. It keeps metrics out of the coordinator: cmd/karch turns
// these calls into Prometheus metrics.
type Observer interface {
	// Head is told the newest committed window: first the one the run found, then each one
	// it takes through to a manifest.
	Head(w archive.Window)
	// Window is told what the run did with each window.
	Window(r WindowResult)
	// Table is told each window that the table holds once the run appended it or found it
	// there, in window order.
	Table(w archive.Window)
}

type nopObserver struct{}

func (nopObserver) Head(archive.Window)  {}
func (nopObserver) Window(WindowResult)  {}
func (nopObserver) Table(archive.Window) {}

// WindowResult is what one run did with one window.
type WindowResult struct {
	Window   archive.Window
	Records  int64
	RawBytes int64
	Bytes    int64
	Duration time.Duration
	// Committed is false when another run had committed the window already.
	Committed bool
}

// ErrLeaseLost is returned when the lease ended while windows were in progress.
var ErrLeaseLost = errors.New("coordinator: lease lost; stopped before committing")

// Run archives every window of the pipeline that is due, oldest first, up to
// cfg.MaxWindows. It returns without error when nothing is due or another coordinator holds
// the lease.
func Run(ctx context.Context, cfg Config, deps Deps) ([]WindowResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Logger.With("pipeline", cfg.Pipeline)
	lease, err := deps.Locker.Acquire(ctx, "karch:lease:"+cfg.Pipeline)
	if errors.Is(err, lock.ErrHeld) {
		log.Info("another coordinator holds the lease; nothing to do")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	if deps.Observer == nil {
		deps.Observer = nopObserver{}
	}
	c := &coordinator{cfg: cfg, deps: deps, token: lease.Token(), runID: newRunID(deps.Now()), log: log}
	c.log = c.log.With("run_id", c.runID, "fencing_token", c.token)
	results, err := c.run(lease.Ctx())
	if err != nil && lease.Ctx().Err() != nil && ctx.Err() == nil {
		return results, fmt.Errorf("%w: %w", ErrLeaseLost, context.Cause(lease.Ctx()))
	}
	if err == nil {
		err = c.tableErr
	}
	return results, err
}

type coordinator struct {
	cfg   Config
	deps  Deps
	token int64
	runID string
	log   *slog.Logger
	// bound and boundAt are set by a backfill that ends where committed windows begin: the
	// first offsets of the window that starts at boundAt (chain.bound).
	bound       map[archive.TopicPartition]int64
	boundAt     time.Time
	boundWindow archive.Window
	// tableErr is the first failure to bring the table up to the archive; the run goes on
	// archiving and ends with it.
	tableErr error
}

func (c *coordinator) run(ctx context.Context) ([]WindowResult, error) {
	prev, err := c.latestManifest(ctx)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		c.deps.Observer.Head(prev.Window)
	}
	c.catchUp(ctx, prev)
	var results []WindowResult
	for len(results) < c.cfg.MaxWindows {
		w, due, err := c.nextWindow(ctx, prev)
		if err != nil || !due {
			return results, err
		}
		if len(results) == 0 {
			if err := c.checkStore(ctx); err != nil {
				return nil, err
			}
		}
		m, res, err := c.window(ctx, w, prev)
		if err != nil {
			return results, fmt.Errorf("window %s: %w", w.Start.Format(time.RFC3339), err)
		}
		results = append(results, res)
		c.deps.Observer.Window(res)
		c.deps.Observer.Head(m.Window)
		c.join(ctx, m)
		prev = m
	}
	return results, nil
}

// nextWindow is the window that continues the chain after prev: the one the chain's claim
// names, whatever its length (a coordinator with other settings planned it, and it is
// finished as planned), or else the next window of this run's length, if it is due.
func (c *coordinator) nextWindow(ctx context.Context, prev *stored) (archive.Window, bool, error) {
	cl, err := c.readClaim(ctx, c.slot(prev))
	if err != nil {
		return archive.Window{}, false, err
	}
	if cl != nil {
		if d := cl.Window.End.Sub(cl.Window.Start); d != c.cfg.Window {
			c.log.Warn("finishing the window that the chain's claim names, planned with another window length", "window", cl.Window.Start, "length", d.String())
		}
		return cl.Window, true, nil
	}
	next := c.next(prev)
	if err := c.checkAligned(next); err != nil {
		return archive.Window{}, false, err
	}
	windows := dueWindows(next, c.cfg.Window, c.cfg.Lateness, c.clock(), 1)
	if len(windows) == 0 {
		c.log.Info("no window is due yet", "next_window", next, "due_at", alignDown(next, c.cfg.Window).Add(c.cfg.Window+c.cfg.Lateness))
		return archive.Window{}, false, nil
	}
	return windows[0], true, nil
}

// maxLookback bounds the search for the newest manifest of a pipeline that has no start.
const maxLookback = 400 * 24 * time.Hour

// latestManifest finds the newest committed window, whatever its length (the pipeline's
// window may have changed), walking back one day folder at a time from today, so that a
// listing covers one day of objects rather than the pipeline's whole history. It stops at the
// configured start, or after maxLookback.
func (c *coordinator) latestManifest(ctx context.Context) (*stored, error) {
	stop := c.deps.Now().Add(-maxLookback)
	if !c.cfg.Start.IsZero() {
		stop = alignDown(c.cfg.Start, 24*time.Hour)
	}
	for day := alignDown(c.deps.Now(), 24*time.Hour); !day.Before(stop); day = day.Add(-24 * time.Hour) {
		key, err := c.latestManifestOn(ctx, day)
		if err != nil {
			return nil, err
		}
		if key != "" {
			return c.readManifest(ctx, key)
		}
	}
	return nil, nil
}

// latestManifestOn returns the key of the manifest of the window that ends last among those
// that start on day, or "".
func (c *coordinator) latestManifestOn(ctx context.Context, day time.Time) (string, error) {
	var last string
	var end time.Time
	prefix := c.cfg.Pipeline + "/dt=" + day.Format("2006-01-02") + "/"
	err := c.deps.Bucket.List(ctx, prefix, func(o blob.ObjectInfo) error {
		if path.Base(o.Key) != archive.ManifestName {
			return nil
		}
		w, ok := archive.ParseWindowDir(o.Key)
		if ok && w.End.After(end) {
			last, end = o.Key, w.End
		}
		return nil
	})
	return last, err
}

// stored is a committed manifest with the reference that the next window's manifest records.
type stored struct {
	*archive.Manifest
	ref archive.ManifestRef
}

// readManifest reads a committed manifest. One that does not decode is permanent: a
// committed manifest is never rewritten, so a retry would read the same bytes.
func (c *coordinator) readManifest(ctx context.Context, key string) (*stored, error) {
	data, err := blob.ReadAll(ctx, c.deps.Bucket, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	m, err := archive.DecodeManifest(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read manifest %s: %w", key, err))
	}
	return &stored{Manifest: m, ref: archive.RefOf(key, data)}, nil
}
