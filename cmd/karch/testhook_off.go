//go:build !karch_testhooks

package main

import "context"

// The test builds' hooks (testhook.go); release builds have none.

func crashHook() {}

func tamperHook(context.Context) error { return nil }

func testEnv() []string { return nil }
