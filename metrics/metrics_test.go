package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/metrics"
)

func TestValidateGateway(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // "" for valid
	}{
		{"http://pushgateway.monitoring:9091", ""},
		{"https://gw.example.com/prefix", ""},
		{"http://user:hunter2@gw:9091", "credentials"},
		{"gw:9091", "want http"},
		{"ftp://gw", "want http"},
		{"http://", "want http"},
		{"http://us er:hunter2@gw:%zz", "not a URL"},
	} {
		err := metrics.ValidateGateway(tc.url)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error saying %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("%q: the error shows the password: %v", tc.url, err)
		}
	}
}

// A run that has found no committed window exports no head: a zero would fire every
// staleness alert.
func TestCoordinatorHeadOnlyOnceKnown(t *testing.T) {
	p := metrics.NewProcess(time.Now())
	c := metrics.NewCoordinator(p.Registerer())
	const head = "karch_last_committed_window_end_timestamp_seconds"
	if n, err := testutil.GatherAndCount(p.Gatherer(), head); err != nil || n != 0 {
		t.Fatalf("before any head: %d series, %v", n, err)
	}
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	w := archive.Window{Start: start, End: start.Add(time.Hour)}
	c.Head(w)
	c.Window(coordinator.WindowResult{Window: w, Records: 7, Committed: true})
	c.Window(coordinator.WindowResult{Window: w, Records: 5}) // committed by another run
	want := `
# HELP karch_last_committed_window_end_timestamp_seconds End of the newest window with a committed manifest (Unix time): everything before it is archived.
# TYPE karch_last_committed_window_end_timestamp_seconds gauge
karch_last_committed_window_end_timestamp_seconds 1.795518e+09
# HELP karch_run_committed_records Records in the windows the last run committed.
# TYPE karch_run_committed_records gauge
karch_run_committed_records 7
`
	if err := testutil.GatherAndCompare(p.Gatherer(), strings.NewReader(want), head, "karch_run_committed_records"); err != nil {
		t.Fatal(err)
	}
	const table = "karch_table_last_window_end_timestamp_seconds"
	if n, err := testutil.GatherAndCount(p.Gatherer(), table); err != nil || n != 0 {
		t.Fatalf("before the table is known: %d series, %v", n, err)
	}
	c.Table(archive.Window{Start: start.Add(-time.Hour), End: start})
	want = `
# HELP karch_table_last_window_end_timestamp_seconds End of the newest window in the pipeline's Iceberg table (Unix time); behind karch_last_committed_window_end_timestamp_seconds while the table lags the archive.
# TYPE karch_table_last_window_end_timestamp_seconds gauge
karch_table_last_window_end_timestamp_seconds 1.7955144e+09
`
	if err := testutil.GatherAndCompare(p.Gatherer(), strings.NewReader(want), table); err != nil {
		t.Fatal(err)
	}
}

// A shard's metrics are built once per registry: a receipt is exported only once known, and
// a second receipt replaces the first rather than registering the metrics again.
func TestShardMetricsOncePerRegistry(t *testing.T) {
	p := metrics.NewProcess(time.Now())
	s := metrics.NewShard(p.Registerer())
	names := []string{"karch_shard_pieces", "karch_shard_records", "karch_shard_raw_bytes", "karch_shard_stored_bytes"}
	if n, err := testutil.GatherAndCount(p.Gatherer(), names...); err != nil || n != 0 {
		t.Fatalf("before a receipt: %d series, %v", n, err)
	}
	s.Receipt(&archive.Receipt{Records: 7, RawBytes: 700, Bytes: 70, Pieces: make([]archive.PieceResult, 1)})
	s.Receipt(&archive.Receipt{Records: 9, RawBytes: 900, Bytes: 90, Pieces: make([]archive.PieceResult, 2)})
	want := `
# HELP karch_shard_pieces Pieces in the shard's receipt.
# TYPE karch_shard_pieces gauge
karch_shard_pieces 2
# HELP karch_shard_raw_bytes Uncompressed JSON Lines bytes in the shard's receipt.
# TYPE karch_shard_raw_bytes gauge
karch_shard_raw_bytes 900
# HELP karch_shard_records Records in the shard's receipt.
# TYPE karch_shard_records gauge
karch_shard_records 9
# HELP karch_shard_stored_bytes Stored (compressed) bytes in the shard's receipt.
# TYPE karch_shard_stored_bytes gauge
karch_shard_stored_bytes 90
`
	if err := testutil.GatherAndCompare(p.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}
