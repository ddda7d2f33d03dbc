package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karch-archive/karch/failure"
)

// A profile that cannot be written is bad input: the shard stops before any I/O, with the
// flag and the path in the reason.
func TestCPUProfileUnwritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "cpu.prof")
	err := runShard(t.Context(), []string{"--plan", "file:///nowhere/plan.json", "--index", "0", "--cpu-profile", path}, io.Discard)
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "--cpu-profile") || !strings.Contains(err.Error(), path) {
		t.Fatalf("runShard: %v, want a permanent error naming --cpu-profile and %s", err, path)
	}
}
