package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

func TestCheckEnviron(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    string // "" for no error, else what the error names
	}{
		{"settings and others", []string{"KARCH_SHARD_MEMORY=1Gi", "KARCH_REDIS_PASSWORD=x", "KARCH_PLAN=s3://b/p", "PATH=/bin", "KARCH_TEST_KAFKA=k"}, ""},
		{"downward API", []string{"KARCH_POD_NAME=p", "KARCH_OWNER_JOB=j", "KARCH_OWNER_JOB_UID=u"}, ""},
		{"typo", []string{"KARCH_SHARD_MEM=1Gi"}, "KARCH_SHARD_MEM names no setting of karch; did you mean KARCH_SHARD_MEMORY?"},
		{"unknown", []string{"KARCH_COLOUR=blue"}, "KARCH_COLOUR names no setting"},
		{"lower case is not ours", []string{"karch_window=1h"}, ""},
	} {
		err := checkEnviron(tc.environ)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !failure.IsPermanent(err) || !errors.Is(err, coordinator.ErrConfig)):
			t.Errorf("%s: %v; want a permanent configuration error naming %q", tc.name, err, tc.want)
		}
	}
}

// Every command's -h starts with its purpose in one line and an example of it.
func TestEveryCommandHelpStartsWithPurposeAndExample(t *testing.T) {
	for name, cmd := range commands {
		if name == "version" {
			continue
		}
		help := helpOf(t, name)
		lines := strings.SplitN(help, "\n", 3)
		if len(lines) < 3 || lines[0] != "karch "+name+": "+cmd.summary || !strings.HasPrefix(lines[1], "example: karch ") {
			t.Fatalf("karch %s -h begins\n%q\nwant its purpose, then an example", name, lines[:min(2, len(lines))])
		}
	}
}

// helpOf runs karch name -h and returns what it wrote to the process's stderr, where the
// flag package prints.
func helpOf(t *testing.T, name string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = f
	var stdout bytes.Buffer
	code := run(context.Background(), []string{name, "-h"}, &stdout, f)
	os.Stderr = saved
	if code != 0 {
		t.Fatalf("karch %s -h: exit %d", name, code)
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
