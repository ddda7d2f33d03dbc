package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
)

// BatchRunner runs a backfill's batch: completion index i runs the batch's task i.
type BatchRunner interface {
	// RunBatch returns once every index has succeeded or one has failed for good (marked
	// failure.Permanent).
	RunBatch(ctx context.Context, batchURL string, batch *archive.Batch) error
}

// Backfill is a range of history to archive in one run: the windows of [From, To).
type Backfill struct {
	From, To time.Time
	// MaxIndexes is the most completion indexes of one batch (one Job); a larger backfill
	// runs as several batches, one after another. No window is split between batches.
	MaxIndexes int
	// LeaseWait is how long to wait for the pipeline's lease while another coordinator
	// holds it.
	LeaseWait time.Duration
	// Poll is how often the next window's receipts are looked for; zero: 1s.
	Poll time.Duration
	// Progress, when set, hears of each window as it is committed (or found committed).
	Progress func(BackfillProgress)
}

// DefaultMaxIndexes bounds a backfill's Jobs (docs/DESIGN.md, "Backfill"): the Job
// controller tracks each index, and a shard reads the whole batch to find its task.
const DefaultMaxIndexes = 10000

// BackfillProgress is how far a backfill is.
type BackfillProgress struct {
	Windows, Committed int
	// Records and RawBytes count the windows committed so far, earlier runs' included.
	Records, RawBytes int64
	// New counts the raw bytes this run archived, for its rate.
	New     int64
	Elapsed time.Duration
}

func (bf Backfill) validate(cfg Config) error {
	bad := func(format string, a ...any) error {
		return failure.Permanent(fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...)))
	}
	switch {
	case bf.From.IsZero() || bf.To.IsZero():
		return bad("from, to: both are required")
	case !bf.To.After(bf.From):
		return bad("to: %s is not after from %s", bf.To.Format(time.RFC3339), bf.From.Format(time.RFC3339))
	case !alignDown(bf.From, cfg.Window).Equal(bf.From):
		return bad("from: %s is not the start of a %s window", bf.From.Format(time.RFC3339), cfg.Window)
	case !alignDown(bf.To, cfg.Window).Equal(bf.To):
		return bad("to: %s is not the start of a %s window", bf.To.Format(time.RFC3339), cfg.Window)
	case !cfg.Until.IsZero() && bf.To.After(cfg.Until):
		return bad("to: %s is after until %s", bf.To.Format(time.RFC3339), cfg.Until.Format(time.RFC3339))
	case bf.MaxIndexes < cfg.Shards:
		return bad("job_max_indexes: %d is less than shards %d: a window's shards run in one Job", bf.MaxIndexes, cfg.Shards)
	}
	return nil
}

// RunBackfill archives every window of [bf.From, bf.To) that is not committed yet, running
// the shards of all of them at once through deps.Batches and committing the manifests in
// window order, each as soon as its shards are verified. It holds the pipeline's lease
// throughout. The range must continue the pipeline's committed windows, or end exactly where
// they begin, or the pipeline must have none; a range whose windows are committed from its
// start (a rerun) carries on after them.
func RunBackfill(ctx context.Context, cfg Config, bf Backfill, deps Deps) ([]WindowResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := bf.validate(cfg); err != nil {
		return nil, err
	}
	if deps.Observer == nil {
		deps.Observer = nopObserver{}
	}
	log := deps.Logger.With("pipeline", cfg.Pipeline, "backfill_from", bf.From, "backfill_to", bf.To)
	lease, err := acquireWaiting(ctx, deps.Locker, "karch:lease:"+cfg.Pipeline, bf.LeaseWait, log)
	if err != nil {
		return nil, err
	}
	defer lease.Release(context.WithoutCancel(ctx))
	c := &coordinator{cfg: cfg, deps: deps, token: lease.Token(), runID: newRunID(deps.Now()), log: log}
	c.log = c.log.With("run_id", c.runID, "fencing_token", c.token)
	results, err := c.backfill(lease.Ctx(), bf)
	if err != nil && lease.Ctx().Err() != nil && ctx.Err() == nil {
		return results, fmt.Errorf("%w: %w", ErrLeaseLost, context.Cause(lease.Ctx()))
	}
	if err == nil {
		err = c.tableErr
	}
	return results, err
}

