package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// backfill runs `karch backfill` for the pipeline's windows [from, to) and returns its exit
// code and output.
func (p *runPipeline) backfill(t *testing.T, from, to int, args ...string) (int, string) {
	t.Helper()
	at := func(h int) string { return p.start.Add(time.Duration(h) * time.Hour).Format(time.RFC3339) }
	cmd := exec.Command(karchBin, append([]string{"backfill", "--from", at(from), "--to", at(to)}, args...)...)
	cmd.Env = append(append(os.Environ(), p.env...), "KARCH_BINARY="+karchBin)
	out, err := cmd.CombinedOutput()
	return codeOf(t, cmd, err), string(out)
}

// The backfill command end to end with the local runner: two windows of a fresh pipeline,
// a range that would overlap them refused with exit 3 naming the committed window, a range
// that continues them, and then every produced record archived exactly once, as produced.
// Off a terminal, progress is JSON log lines.
func TestBackfillCommand(t *testing.T) {
	p := newRunPipeline(t, 4, 2000)
	code, out := p.backfill(t, 0, 2)
	if code != 0 || !strings.Contains(out, `"msg":"backfill progress"`) || !strings.Contains(out, `"committed":2`) ||
		!strings.Contains(out, "2 windows (2 committed by this run)") {
		t.Fatalf("backfill of windows 0-2: exit %d, want 0 with progress lines and a summary:\n%s", code, out)
	}
	code, out = p.backfill(t, -1, 1)
	if line := lastLine(out); code != 3 || !strings.Contains(line, "is committed already") || !strings.Contains(line, p.start.Format(time.RFC3339)) {
		t.Fatalf("overlapping backfill: exit %d, last line %q; want 3 naming window %s", code, line, p.start.Format(time.RFC3339))
	}
	if code, out = p.backfill(t, 2, 3); code != 0 {
		t.Fatalf("backfill of window 2: exit %d:\n%s", code, out)
	}
	p.assertCommitted(t)
	code, out = p.backfill(t, 0, 3, "--from", "yesterday")
	if line := lastLine(out); code != 3 || !strings.Contains(line, "--from") {
		t.Fatalf("bad --from: exit %d, last line %q; want 3 naming --from", code, line)
	}
}

// A backfill pushes its progress while it runs, with exit code -1 (running), and then once
// more when it ends: the range's windows, those committed and their records, as the
// manifests hold them.
func TestBackfillPushesProgress(t *testing.T) {
	p := newRunPipeline(t, 4, 2000)
	gw := newPushGateway(t)
	p.env = append(p.env, "KARCH_PUSH_GATEWAY="+gw.URL)
	if code, out := p.backfill(t, 0, runWindows, "--push-interval", "50ms"); code != 0 {
		t.Fatalf("backfill: exit %d:\n%s", code, out)
	}
	ms := p.assertCommitted(t)
	var records int64
	for _, m := range ms {
		records += m.Records
	}
	pushes := gw.take("karch-backfill", map[string]string{"pipeline": p.name})
	if len(pushes) < 2 {
		t.Fatalf("%d backfill pushes, want progress pushes and a last one", len(pushes))
	}
	for _, mid := range pushes[:len(pushes)-1] {
		if code := mid.must(t, "karch_exit_code"); code != -1 {
			t.Fatalf("a push while running has exit code %v, want -1", code)
		}
		if n := mid.must(t, "karch_backfill_windows"); n != 0 && n != runWindows {
			t.Fatalf("a push while running says %v windows, want %d (or 0 before planning)", n, runWindows)
		}
	}
	last := pushes[len(pushes)-1]
	for name, want := range map[string]float64{
		"karch_exit_code":                  0,
		"karch_backfill_windows":           runWindows,
		"karch_backfill_committed_windows": runWindows,
		"karch_backfill_committed_records": float64(records),
		"karch_run_committed_windows":      runWindows,
	} {
		if got := last.must(t, name); got != want {
			t.Errorf("last push: %s = %v, want %v", name, got, want)
		}
	}
}
