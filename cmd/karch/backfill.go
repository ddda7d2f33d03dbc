package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/metrics"
)

func init() {
	commands["backfill"] = command{"archive a range of history in one run: all its windows' shards at once", runBackfill}
}

const backfillUsage = `usage: karch backfill --from 2026-10-01T00:00:00Z --to 2026-11-01T00:00:00Z [--config file.yaml] [flags]

Archives every window of [from, to) with the pipeline's settings: plans them all, runs the
shards of all of them as one local pool (runner local) or one Indexed Job (runner kube; a
backfill of more than job_max_indexes shards runs as several Jobs in turn), and commits each
window's MANIFEST.json in window order as soon as its shards are verified. It holds the
pipeline's lease throughout (scheduled runs exit 0 meanwhile).
The range must continue the pipeline's newest committed window, or end exactly where its
first committed window begins, or the pipeline must have no committed window; a range that
overlaps committed windows or would leave a gap beside them is refused (exit 3). Killed, it
is run again with the same arguments: it adopts its plans, Jobs and stored pieces.
Exit codes: 0 done, 1 retryable, 2 a crash (retried), 3 permanent.
`

type backfillFlags struct {
	from, to  string
	pushEvery time.Duration
}

func (b *backfillFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.from, "from", "", "start of the first window, RFC3339")
	fs.StringVar(&b.to, "to", "", "end of the last window, RFC3339")
	fs.DurationVar(&b.pushEvery, "push-interval", 30*time.Second, "with a push gateway: how often the progress metrics are pushed while the backfill runs")
}

func (b *backfillFlags) backfill(cfg runConfig) (coordinator.Backfill, error) {
	bf := coordinator.Backfill{MaxIndexes: cfg.jobMaxIndexes, LeaseWait: cfg.leaseWait}
	if b.pushEvery <= 0 {
		return bf, failure.Permanent(fmt.Errorf("%w: --push-interval %s: want a positive duration", coordinator.ErrConfig, b.pushEvery))
	}
	for _, f := range []struct {
		name, v string
		t       *time.Time
	}{{"from", b.from, &bf.From}, {"to", b.to, &bf.To}} {
		if f.v == "" {
			return bf, failure.Permanent(fmt.Errorf("%w: --%s is required", coordinator.ErrConfig, f.name))
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			return bf, failure.Permanent(fmt.Errorf("%w: --%s %q: want RFC3339, like 2026-10-01T00:00:00Z", coordinator.ErrConfig, f.name, f.v))
		}
		*f.t = t.UTC()
	}
	return bf, nil
}

func runBackfill(ctx context.Context, args []string, stdout io.Writer) (err error) {
	var bff backfillFlags
	cli, err := parseCoordinatorFlags("backfill", backfillUsage, args, bff.register)
	if cli == nil {
		return err
	}
	started := time.Now()
	proc := metrics.NewProcess(started)
	defer func() {
		pushMetrics(ctx, cli.logger, cli.cfg.pushGateway, proc, err, "karch-backfill", "pipeline", cli.cfg.coord.Pipeline)
		if err != nil {
			cli.logger.Error("backfill failed", "pipeline", cli.cfg.coord.Pipeline, "err", err, "retryable", !failure.IsPermanent(err))
		}
	}()
	if err != nil {
		return err
	}
	bf, err := bff.backfill(cli.cfg)
	if err != nil {
		return err
	}
	deps, closeDeps, err := coordinatorDeps(ctx, cli.cfg, cli.logger)
	if err != nil {
		return err
	}
	defer closeDeps()
	if deps.Runner, err = newRunner(ctx, cli); err != nil {
		return err
	}
	deps.Batches = deps.Runner.(coordinator.BatchRunner) // both runners run batches
	deps.Observer = metrics.NewCoordinator(proc.Registerer())
	deps.Bucket = blob.WithMetrics(deps.Bucket, proc.Registerer())
	var bar *progressbar.ProgressBar
	report := progressLog(cli.logger, 10*time.Second)
	if onTerminal() {
		bar = progressbar.NewOptions64(-1, append(barOptions("backfill"), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))...)
		report = func(p coordinator.BackfillProgress) { barProgress(bar, p) }
	}
	gauges := metrics.NewBackfill(proc.Registerer())
	bf.Progress = func(p coordinator.BackfillProgress) {
		gauges.Progress(p)
		report(p)
	}
	closeTable, err := useTable(ctx, cli.cfg, &deps)
	if err != nil {
		return err
	}
	defer closeTable()
	stopPushing := pushWhileRunning(ctx, cli.logger, cli.cfg.pushGateway, bff.pushEvery, proc, "karch-backfill", "pipeline", cli.cfg.coord.Pipeline)
	results, err := coordinator.RunBackfill(ctx, cli.cfg.coord, bf, deps)
	stopPushing() // before the deferred last push, which must arrive last
	if bar != nil {
		_ = bar.Finish()
	}
	printBackfill(stdout, results, started)
	return err
}

