package archive

import "testing"

func TestSplitPlanURL(t *testing.T) {
	for _, tc := range []struct{ url, root, key string }{
		{"s3://bucket/prefix/cdr/dt=2026-11-23/window=0200Z-1h/plan.json", "s3://bucket/prefix", "cdr/dt=2026-11-23/window=0200Z-1h/plan.json"},
		{"s3://bucket/cdr/dt=2026-11-23/window=0215Z-15m/plan.json", "s3://bucket", "cdr/dt=2026-11-23/window=0215Z-15m/plan.json"},
		{"/tmp/store/cdr/dt=2026-11-23/window=0000Z-24h/plan.json", "/tmp/store", "cdr/dt=2026-11-23/window=0000Z-24h/plan.json"},
		{"file:///cdr/dt=2026-11-23/window=0200Z-1h/plan.json", "file:///", "cdr/dt=2026-11-23/window=0200Z-1h/plan.json"},
		{"/cdr/dt=2026-11-23/window=0200Z-1h/plan.json", "/", "cdr/dt=2026-11-23/window=0200Z-1h/plan.json"},
	} {
		root, key, ok := SplitPlanURL(tc.url)
		if !ok || root != tc.root || key != tc.key {
			t.Errorf("SplitPlanURL(%q) = %q, %q, %v; want %q, %q", tc.url, root, key, ok, tc.root, tc.key)
		}
	}
	for _, url := range []string{"/tmp/garbage.json", "s3://b/plan.json", "/tmp/x/dt=2026-11-23/window=0200Z-1h/other.json", "/tmp/s/cdr/dt=2026-13-23/window=0200Z-1h/plan.json"} {
		if _, _, ok := SplitPlanURL(url); ok {
			t.Errorf("SplitPlanURL(%q) took it for a window's plan", url)
		}
	}
}
