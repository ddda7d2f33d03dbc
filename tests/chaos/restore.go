package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/tests/chaos/checker"
)

// restoreRate paces every restore of a trial, in records a second, so that a restore of the
// trial's few thousand records takes seconds and a fault can land in the middle of it.
const restoreRate = "1000"

// prepareRestore archives the trial's windows without faults and creates the topic the
// restores write into, with the source's partitions.
func (t *Trial) prepareRestore() error {
	if err := t.converge(); err != nil {
		return fmt.Errorf("archive before the restore: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(t.srv.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	return createTopic(t.ctx, kadm.NewClient(cl), t.target, t.Scenario.Workload.Partitions)
}

// StartRestore starts `karch restore` of every window of the trial into its target topic.
func (t *Trial) StartRestore() (*coordinator, error) {
	return t.StartCommand([]string{"restore", "--from", t.start.Format(time.RFC3339), "--to", t.start.Add(windows * time.Hour).Format(time.RFC3339),
		"--to-topic", t.target, "--rate", restoreRate})
}

// RestoreDuring runs restores one after another while it calls inject, again and again as
// long as one runs, until inject has reported n hits; inject waits for its moment itself and
// reports whether its fault hit.
func (t *Trial) RestoreDuring(n int, inject func(r *coordinator) (hit bool)) error {
	hits := 0
	for run := 0; hits < n && run < n+4; run++ {
		r, err := t.StartRestore()
		if err != nil {
			return err
		}
		for hits < n && !r.exited() {
			if inject(r) {
				hits++
			}
		}
		if err := t.Wait(r); err != nil {
			return err
		}
		t.afterRestore(r)
	}
	return nil
}

// afterRestore waits out the lease a restore left behind when it was killed, or the lease of
// another that it found held (exit 1), as an operator's rerun would.
func (t *Trial) afterRestore(r *coordinator) {
	if r.code == killed || r.code == 1 {
		t.awaitLease()
	}
}

// convergeRestore runs restores without faults until one succeeds; a target that cannot be
// restored after cleanRuns of them is wedged.
func (t *Trial) convergeRestore() error {
	for range cleanRuns {
		r, err := t.StartRestore()
		if err != nil {
			return err
		}
		if err := t.Wait(r); err != nil {
			return err
		}
		if r.code == 0 {
			return nil
		}
		t.afterRestore(r)
	}
	return fmt.Errorf("wedged: %d restores without faults, none succeeded (exit codes %v)", cleanRuns, t.exitCodes())
}

// checkRestore compares the target topic with the source, record by record, by origin.
func (t *Trial) checkRestore(res *Result) error {
	ctx, cancel := context.WithTimeout(t.ctx, 5*time.Minute)
	defer cancel()
	rep, err := checker.CheckRestore(ctx, checker.RestoreConfig{Brokers: []string{t.srv.Kafka}, Source: t.topic, Target: t.target})
	if err != nil {
		return fmt.Errorf("restore checker: %w", err)
	}
	res.Restored = rep.Records
	res.Lost += len(rep.Lost)
	res.Dup += len(rep.Duplicated)
	res.Mismatch += len(rep.Mismatched)
	res.Problems = append(res.Problems, rep.Problems...)
	if !rep.OK() {
		return errors.New("the restored topic: " + rep.String())
	}
	return nil
}
