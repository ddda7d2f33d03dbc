//go:build karch_testhooks

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Only test builds (the karch_testhooks tag, as the tests build karch and its test image)
// have these hooks; they do nothing unless a test sets their variables.

// crashHook makes the first shard process that finds no file at KARCHTEST_PANIC_ONCE create
// it and panic: the tests' way to show that a crash, Go's exit 2, is retried and not taken for
// a permanent failure.
func crashHook() {
	path := os.Getenv("KARCHTEST_PANIC_ONCE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	f.Close()
	panic("karch test hook: a crash on purpose")
}

// tamperHook asks the test at KARCHTEST_TAMPER_URL, before a shard reads its settings, what to
// change: each NAME=value line of the answer is set in the shard's environment, and the test
// may hold its answer to hold the shard. It is how the Kubernetes tests reach into a shard in
// a container, whose pod spec they leave as the coordinator made it.
func tamperHook(ctx context.Context) error {
	base := os.Getenv("KARCHTEST_TAMPER_URL")
	if base == "" {
		return nil
	}
	u := base + "?index=" + url.QueryEscape(os.Getenv("JOB_COMPLETION_INDEX"))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("test hook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("test hook: %s answered %s", base, resp.Status)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if name, value, ok := strings.Cut(lines.Text(), "="); ok {
			os.Setenv(name, value)
		}
	}
	if err := lines.Err(); err != nil {
		return err
	}
	return hold(os.Getenv("KARCHTEST_ALLOC_MIB"))
}

// ballast is memory a test made the shard hold for as long as it runs.
var ballast []byte

// hold allocates mib MiB and writes every page of it, so that the shard needs that much
// more memory than its work does: how a test shows what a node does with a shard whose
// memory limit is too small.
func hold(mib string) error {
	if mib == "" {
		return nil
	}
	n, err := strconv.Atoi(mib)
	if err != nil {
		return fmt.Errorf("KARCHTEST_ALLOC_MIB: %w", err)
	}
	ballast = make([]byte, n<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	return nil
}

// testEnv is what a coordinator passes on to its shard pods of the test's own variables
// (KARCHTEST_*), which a local shard would inherit.
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KARCHTEST_") {
			env = append(env, kv)
		}
	}
	return env
}
