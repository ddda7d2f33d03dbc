package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/karch-archive/karch/blob"
)

// MainWithKarch builds the karch binary into a temporary directory, sets *bin to its path,
// runs the package's tests and exits with their code: the TestMain of every package that runs
// karch as a process, as a user or a pod would. The build has karch's test hooks
// (cmd/karch/testhook.go), which do nothing unless a test sets their variables.
//
// make test builds that binary once, before the test binaries compete for the cores, and
// names it in KARCH_TEST_KARCH: each link of it costs seconds of CPU.
func MainWithKarch(m *testing.M, bin *string) {
	if *bin = os.Getenv("KARCH_TEST_KARCH"); *bin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "karch-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "karch")
	build := exec.Command("go", "build", "-tags", "karch_testhooks", "-o", *bin, "github.com/karch-archive/karch/cmd/karch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build karch:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ReadObject returns a stored object's bytes, failing the test when it cannot.
func ReadObject(t testing.TB, b blob.Bucket, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}
