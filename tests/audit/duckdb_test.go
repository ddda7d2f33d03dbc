package audit

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
)

// DuckDB reads the archive as users will, with no karch in between: hive partitioning on dt
// and window, read_json with zstd, from the local directory and from MinIO over S3. Its
// counts per window (and of distinct partition/offset pairs) equal the manifests'.
func TestDuckDBReadsTheArchive(t *testing.T) {
	duckPython(t) // fails at once where make test did not install DuckDB
	for _, tc := range []struct {
		name  string
		store func(*testing.T) store
		glob  func(a *archived) string
	}{
		{"local directory", localStore, func(a *archived) string {
			return filepath.Join(a.dir, a.pipeline, "*", "*", "data", "*", "*", "*.jsonl.zst")
		}},
		{"MinIO over S3", s3Store, func(a *archived) string {
			return a.url + "/" + a.pipeline + "/*/*/data/*/*/*.jsonl.zst"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testenv.Kafka(t)
			a := archiveTopic(t, addr, produceHours(t, addr), tc.store(t), 3)
			got := duckCounts(t, tc.glob(a), a.env)
			want := map[string][2]int64{}
			for _, m := range a.ms {
				dir := archive.WindowDir(a.pipeline, m.Window.Start, time.Hour)
				parts := strings.Split(strings.TrimSuffix(dir, "/"), "/")
				dt, window := strings.TrimPrefix(parts[1], "dt="), strings.TrimPrefix(parts[2], "window=")
				want[dt+"/"+window] = [2]int64{m.Records, m.Records}
			}
			if len(got) != len(want) {
				t.Fatalf("DuckDB counted %v, the manifests %v", got, want)
			}
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("window %s: DuckDB counted %v (records, distinct offsets), the manifest %v", k, got[k], w)
				}
			}
		})
	}
}

func duckCounts(t *testing.T, glob string, env []string) map[string][2]int64 {
	t.Helper()
	out := runPython(t, env, "testdata/duckdb_counts.py", glob)
	got := map[string][2]int64{}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("duckdb printed %q: %v", out, err)
	}
	return got
}
