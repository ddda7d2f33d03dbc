package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/metrics"
)

// pushMetrics reports how the run ended to the Pushgateway, when one is configured. A failed
// push is logged and nothing more: metrics must never fail an archive.
func pushMetrics(ctx context.Context, logger *slog.Logger, gateway string, proc *metrics.Process, runErr error, job string, grouping ...string) {
	if gateway == "" {
		return
	}
	proc.Finish(time.Now(), failure.ExitCode(runErr))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := proc.Push(ctx, gateway, job, grouping...); err != nil {
		logger.Warn("metrics not pushed", "err", err)
		return
	}
	logger.Debug("metrics pushed", "job", job)
}
