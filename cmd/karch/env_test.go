package main

import (
	"errors"
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
