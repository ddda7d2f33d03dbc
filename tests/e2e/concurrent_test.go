package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// Two `karch run` processes at once on one pipeline, without Redis: each takes an
// in-process lease of its own, so both get past the lease, and only the manifest's
// create-if-absent keeps them from committing a window twice. Each window gets one manifest,
// created by exactly one of them, and every produced record is archived once, as produced.
// A round in which one process finished a window before the other reached it proves less,
// so rounds repeat until the two raced for a manifest's create.
func TestRunTwoCoordinatorsAtOnce(t *testing.T) {
	const rounds = 3
	for round := 1; ; round++ {
		p := newRunPipeline(t, 2, 5_000)
		p.env = append(p.env, "KARCH_REDIS=") // the last value wins: an in-process lease
		raced := p.runTwoAtOnce(t)
		p.assertOneManifestEach(t)
		p.assertCommitted(t)
		if raced {
			t.Logf("round %d: the two coordinators raced for a manifest's create", round)
			return
		}
		if round == rounds {
			t.Fatalf("in %d rounds the two coordinators never raced for a manifest's create", rounds)
		}
	}
}

// runTwoAtOnce starts two coordinators together and waits for both; both must succeed,
// take every window to its manifest, and create each window's manifest exactly once between
// them. It reports whether one of them lost a manifest's create to the other.
func (p *runPipeline) runTwoAtOnce(t *testing.T) (raced bool) {
	t.Helper()
	a, aOut := p.run(t)
	b, bOut := p.run(t)
	for _, cmd := range []*exec.Cmd{a, b} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if ca, cb := waitExit(t, a), waitExit(t, b); ca != 0 || cb != 0 {
		t.Fatalf("exit codes %d and %d, want 0:\n%s\n%s", ca, cb, aOut, bOut)
	}
	created := map[time.Time]int{}
	for _, out := range []*bytes.Buffer{aOut, bOut} {
		windows := windowLog(t, out.Bytes())
		if len(windows) != runWindows {
			t.Fatalf("a coordinator took %d windows to a manifest, want %d:\n%s", len(windows), runWindows, out)
		}
		for w, byThisRun := range windows {
			if byThisRun {
				created[w]++
			}
		}
		raced = raced || bytes.Contains(out.Bytes(), []byte("committed this window first"))
	}
	for w := range runWindows {
		if start := p.start.Add(time.Duration(w) * time.Hour); created[start] != 1 {
			t.Fatalf("window %s: %d coordinators created its manifest, want exactly 1:\n%s\n%s", start, created[start], aOut, bOut)
		}
	}
	return raced
}

// windowLog reads a coordinator's JSON log: for each window it took to a manifest, whether
// this run created the manifest.
func windowLog(t *testing.T, log []byte) map[time.Time]bool {
	t.Helper()
	out := map[time.Time]bool{}
	lines := bufio.NewScanner(bytes.NewReader(log))
	for lines.Scan() {
		var l struct {
			Msg       string    `json:"msg"`
			Window    time.Time `json:"window"`
			ByThisRun bool      `json:"by_this_run"`
		}
		if json.Unmarshal(lines.Bytes(), &l) != nil {
			continue // the results table
		}
		if l.Msg == "window committed" || l.Msg == "window committed already" {
			out[l.Window.UTC()] = l.ByThisRun
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertOneManifestEach checks that the store holds exactly one manifest per window and none
// elsewhere.
func (p *runPipeline) assertOneManifestEach(t *testing.T) {
	t.Helper()
	var keys []string
	err := p.bucket.List(context.Background(), p.name+"/", func(o blob.ObjectInfo) error {
		if path.Base(o.Key) == archive.ManifestName {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != runWindows {
		t.Fatalf("%d manifests, want one per window (%d): %v", len(keys), runWindows, keys)
	}
	for w, key := range keys {
		if want := p.dir(p.start.Add(time.Duration(w)*time.Hour)) + archive.ManifestName; key != want {
			t.Fatalf("manifest %s, want %s", key, want)
		}
	}
}