// acquireWaiting takes the lease, waiting up to wait while another coordinator (a scheduled
// run) holds it.
func acquireWaiting(ctx context.Context, l lock.Locker, name string, wait time.Duration, log *slog.Logger) (lock.Lease, error) {
	deadline := time.Now().Add(wait)
	for {
		lease, err := l.Acquire(ctx, name)
		if !errors.Is(err, lock.ErrHeld) {
			return lease, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lease %s: another coordinator held it for all of lease_wait %s; run the backfill again when it is done", name, wait)
		}
		log.Info("another coordinator holds the lease; waiting", "lease", name)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(5*time.Second, max(wait/10, 100*time.Millisecond))):
		}
	}
}

// span is a backfill's range against what the store holds.
type span struct {
	windows []archive.Window
	// prev is the committed window that ends at the range's start; done the committed
	// windows at its start (an earlier run's); after the committed window that starts at its
	// end. Each may be absent.
	prev  *stored
	done  []*stored
	after *stored
}

func (c *coordinator) backfill(ctx context.Context, bf Backfill) ([]WindowResult, error) {
	sp, err := c.span(ctx, bf)
	if err != nil {
		return nil, err
	}
	if err := c.checkStore(ctx); err != nil {
		return nil, err
	}
	if sp.after != nil {
		c.bound, c.boundAt, c.boundWindow = sp.after.firsts(), bf.To, sp.after.Window
	}
	c.log.Info("backfill starts", "windows", len(sp.windows), "committed_already", len(sp.done),
		"continues_window", sp.prev != nil, "ends_at_committed_window", sp.after != nil)
	plans, err := c.backfillPlans(ctx, sp)
	if err != nil {
		return nil, err
	}
	batches, err := c.batches(ctx, bf, sp, plans)
	if err != nil {
		return nil, err
	}
	return c.runBackfill(ctx, bf, sp, plans, batches)
}

