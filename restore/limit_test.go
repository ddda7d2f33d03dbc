package restore

import (
	"context"
	"testing"
	"time"
)

// A byte rate paces a restore: 300 KB at 1 MB/s take about 0.3 s (the first burst is free),
// and a record larger than a burst still passes.
func TestLimitersPaceBytes(t *testing.T) {
	l := limiters{records: limiter(0), bytes: limiter(1e6)}
	start := time.Now()
	for range 30 {
		if err := l.wait(context.Background(), 10_000); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.wait(context.Background(), 5<<20); err != nil {
		t.Fatalf("a record larger than a burst: %v", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("300 KB at 1 MB/s took %s: not paced", took)
	}
}