// pushWhileRunning pushes proc's metrics every interval until stop is called. stop lets a
// push in flight finish rather than cancel it, since a cancelled request may still reach
// the gateway and land after the final push with the exit code, replacing it; a failed push
// is logged and the next one tried.
func pushWhileRunning(ctx context.Context, logger *slog.Logger, gateway string, every time.Duration, proc *metrics.Process, job string, grouping ...string) (stop func()) {
	if gateway == "" {
		return func() {}
	}
	done := make(chan struct{})
	var g errgroup.Group
	g.Go(func() error {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return nil
			case <-tick.C:
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				if err := proc.Push(pctx, gateway, job, grouping...); err != nil {
					logger.Warn("progress metrics not pushed", "err", err)
				}
				cancel()
			}
		}
	})
	return func() {
		close(done)
		_ = g.Wait()
	}
}

// backfillRate is the raw (JSON Lines) megabytes per second this run archived, and the time
// left at that pace, from the share of windows committed.
func backfillRate(p coordinator.BackfillProgress) (mbps float64, eta time.Duration) {
	if secs := p.Elapsed.Seconds(); secs > 0 {
		mbps = float64(p.New) / 1e6 / secs
	}
	if p.Committed > 0 && p.Committed < p.Windows {
		eta = time.Duration(float64(p.Elapsed) * float64(p.Windows-p.Committed) / float64(p.Committed))
	}
	return mbps, eta.Round(time.Second)
}

func barProgress(bar *progressbar.ProgressBar, p coordinator.BackfillProgress) {
	mbps, _ := backfillRate(p)
	bar.ChangeMax(p.Windows)
	bar.Describe(fmt.Sprintf("backfill: %d records, %.1f MB/s; windows", p.Records, mbps))
	_ = bar.Set(p.Committed)
}

// progressLog logs the backfill's progress at most once per every, and at its last window.
func progressLog(log *slog.Logger, every time.Duration) func(coordinator.BackfillProgress) {
	var last time.Time
	return func(p coordinator.BackfillProgress) {
		if time.Since(last) < every && p.Committed < p.Windows {
			return
		}
		last = time.Now()
		mbps, eta := backfillRate(p)
		log.Info("backfill progress", "windows", p.Windows, "committed", p.Committed, "records", p.Records,
			"raw_bytes", p.RawBytes, "mb_per_s", fmt.Sprintf("%.1f", mbps), "eta", eta.String())
	}
}

func printBackfill(w io.Writer, results []coordinator.WindowResult, started time.Time) {
	if len(results) == 0 {
		return
	}
	var records, raw, stored int64
	fresh := 0
	for _, r := range results {
		records, raw, stored = records+r.Records, raw+r.RawBytes, stored+r.Bytes
		if r.Committed {
			fresh++
		}
	}
	secs := time.Since(started).Seconds()
	fmt.Fprintf(w, "backfill %s to %s: %d windows (%d committed by this run), %d records, %.1f MB in, %.1f MB stored, %.0f s\n",
		results[0].Window.Start.Format(time.RFC3339), results[len(results)-1].Window.End.Format(time.RFC3339), len(results), fresh,
		records, float64(raw)/1e6, float64(stored)/1e6, secs)
}
