//go:build karch_testhooks

package main

import "os"

// crashHook makes the first shard process that finds no file at KARCHTEST_PANIC_ONCE create
// it and panic. Only test builds (the karch_testhooks tag, as internal/testenv builds karch)
// have it: the tests' way to show that a crash, Go's exit 2, is retried and not taken for a
// permanent failure.
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
