package checker

import (
	"strings"
	"testing"
	"time"
)

var day = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// hourWindow is a committed window of hour h with one range of partition 0.
func hourWindow(h int, first, end int64, previous *window) *window {
	start := day.Add(time.Duration(h) * time.Hour)
	w := &window{folder: folder{dir: "p/" + start.Format("dt=2006-01-02/window=1504Z") + "-1h/", start: start, end: start.Add(time.Hour), committed: true}}
	w.m = &manifest{Format: manifestFormat, Pipeline: "p", Partitions: []mPartition{{Topic: "t", Partition: 0, First: first, End: end}}}
	w.m.Window.Start, w.m.Window.End = stamp(w.start), stamp(w.end)
	w.sum = strings.Repeat("ab", 32)
	if previous != nil {
		w.m.Previous = &mPrevious{Key: previous.manifestKey(), SHA256: previous.sum}
	}
	return w
}

func testCheck(windows ...*window) *check {
	cfg := Config{Pipeline: "p", Topic: "t", Start: day, Until: day.Add(3 * time.Hour), From: map[int32]int64{0: 0}}
	return &check{cfg: cfg, rep: &Report{}, windows: windows,
		kafka: &kafkaView{cfg: cfg, start: map[int32]int64{0: 0}, lso: map[int32]int64{0: 30}}}
}

func assertProblems(t *testing.T, rep *Report, want ...string) {
	t.Helper()
	if len(rep.Problems) != len(want) {
		t.Fatalf("problems %q, want %d", rep.Problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(rep.Problems[i], w) {
			t.Errorf("problem %q does not say %q", rep.Problems[i], w)
		}
	}
}

func TestChainIntact(t *testing.T) {
	w0 := hourWindow(0, 0, 10, nil)
	w1 := hourWindow(1, 10, 20, w0)
	w2 := hourWindow(2, 20, 30, w1)
	ch := testCheck(w0, w1, w2)
	ch.checkTiling()
	ch.checkChain()
	assertProblems(t, ch.rep)
	if ps := ch.parts[0]; !ps.inChain || ps.chainEnd != 30 || len(ps.holes) != 0 {
		t.Fatalf("partition 0: in chain %t, end %d, holes %d", ps.inChain, ps.chainEnd, len(ps.holes))
	}
}

// A declared gap is a problem, and its offsets that no window holds are lost.
func TestChainGap(t *testing.T) {
	w0 := hourWindow(0, 0, 10, nil)
	w1 := hourWindow(1, 12, 20, w0)
	w1.m.Gaps = []mGap{{Topic: "t", Partition: 0, First: 10, End: 12, Reason: "retention"}}
	w1.m.Objects = []mObject{{Key: "data/t/0/00000000000000000012.jsonl.zst", Topic: "t", Partition: 0, First: 12, End: 20, SHA256: w1.sum}}
	w2 := hourWindow(2, 20, 30, w1)
	ch := testCheck(w0, w1, w2)
	ch.checkChain()
	ch.checkManifest(w1)
	assertProblems(t, ch.rep, "declares a gap: partition 0 offsets [10, 12)")
	ps := ch.parts[0]
	ps.slots, ps.heldInGap = map[int64]*slot{}, map[int64]bool{}
	ch.settle(ps, 0, 30)
	assertRefs(t, "lost", ch.rep.Lost, "0/10", "0/11")
}

// A missing window is a hole in the tiling, breaks the chain of keys and of offsets.
func TestChainMissingWindow(t *testing.T) {
	w0 := hourWindow(0, 0, 10, nil)
	w1 := hourWindow(1, 10, 20, w0)
	w2 := hourWindow(2, 20, 30, w1)
	ch := testCheck(w0, w2)
	ch.checkTiling()
	ch.checkChain()
	assertProblems(t, ch.rep,
		"windows missing: no committed window covers [2026-11-23T01:00:00Z, 2026-11-23T02:00:00Z)",
		"previous p/dt=2026-11-23/window=0100Z-1h/MANIFEST.json is not a committed window",
		"partition 0 starts at 20; the chain continues at 10")
}

// Overlapping windows, a changed previous hash, and a window past the end of the range.
func TestChainOverlapAndHash(t *testing.T) {
	w0 := hourWindow(0, 0, 10, nil)
	w1 := hourWindow(1, 10, 20, w0)
	w1.m.Previous.SHA256 = strings.Repeat("cd", 32)
	w1b := hourWindow(1, 10, 20, w0)
	w1b.end = w1b.end.Add(time.Hour)
	w2 := hourWindow(2, 20, 30, w1)
	ch := testCheck(w0, w1, w1b, w2)
	ch.checkTiling()
	assertProblems(t, ch.rep, "overlaps", "overlaps")
	ch.rep.Problems = nil
	ch.checkPrevious(1, w1)
	assertProblems(t, ch.rep, "previous.sha256")
}

// A partition's first window may begin after From where Kafka holds no record in between;
// where Kafka does, the hole is a problem.
func TestChainLateStart(t *testing.T) {
	ch := testCheck(hourWindow(0, 3, 10, nil), hourWindow(1, 10, 30, nil))
	ch.windows[1].m.Previous = &mPrevious{Key: ch.windows[0].manifestKey(), SHA256: ch.windows[0].sum}
	ch.checkChain()
	assertProblems(t, ch.rep)
	ps := ch.parts[0]
	if len(ps.holes) != 1 || ps.holes[0].first != 0 || ps.holes[0].end != 3 {
		t.Fatalf("holes %+v, want [0, 3)", ps.holes)
	}
	ps.slots = map[int64]*slot{}
	ps.holes[0].hit = 1 // Kafka held a record at offset 1
	ch.settle(ps, 0, 30)
	assertProblems(t, ch.rep, "new to the chain, starts at 3, after 0")
}
