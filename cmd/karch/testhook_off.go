//go:build !karch_testhooks

package main

// crashHook is a test build's way to crash a shard (testhook.go); release builds have none.
func crashHook() {}
