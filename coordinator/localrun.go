package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// LocalRunner runs each shard as a local `karch shard` process with JOB_COMPLETION_INDEX
// set, as an Indexed Job would: Parallelism at once, an index that exits 1 (retryable) or 2
// (a Go crash) retried up to Retries times, an exit 3 (permanent) failing the run at once.
type LocalRunner struct {
	// Karch is the karch binary.
	Karch       string
	Parallelism int
	Retries     int
	// Env is added to each shard's environment (the coordinator's own is inherited).
	Env    []string
	Logger *slog.Logger
	// Progress, when set, hears how many of a plan's shards are done: 0 when they start,
	// then after each one succeeds. Calls may come from several goroutines at once.
	Progress func(plan *archive.Plan, done int)
}

var (
	_ Runner      = (*LocalRunner)(nil)
	_ BatchRunner = (*LocalRunner)(nil)
)

// Run runs every shard of plan and waits for them.
func (r *LocalRunner) Run(ctx context.Context, planURL string, plan *archive.Plan) error {
	progress := r.Progress
	if progress == nil {
		progress = func(*archive.Plan, int) {}
	}
	progress(plan, 0)
	return r.pool(ctx, planURL, len(plan.Shards), func(done int) { progress(plan, done) })
}

// RunBatch runs every index of a backfill's batch in one pool, as one Indexed Job would.
func (r *LocalRunner) RunBatch(ctx context.Context, batchURL string, batch *archive.Batch) error {
	return r.pool(ctx, batchURL, len(batch.Tasks), func(int) {})
}

// pool runs the indexes [0, n) of url, Parallelism at once, and tells done how many have
// succeeded after each one does.
func (r *LocalRunner) pool(ctx context.Context, url string, n int, done func(int)) error {
	var finished atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Parallelism)
	for i := range n {
		g.Go(func() error {
			if err := r.index(gctx, url, i); err != nil {
				return err
			}
			done(int(finished.Add(1)))
			return nil
		})
	}
	return g.Wait()
}

// index runs one completion index until it succeeds, fails for good, or runs out of retries.
func (r *LocalRunner) index(ctx context.Context, planURL string, i int) error {
	for attempt := 0; ; attempt++ {
		code, err := r.attempt(ctx, planURL, i)
		switch {
		case err != nil:
			return err
		case code == failure.ExitOK:
			return nil
		case code == failure.ExitPermanent:
			return failure.Permanent(fmt.Errorf("shard %d exited %d: a permanent failure (see its log)", i, code))
		case attempt >= r.Retries:
			return fmt.Errorf("shard %d exited %d after %d attempts", i, code, attempt+1)
		}
		r.Logger.Warn("shard failed; retrying", "shard", i, "exit_code", code, "attempt", attempt+1)
	}
}

func (r *LocalRunner) attempt(ctx context.Context, planURL string, i int) (int, error) {
	cmd := exec.CommandContext(ctx, r.Karch, "shard", "--plan", planURL)
	cmd.Env = append(append(os.Environ(), r.Env...), "JOB_COMPLETION_INDEX="+strconv.Itoa(i))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Like a pod being deleted: SIGTERM first, SIGKILL if it lingers.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case errors.As(err, &exit):
		return exit.ExitCode(), nil
	default:
		return 0, fmt.Errorf("start shard %d: %w", i, err)
	}
}
