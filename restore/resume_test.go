package restore

import "testing"

func TestPresentIsExact(t *testing.T) {
	var p present
	// Window 02:00's restore (120-179), then 01:00's first half (60-89), 100 twice, and a
	// source with compacted offsets (200, 202, 203).
	for _, off := range []int64{120, 121, 122, 178, 179, 60, 61, 62, 89, 100, 100, 200, 202, 203} {
		p.add(off)
	}
	p.settle()
	for off, want := range map[int64]bool{59: false, 60: true, 62: true, 63: false, 88: false, 89: true, 90: false, 100: true, 101: false,
		119: false, 120: true, 122: true, 123: false, 177: false, 178: true, 179: true, 180: false, 200: true, 201: false, 202: true, 203: true, 204: false} {
		if got := p.has(off); got != want {
			t.Errorf("has(%d) = %v, want %v", off, got, want)
		}
	}
	if len(p.spans) != 7 {
		t.Errorf("%d spans %v, want 7", len(p.spans), p.spans)
	}
}