// firsts are the first offsets of a committed window, where the windows before it end.
func (s *stored) firsts() map[archive.TopicPartition]int64 {
	out := make(map[archive.TopicPartition]int64, len(s.Partitions))
	for _, p := range s.Partitions {
		out[archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = p.First
	}
	return out
}

// span finds the committed windows around and inside the range, and refuses a range that
// would overlap committed windows or leave a gap beside them.
func (c *coordinator) span(ctx context.Context, bf Backfill) (*span, error) {
	if due := bf.To.Add(c.cfg.Lateness); due.After(c.deps.Now()) {
		return nil, refuse("to: the window that ends at %s is not due before %s (lateness %s): its records may still arrive",
			bf.To.Format(time.RFC3339), due.Format(time.RFC3339), c.cfg.Lateness)
	}
	sp := &span{}
	for t := bf.From; t.Before(bf.To); t = t.Add(c.cfg.Window) {
		sp.windows = append(sp.windows, archive.Window{Start: t, End: t.Add(c.cfg.Window)})
	}
	inside, err := c.committedIn(ctx, bf)
	if err != nil {
		return nil, err
	}
	for i, m := range inside {
		if !m.Window.Start.Equal(sp.windows[i].Start) || !m.Window.End.Equal(sp.windows[i].End) {
			return nil, refuse("window %s-%s is committed already: a backfill must not overlap committed windows (only windows committed from the range's start, by an earlier run of it, are carried on from)",
				m.Window.Start.Format(time.RFC3339), m.Window.End.Format(time.RFC3339))
		}
	}
	sp.done = inside
	if sp.prev, err = c.manifestEndingAt(ctx, bf.From); err != nil {
		return nil, err
	}
	if sp.after, err = c.manifestStartingAt(ctx, bf.To); err != nil {
		return nil, err
	}
	head, err := c.latestManifest(ctx)
	if err != nil || head == nil {
		return sp, err
	}
	switch {
	case sp.prev == nil && len(inside) == 0 && !head.Window.End.After(bf.From):
		return nil, refuse("from: the pipeline's newest committed window ends at %s: a backfill from %s would leave a gap; start it there",
			head.Window.End.Format(time.RFC3339), bf.From.Format(time.RFC3339))
	case sp.after == nil && !head.Window.Start.Before(bf.To):
		return nil, refuse("to: committed windows follow %s (the newest ends at %s) but none starts there: a backfill must end exactly where the pipeline's first committed window begins",
			bf.To.Format(time.RFC3339), head.Window.End.Format(time.RFC3339))
	}
	return sp, nil
}

func refuse(format string, a ...any) error {
	return failure.Permanent(fmt.Errorf("%w: backfill: %s", ErrConfig, fmt.Sprintf(format, a...)))
}

// committedIn lists the committed windows that overlap the range, oldest first, one day
// folder at a time.
func (c *coordinator) committedIn(ctx context.Context, bf Backfill) ([]*stored, error) {
	var keys []string
	for day := alignDown(bf.From, 24*time.Hour); day.Before(bf.To); day = day.Add(24 * time.Hour) {
		prefix := c.cfg.Pipeline + "/dt=" + day.Format("2006-01-02") + "/"
		err := c.deps.Bucket.List(ctx, prefix, func(o blob.ObjectInfo) error {
			w, ok := archive.ParseWindowDir(o.Key)
			if ok && path.Base(o.Key) == archive.ManifestName && w.End.After(bf.From) && w.Start.Before(bf.To) {
				keys = append(keys, o.Key)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
	}
	var out []*stored
	for _, k := range keys {
		m, err := c.readManifest(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *stored) int { return a.Window.Start.Compare(b.Window.Start) })
	return out, nil
}

// manifestEndingAt reads the manifest of the pipeline's committed window that ends at t,
// whatever its length (the window length may have changed since), or nil. It starts at
// most a day before t, so two day folders hold it.
func (c *coordinator) manifestEndingAt(ctx context.Context, t time.Time) (*stored, error) {
	for _, day := range []time.Time{alignDown(t.Add(-24*time.Hour), 24*time.Hour), alignDown(t.Add(-time.Nanosecond), 24*time.Hour)} {
		m, err := c.manifestWhere(ctx, c.cfg.Pipeline+"/dt="+day.Format("2006-01-02")+"/", func(w archive.Window) bool { return w.End.Equal(t) })
		if m != nil || err != nil {
			return m, err
		}
	}
	return nil, nil
}

// manifestStartingAt reads the manifest of the pipeline's committed window that starts at t,
// whatever its length, or nil.
func (c *coordinator) manifestStartingAt(ctx context.Context, t time.Time) (*stored, error) {
	prefix := archive.WindowDir(c.cfg.Pipeline, t, time.Hour)
	prefix = prefix[:strings.LastIndexByte(prefix[:len(prefix)-1], '-')+1] // ".../window=HHMMZ-", any length
	return c.manifestWhere(ctx, prefix, func(w archive.Window) bool { return w.Start.Equal(t) })
}

// manifestWhere reads the first manifest under prefix whose window is ok, or nil.
func (c *coordinator) manifestWhere(ctx context.Context, prefix string, ok func(archive.Window) bool) (*stored, error) {
	var key string
	err := c.deps.Bucket.List(ctx, prefix, func(o blob.ObjectInfo) error {
		w, parsed := archive.ParseWindowDir(o.Key)
		if key == "" && parsed && path.Base(o.Key) == archive.ManifestName && ok(w) {
			key = o.Key
		}
		return nil
	})
	if err != nil || key == "" {
		return nil, err
	}
	return c.readManifest(ctx, key)
}

// backfillPlans creates (or adopts) the plan of every window in order, each chained to the
// one before, and reads the plans of the windows committed already.
func (c *coordinator) backfillPlans(ctx context.Context, sp *span) ([]*archive.Plan, error) {
	plans := make([]*archive.Plan, len(sp.windows))
	prev := sp.prev
	for i, w := range sp.windows {
		dir := archive.WindowDir(c.cfg.Pipeline, w.Start, c.cfg.Window)
		var err error
		if i < len(sp.done) {
			plans[i], err = c.readPlan(ctx, dir+archive.PlanName)
		} else {
			plans[i], err = c.plan(ctx, dir, w, prev)
		}
		if errors.Is(err, errClaimed) {
			return nil, refuse("window %s: %v; let `karch run` finish that window first, then backfill up to where it begins", w.Start.Format(time.RFC3339), err)
		}
		if err != nil {
			return nil, fmt.Errorf("plan window %s: %w", w.Start.Format(time.RFC3339), err)
		}
		prev = &stored{Manifest: &archive.Manifest{Window: w, Partitions: partitionsOf(plans[i])}}
	}
	return plans, nil
}

// batch is one stored batch with the windows whose shards it runs.
type batch struct {
	*archive.Batch
	key         string
	first, last int // windows[first..last] of the span
}

// batches packs the shards of every window into batches of at most MaxIndexes, never
// splitting a window, and creates each batch if absent. Plans are immutable, so the packing
// is the same on every run: a rerun adopts the batches (and the Jobs) of the first.
func (c *coordinator) batches(ctx context.Context, bf Backfill, sp *span, plans []*archive.Plan) ([]*batch, error) {
	dir := archive.BackfillDir(c.cfg.Pipeline, archive.Window{Start: bf.From, End: bf.To})
	var out []*batch
	cur := &batch{Batch: &archive.Batch{Tasks: []archive.Task{}}}
	flush := func(last int) {
		cur.last = last
		cur.Batch = &archive.Batch{Format: archive.BatchFormat, Pipeline: c.cfg.Pipeline, Backfill: archive.Window{Start: bf.From, End: bf.To},
			Part: len(out), RunID: c.runID, Tasks: cur.Tasks}
		cur.key = dir + archive.BatchKey(len(out))
		out = append(out, cur)
		cur = &batch{Batch: &archive.Batch{Tasks: []archive.Task{}}, first: last + 1}
	}
	for i, p := range plans {
		if len(cur.Tasks) > 0 && len(cur.Tasks)+len(p.Shards) > bf.MaxIndexes {
			flush(i - 1)
		}
		key := archive.WindowDir(c.cfg.Pipeline, p.Window.Start, c.cfg.Window) + archive.PlanName
		for _, s := range p.Shards {
			cur.Tasks = append(cur.Tasks, archive.Task{Index: len(cur.Tasks), Plan: key, Shard: s.Index})
		}
	}
	flush(len(plans) - 1)
	for _, b := range out {
		stored, err := c.putBatch(ctx, b)
		if err != nil {
			return nil, err
		}
		b.Batch = stored
	}
	return out, nil
}

// putBatch creates a batch, or reads the one an earlier run created at its key.
func (c *coordinator) putBatch(ctx context.Context, b *batch) (*archive.Batch, error) {
	data, err := json.MarshalIndent(b.Batch, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	_, err = c.deps.Bucket.Put(ctx, b.key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if err == nil {
		return b.Batch, nil
	}
	if !blob.IsExists(err) {
		return nil, fmt.Errorf("put batch %s: %w", b.key, err)
	}
	data, err = blob.ReadAll(ctx, c.deps.Bucket, b.key)
	if err != nil {
		return nil, fmt.Errorf("read batch %s: %w", b.key, err)
	}
	theirs, err := archive.DecodeBatch(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read batch %s: %w", b.key, err))
	}
	if !slices.Equal(theirs.Tasks, b.Tasks) {
		return nil, failure.Permanent(fmt.Errorf("batch %s holds other tasks than this backfill's plans give: delete the backfill's folder %s to plan its batches again", b.key, path.Dir(b.key)))
	}
	return theirs, nil
}

// runBackfill runs the batches one after another while committing windows in order as their
// shards finish. A failed batch stops the run; what was committed stays, and a rerun
// carries on.
func (c *coordinator) runBackfill(ctx context.Context, bf Backfill, sp *span, plans []*archive.Plan, batches []*batch) ([]WindowResult, error) {
	g, gctx := errgroup.WithContext(ctx)
	ran := make(chan struct{})
	g.Go(func() error {
		for _, b := range batches {
			if b.last < len(sp.done) || len(b.Tasks) == 0 {
				continue // every window of it is committed, or it has nothing to run
			}
			c.log.Info("running a batch", "batch", b.key, "indexes", len(b.Tasks), "windows", b.last-b.first+1)
			if err := c.deps.Batches.RunBatch(gctx, c.url(b.key), b.Batch); err != nil {
				return fmt.Errorf("batch %s: %w", b.key, err)
			}
		}
		close(ran)
		return nil
	})
	var results []WindowResult
	g.Go(func() error {
		var err error
		results, err = c.commitInOrder(gctx, bf, sp, plans, ran)
		return err
	})
	err := g.Wait()
	return results, err
}

// commitInOrder commits the windows one after another, each once all of its receipts are
// stored (or, when every batch has run, at once, so that a missing receipt fails verify).
func (c *coordinator) commitInOrder(ctx context.Context, bf Backfill, sp *span, plans []*archive.Plan, ran <-chan struct{}) ([]WindowResult, error) {
	started := c.deps.Now()
	progress := BackfillProgress{Windows: len(sp.windows)}
	report := func(m *archive.Manifest, fresh bool) {
		progress.Committed++
		progress.Records += m.Records
		progress.RawBytes += m.RawBytes
		if fresh {
			progress.New += m.RawBytes
		}
		progress.Elapsed = c.deps.Now().Sub(started)
		if bf.Progress != nil {
			bf.Progress(progress)
		}
	}
	var results []WindowResult
	prev := sp.prev
	for i, w := range sp.windows {
		if i < len(sp.done) {
			prev = sp.done[i]
			results = append(results, resultOf(prev.Manifest, 0, false))
			report(prev.Manifest, false)
			c.join(ctx, prev) // an earlier run of the backfill may have stopped before the table
			continue
		}
		windowStarted := c.deps.Now()
		dir := archive.WindowDir(c.cfg.Pipeline, w.Start, c.cfg.Window)
		if err := c.awaitReceipts(ctx, bf.Poll, dir, plans[i], ran); err != nil {
			return results, err
		}
		receipts, err := verify(ctx, c.deps.Bucket, dir, plans[i])
		if err != nil {
			return results, fmt.Errorf("window %s: %w", w.Start.Format(time.RFC3339), err)
		}
		m, err := c.manifest(ctx, plans[i], receipts, prev)
		if err != nil {
			return results, fmt.Errorf("window %s: %w", w.Start.Format(time.RFC3339), err)
		}
		if i == len(sp.windows)-1 && sp.after != nil {
			m.Next = &sp.after.ref // the committed window after it records no previous: join them here
		}
		stored, committed, err := c.commit(ctx, dir, m)
		if err != nil {
			return results, fmt.Errorf("window %s: %w", w.Start.Format(time.RFC3339), err)
		}
		res := resultOf(stored.Manifest, c.deps.Now().Sub(windowStarted), committed)
		c.log.Info("window committed", "window", w.Start, "records", res.Records, "raw_bytes", res.RawBytes, "bytes", res.Bytes, "by_this_run", committed)
		results = append(results, res)
		c.deps.Observer.Window(res)
		c.deps.Observer.Head(stored.Window)
		report(stored.Manifest, committed)
		c.join(ctx, stored)
		prev = stored
	}
	return results, nil
}

// awaitReceipts returns once every shard of the plan has its receipt, or once every batch has
// run (verify then names what is missing).
func (c *coordinator) awaitReceipts(ctx context.Context, poll time.Duration, dir string, plan *archive.Plan, ran <-chan struct{}) error {
	if poll <= 0 {
		poll = time.Second
	}
	found := make([]bool, len(plan.Shards))
	for {
		missing := 0
		for i, s := range plan.Shards {
			if found[i] {
				continue
			}
			_, err := c.deps.Bucket.Head(ctx, dir+archive.ReceiptKey(s.Index))
			switch {
			case err == nil:
				found[i] = true
			case blob.IsNotFound(err):
				missing++
			default:
				return fmt.Errorf("head receipt %s: %w", dir+archive.ReceiptKey(s.Index), err)
			}
		}
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ran:
			return nil
		case <-time.After(poll):
		}
	}
}
