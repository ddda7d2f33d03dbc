package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/doctor"
	"github.com/karch-archive/karch/failure"
)

func init() {
	commands["doctor"] = command{"check a pipeline's configuration against Kafka, Redis and the store, with a fix for each failure", runDoctor}
}

const doctorUsage = `usage: karch doctor [--config file.yaml] [flags]

Checks the pipeline's configuration against the servers it names, as a run would use them,
and prints one line per check, with a fix under each failure: Kafka reachable with the
configured TLS and SASL, the topic there and readable at read_committed; the lease's Redis
commands allowed; the store listable; a second create of one key refused, for a single PUT
and a multipart upload alike (without that, karch's exactly-once commit has no fence); the
probe read back whole, the clocks in step; encryption, storage class and Object Lock as
configured; with a table, its catalog answering and the table loading. The probe objects stay under _probe/<pipeline>/: karch deletes nothing.
Exit codes: 0 every check passed, 3 a check failed or the configuration is invalid.
`

func runDoctor(ctx context.Context, args []string, stdout io.Writer) error {
	cli, err := parseCoordinatorFlags("doctor", doctorUsage, args)
	if cli == nil || err != nil {
		return err
	}
	cfg := cli.cfg
	deps, closeDeps, err := coordinatorDeps(ctx, cfg, cli.logger)
	if err != nil {
		return err
	}
	defer closeDeps()
	d := doctor.Deps{
		Pipeline: cfg.coord.Pipeline, Topics: cfg.coord.TopicNames(), Pattern: cfg.coord.TopicsPattern, Brokers: strings.Join(cfg.coord.Brokers, ","), Store: cfg.store,
		Redis: cfg.redis, Security: cfg.kafkaSec.describe(), Kafka: deps.Offsets.(*coordinator.KafkaOffsets), Bucket: deps.Bucket,
		Want:      blob.Protection{SSE: cfg.s3.SSE, KMSKeyID: cfg.s3.KMSKeyID, StorageClass: cfg.s3.StorageClass, LockMode: cfg.s3.LockMode},
		Retention: cfg.s3.LockRetention, ProbeID: newProbeID(), Now: time.Now,
	}
	if cfg.coord.TopicsPattern != "" {
		d.Matched = func(ctx context.Context) ([]string, error) {
			return coordinator.MatchedTopics(ctx, cfg.coord, deps.Offsets)
		}
	}
	if cfg.redis != "" {
		d.Locker = deps.Locker
	}
	tbl, closeTable, err := openTable(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeTable()
	if tbl != nil {
		d.Table = tbl
	}
	checks := doctor.Run(ctx, d)
	failed := 0
	for _, c := range checks {
		if c.OK {
			fmt.Fprintf(stdout, "ok    %s: %s\n", c.Name, c.Detail)
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL  %s: %s\n      fix: %s\n", c.Name, c.Detail, c.Fix)
	}
	if failed > 0 {
		return failure.Permanent(fmt.Errorf("%d of %d checks failed", failed, len(checks)))
	}
	fmt.Fprintf(stdout, "all %d checks passed\n", len(checks))
	return nil
}

// newProbeID makes doctor's probe keys unique: the time, to the nanosecond, in base 36.
func newProbeID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }
