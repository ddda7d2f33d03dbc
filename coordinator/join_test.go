package coordinator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
)

// verifyProblems runs karch verify's checks over the pipeline's archive and returns every
// problem found, as lines.
func verifyProblems(t *testing.T, p *pipeline) []string {
	t.Helper()
	return verifyProblemsWith(t, p, audit.Options{})
}

func verifyProblemsWith(t *testing.T, p *pipeline, opts audit.Options) []string {
	t.Helper()
	r, err := audit.Verify(context.Background(), p.deps.Bucket, p.cfg.Pipeline, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range r.Chain {
		out = append(out, c.String())
	}
	for _, w := range r.Windows {
		for _, pr := range w.Problems {
			out = append(out, pr.String())
		}
	}
	return out
}

// A backfill of three windows before a pipeline's first committed windows joins the chain:
// its last manifest records the committed window after it, verify passes on the joined
// archive, the next window committed records the backfill's first as the chain's origin,
// and removing the backfilled windows is then named by verify.
func TestBackfillJoinsTheChain(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 140, 0, 7)
	p := newPipeline(t, topic, 2)
	p.cfg.Start, p.cfg.Until = t0.Add(3*time.Hour), t0.Add(6*time.Hour)
	if res, err := p.runAt(t0.Add(6*time.Hour + 2*time.Minute)); err != nil || len(res) != 3 {
		t.Fatalf("windows 3-6: %d committed, %v", len(res), err)
	}
	if res, err := p.backfillAt(context.Background(), t0.Add(8*time.Hour), 0, 3, 100, nil); err != nil || len(res) != 3 {
		t.Fatalf("backfill 0-3: %d windows, %v", len(res), err)
	}
	if probs := verifyProblems(t, p); len(probs) != 0 {
		t.Fatalf("verify of the joined archive: %q; want none", probs)
	}
	p.cfg.Until = t0.Add(7 * time.Hour)
	if res, err := p.runAt(t0.Add(7*time.Hour + 2*time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("window 6: %d committed, %v", len(res), err)
	}
	ms := manifests(t, p)
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
	first := archive.WindowDir(p.cfg.Pipeline, t0, time.Hour) + archive.ManifestName
	if o := ms[len(ms)-1].Origin; o == nil || o.Key != first {
		t.Fatalf("the newest manifest's origin is %+v; want the backfill's first window %s", o, first)
	}
	if probs := verifyProblems(t, p); len(probs) != 0 {
		t.Fatalf("verify after window 6: %q; want none", probs)
	}
	for h := range 3 {
		key := archive.WindowDir(p.cfg.Pipeline, t0.Add(time.Duration(h)*time.Hour), time.Hour) + archive.ManifestName
		p.remove(t, key)
	}
	probs := verifyProblems(t, p)
	if len(probs) == 0 || !strings.Contains(strings.Join(probs, "\n"), first+": is missing") {
		t.Fatalf("verify after the backfilled windows were removed: %q; want %s named missing", probs, first)
	}
}

// A backfill that continues the chain after the window length changed finds the window it
// continues in the old length's folder.
func TestBackfillAfterWindowLengthChange(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 120, 0, 3)
	p := newPipeline(t, topic, 2)
	p.cfg.Until = t0.Add(2 * time.Hour)
	if res, err := p.runAt(t0.Add(3 * time.Hour)); err != nil || len(res) != 2 {
		t.Fatalf("two hourly windows: %d committed, %v", len(res), err)
	}
	p.cfg.Window, p.cfg.Until = 15*time.Minute, t0.Add(3*time.Hour)
	res, err := p.backfillAt(context.Background(), t0.Add(4*time.Hour), 2, 3, 100, nil)
	if err != nil || len(res) != 4 {
		t.Fatalf("backfill of 15m windows from 04:00 after hourly ones: %d windows, %v", len(res), err)
	}
	ms := manifests(t, p)
	assertLinked(t, p, ms)
	assertExactlyOnce(t, p, ms, testenv.EndOffsets(t, addr, topic, 2))
	if probs := verifyProblems(t, p); len(probs) != 0 {
		t.Fatalf("verify: %q; want none", probs)
	}
}

// remove deletes key behind karch's back, as an operator (or an intruder) could.
func (p *pipeline) remove(t *testing.T, key string) {
	t.Helper()
	full := p.s3.Prefix + "/" + key
	if _, err := testenv.RawS3(t).DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &p.s3.Bucket, Key: &full}); err != nil {
		t.Fatalf("delete %s: %v", full, err)
	}
}

type failingRunner struct{}

func (failingRunner) Run(context.Context, string, *archive.Plan) error {
	return errors.New("the shards failed")
}

// A plan left by a crashed run, planned from offsets that no longer continue the chain
// (late records arrived before a backfill planned the windows ahead of it), is never
// adopted: its claim on the chain refuses the backfill, and a plan without a claim (left by
// a karch before claims) is refused naming the offsets it would archive twice.
func TestOrphanPlanIsNotAdoptedAcrossTheChain(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	hourly(t, addr, topic, []int{0, 1}, 120, 0, 3)
	hourly(t, addr, topic, []int{0}, 30, 3, 4)
	p := newPipeline(t, topic, 2)
	runner := p.deps.Runner
	p.cfg.Start, p.cfg.Until = t0.Add(3*time.Hour), t0.Add(4*time.Hour)
	p.deps.Runner = failingRunner{}
	if _, err := p.runAt(t0.Add(4*time.Hour + 2*time.Minute)); err == nil {
		t.Fatal("the crashed run committed")
	}
	p.deps.Runner = runner
	hourly(t, addr, topic, []int{1}, 10, 2, 3) // late: offsets 120-129 of partition 1, stamped before 03:00
	hourly(t, addr, topic, []int{1}, 10, 3, 4)

	p.cfg.Start = time.Time{}
	_, err := p.backfillAt(context.Background(), t0.Add(5*time.Hour), 0, 4, 100, nil)
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), archive.ClaimKey(p.cfg.Pipeline, archive.SlotFirst)) {
		t.Fatalf("backfill over the crashed run's window: %v; want a permanent refusal naming the claim", err)
	}
	if n := len(manifests(t, p)); n != 0 {
		t.Fatalf("the refused backfill committed %d windows", n)
	}
	p.remove(t, archive.ClaimKey(p.cfg.Pipeline, archive.SlotFirst))
	_, err = p.backfillAt(context.Background(), t0.Add(5*time.Hour), 0, 4, 100, nil)
	orphan := archive.WindowDir(p.cfg.Pipeline, t0.Add(3*time.Hour), time.Hour) + archive.PlanName
	// Partition 1's late records make it start at 120 where the window before ends at 130;
	// which partition the refusal names first is not fixed.
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), orphan) || !strings.Contains(err.Error(), "would be archived twice") {
		t.Fatalf("backfill adopting the unclaimed plan: %v; want a permanent refusal naming %s and the offsets archived twice", err, orphan)
	}
	t.Logf("refused: %v", err)
	if n := len(manifests(t, p)); n != 0 {
		t.Fatalf("the refused backfill committed %d windows", n)
	}
}
