package e2e

import (
	"context"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/tests/chaos/faults"
)

// A coordinator whose manifest PUT is on its way to the store when it is paused (SIGSTOP)
// past its lease, while a rollout's coordinator with another window length (15m for 1h)
// archives the same hours: the old one's PUT lands late, after the new one committed. Every
// record is archived exactly once all the same, in windows that tile every partition: the
// new coordinator finishes the window that the chain's claim names, as it was planned, and
// continues after it with its own length; the late PUT finds that window committed.
func TestRunPausedAtCommitWhileAnotherWindowLengthRuns(t *testing.T) {
	p := newRunPipeline(t, 2, 3000)
	p.env = append(p.env, "KARCH_LEASE_TTL=2s")
	proxy, err := faults.NewS3Proxy(testenv.S3Server(t).Endpoint, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	arrived, release := make(chan struct{}), make(chan struct{})
	if _, err := proxy.AddRule(faults.Rule{Ops: []faults.Op{faults.OpPutObject}, Max: 1,
		Match: func(r faults.Request) bool { return path.Base(r.Key) == archive.ManifestName },
		Action: faults.Hook(faults.BeforeForward, func(ctx context.Context, _ faults.Request) error {
			close(arrived)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})}); err != nil {
		t.Fatal(err)
	}
	a, aOut := p.run(t)
	a.Env = append(a.Env, "KARCH_S3_ENDPOINT="+proxy.URL())
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the first coordinator never sent its manifest:\n%s", aOut)
	}
	time.Sleep(200 * time.Millisecond) // the rest of the PUT's body leaves the paused process's buffers
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.waitLeaseExpired(t)

	b, bOut := p.run(t)
	b.Env = append(b.Env, "KARCH_WINDOW=15m")
	if code := exitCode(t, b); code != 0 {
		t.Fatalf("the 15m coordinator exited %d:\n%s", code, bOut)
	}
	close(release) // the paused coordinator's PUT reaches the store now, sent before the pause
	testenv.WaitFor(t, "the paused coordinator's manifest to be applied", time.Minute, func() bool { return exists(p.bucket, p.dir(p.start)+archive.ManifestName) })
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("the resumed coordinator exited %d", waitExit(t, a))

	ms := p.allManifests(t)
	next := map[int32]int64{}
	for _, m := range ms {
		for _, r := range m.Partitions {
			if r.First != next[r.Partition] {
				t.Fatalf("window %s-%s partition %d starts at %d; the window before ended at %d: offsets archived twice or not at all",
					m.Window.Start.Format(time.RFC3339), m.Window.End.Format(time.RFC3339), r.Partition, r.First, next[r.Partition])
			}
			next[r.Partition] = r.End
		}
	}
	p.assertRecords(t, ms)
	if cmd, out := p.command(t, "verify"); exitCode(t, cmd) != 0 {
		t.Fatalf("karch verify:\n%s", out)
	}
}

// allManifests reads every committed manifest of the pipeline, whatever its window's length,
// in window order.
func (p *runPipeline) allManifests(t *testing.T) []*archive.Manifest {
	t.Helper()
	var ms []*archive.Manifest
	err := p.bucket.List(context.Background(), p.name+"/", func(o blob.ObjectInfo) error {
		if path.Base(o.Key) == archive.ManifestName && strings.Contains(o.Key, "/dt=") {
			m, err := archive.DecodeManifest(testenv.ReadObject(t, p.bucket, o.Key))
			if err != nil {
				return err
			}
			ms = append(ms, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ms, func(a, b *archive.Manifest) int { return a.Window.Start.Compare(b.Window.Start) })
	return ms
}
