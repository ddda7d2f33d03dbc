package coordinator

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
)

// fakeShard writes a stand-in for `karch shard` that exits with the codes listed in its
// script, one per attempt and index, counting attempts in files under dir.
func fakeShard(t *testing.T, script string) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "karch")
	body := "#!/bin/sh\nn=$(cat " + dir + "/$JOB_COMPLETION_INDEX 2>/dev/null || echo 0)\necho $((n+1)) > " + dir + "/$JOB_COMPLETION_INDEX\n" + script
	if err := os.WriteFile(bin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

func attempts(t *testing.T, dir string, index string) string {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(dir, index))
	return strings.TrimSpace(string(data))
}

func runFake(t *testing.T, bin string, shards, retries int) error {
	plan := &archive.Plan{}
	for i := range shards {
		plan.Shards = append(plan.Shards, archive.ShardPlan{Index: i})
	}
	r := &LocalRunner{Karch: bin, Parallelism: 2, Retries: retries, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	return r.Run(context.Background(), "file:///nowhere/plan.json", plan)
}

func TestLocalRunnerRetriesExitOne(t *testing.T) {
	// Index 1 fails retryably on its first attempt only.
	bin, dir := fakeShard(t, `[ "$JOB_COMPLETION_INDEX" = 1 ] && [ "$n" = 0 ] && exit 1; exit 0`)
	if err := runFake(t, bin, 3, 2); err != nil {
		t.Fatalf("a retried index should succeed: %v", err)
	}
	if got := attempts(t, dir, "1"); got != "2" {
		t.Fatalf("index 1 ran %s times, want 2", got)
	}
	if got := attempts(t, dir, "0"); got != "1" {
		t.Fatalf("index 0 ran %s times, want 1", got)
	}
}

// A Go panic exits 2: a crash is a bug, not a verdict on the input, so it is retried.
func TestLocalRunnerRetriesACrash(t *testing.T) {
	bin, dir := fakeShard(t, `exit 2`)
	err := runFake(t, bin, 1, 2)
	if err == nil || failure.IsPermanent(err) || attempts(t, dir, "0") != "3" {
		t.Fatalf("err %v after %s attempts: want a retryable failure after 3", err, attempts(t, dir, "0"))
	}
}

func TestLocalRunnerGivesUpAfterRetries(t *testing.T) {
	bin, dir := fakeShard(t, `exit 1`)
	err := runFake(t, bin, 1, 2)
	if err == nil || failure.IsPermanent(err) || attempts(t, dir, "0") != "3" {
		t.Fatalf("err %v after %s attempts: want a retryable failure after 3", err, attempts(t, dir, "0"))
	}
}

func TestLocalRunnerExitThreeFailsAtOnce(t *testing.T) {
	bin, dir := fakeShard(t, `exit 3`)
	err := runFake(t, bin, 1, 5)
	if !failure.IsPermanent(err) || attempts(t, dir, "0") != "1" {
		t.Fatalf("err %v after %s attempts: want a permanent failure, no retry", err, attempts(t, dir, "0"))
	}
}
