package coordinator

import (
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
)

func TestDueWindows(t *testing.T) {
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		next, now time.Time
		w, late   time.Duration
		max, want int
	}{
		{"not yet due", day, day.Add(time.Hour + 4*time.Minute), time.Hour, 5 * time.Minute, 10, 0},
		{"just due", day, day.Add(time.Hour + 5*time.Minute), time.Hour, 5 * time.Minute, 10, 1},
		{"catch up", day, day.Add(5*time.Hour + 5*time.Minute), time.Hour, 5 * time.Minute, 10, 5},
		{"capped", day, day.Add(5*time.Hour + 5*time.Minute), time.Hour, 5 * time.Minute, 2, 2},
		{"unaligned next", day.Add(90 * time.Minute), day.Add(3 * time.Hour), time.Hour, 0, 10, 2},
		{"15m windows", day, day.Add(time.Hour), 15 * time.Minute, 0, 10, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dueWindows(tc.next, tc.w, tc.late, tc.now, tc.max)
			if len(got) != tc.want {
				t.Fatalf("%d windows, want %d: %v", len(got), tc.want, got)
			}
			for i, w := range got {
				if w.End.Sub(w.Start) != tc.w || !w.Start.Equal(alignDown(w.Start, tc.w)) || (i > 0 && !w.Start.Equal(got[i-1].End)) {
					t.Fatalf("window %d: %v", i, w)
				}
			}
		})
	}
}

func TestBuildPlan(t *testing.T) {
	ranges := []archive.Range{
		{Topic: "t", Partition: 0, First: 0, End: 1000}, // hot: split over shards
		{Topic: "t", Partition: 1, First: 10, End: 60},
		{Topic: "t", Partition: 2, First: 5, End: 5}, // empty: no piece
	}
	p := BuildPlan(archive.Plan{Pipeline: "p", RunID: "r", Brokers: []string{"b"},
		Window: archive.Window{Start: time.Unix(0, 0), End: time.Unix(3600, 0)}}, ranges, 300, 3)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(p.Shards) != 3 {
		t.Fatalf("%d shards, want 3", len(p.Shards))
	}
	covered := map[int32]int64{}
	for _, s := range p.Shards {
		var load int64
		for _, pc := range s.Pieces {
			if pc.End-pc.First > 300 {
				t.Fatalf("piece %+v exceeds 300 offsets", pc)
			}
			covered[pc.Partition] += pc.End - pc.First
			load += pc.End - pc.First
		}
		if load > 400 {
			t.Fatalf("shard %d carries %d offsets of 1050: unbalanced", s.Index, load)
		}
	}
	if covered[0] != 1000 || covered[1] != 50 || covered[2] != 0 {
		t.Fatalf("coverage %v", covered)
	}
	if again := BuildPlan(p, ranges, 300, 3); len(again.Shards) != 3 || again.Shards[0].Pieces[0] != p.Shards[0].Pieces[0] {
		t.Fatal("planning is not deterministic")
	}
	if one := BuildPlan(p, ranges[2:], 300, 3); len(one.Shards) != 0 {
		t.Fatalf("an empty window has %d shards", len(one.Shards))
	}
}

func TestRunIDsSortByTime(t *testing.T) {
	a, b := newRunID(time.UnixMilli(1000)), newRunID(time.UnixMilli(2000))
	if len(a) != 26 || a >= b {
		t.Fatalf("run ids %s, %s", a, b)
	}
}
