package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/internal/tabletest"
	"github.com/karch-archive/karch/internal/testenv"
)

// tabled is an archive in the test MinIO whose windows joined a table in the REST catalog.
type tabled struct {
	*archived
	table icetable.Config
	// env has karch commands use the table too.
	env []string
}

// archiveToTable archives the topic's windows as archiveTopic does, into S3, with Parquet
// pieces that join a table of the test REST catalog.
func archiveToTable(t *testing.T, addr, topic string, windows int, cols ...archive.ValueColumn) *tabled {
	t.Helper()
	st := s3Store(t)
	cfg := tabletest.Config(t, icetable.CatalogREST, testenv.S3Config(t))
	cfg.Store = st.url
	tbl, err := icetable.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	a := archiveInto(t, addr, topic, st, windows, tbl, withParquet(cols...))
	return &tabled{archived: a, table: cfg, env: []string{"KARCH_FORMATS=jsonl,parquet", "KARCH_TABLE=" + cfg.Table,
		"KARCH_TABLE_CATALOG=rest", "KARCH_TABLE_CATALOG_URI=" + cfg.URI}}
}

func (a *tabled) python(t *testing.T, what string) []byte {
	t.Helper()
	return runPython(t, a.archived.env, "testdata/iceberg_table.py", what, a.table.URI, a.table.Table)
}

func (a *tabled) karch(t *testing.T, args ...string) (int, string) {
	t.Helper()
	saved := a.archived.env
	a.archived.env = append(append([]string(nil), saved...), a.env...)
	defer func() { a.archived.env = saved }()
	return a.archived.karch(t, args...)
}

// pyiceberg and DuckDB read the table that karch's windows joined: by offset, each record is
// the one Kafka holds (key, value and headers byte for byte, timestamp and its type), none
// missing, none twice; DuckDB counts each offset once. The records stamped at the epoch put
// pieces across days, in the spec by partition alone.
func TestIcebergReadersReadTheTable(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 2)
	edgeCasesAndOldTimes(t, addr, topic)
	a := archiveToTable(t, addr, topic, 1, archive.ValueColumn{Name: "i", Path: []string{"i"}, Type: archive.TypeInt64})
	got := map[string]archive.Record{}
	for _, line := range bytes.Split(bytes.TrimSpace(a.python(t, "records")), []byte("\n")) {
		var p pyRecord
		if err := json.Unmarshal(line, &p); err != nil {
			t.Fatalf("pyiceberg printed %q: %v", line, err)
		}
		id := fmt.Sprintf("%d/%d", p.Partition, p.Offset)
		if _, dup := got[id]; dup {
			t.Fatalf("pyiceberg read record %s twice", id)
		}
		got[id] = p.record(t, topic)
	}
	m := a.ms[0]
	assertAsKafka(t, "pyiceberg", got, m, addr, topic)
	var duck struct {
		Rows, Distinct int64
		Partitions     map[string][2]int64
	}
	if err := json.Unmarshal(a.python(t, "duckdb"), &duck); err != nil {
		t.Fatal(err)
	}
	if duck.Rows != m.Records || duck.Distinct != m.Records {
		t.Fatalf("DuckDB counts %d rows, %d distinct offsets; the manifest %d", duck.Rows, duck.Distinct, m.Records)
	}
}

// Three windows, each its own snapshot in window order; pyiceberg, reading each snapshot as
// of itself, finds that it added the records of its window's manifest. verify --table proves
// the table clean and status says each window is in it; a data file appended by another
// writer (pyiceberg) is found, named, and exits 3.
func TestVerifyTable(t *testing.T) {
	addr := testenv.Kafka(t)
	a := archiveToTable(t, addr, callHours(t, addr), 3, callCols...)
	var windows map[string]int64
	if err := json.Unmarshal(a.python(t, "windows"), &windows); err != nil {
		t.Fatal(err)
	}
	for _, m := range a.ms {
		if n, ok := windows[m.Window.Start.Format(time.RFC3339)]; !ok || n != m.Records {
			t.Fatalf("window %s: its snapshot added %d records (found %v), its manifest counts %d; all: %v", m.Window.Start, n, ok, m.Records, windows)
		}
	}
	if len(windows) != len(a.ms) {
		t.Fatalf("%d snapshots for %d windows: %v", len(windows), len(a.ms), windows)
	}
	code, out := a.karch(t, "verify", "--table")
	if code != 0 || !strings.Contains(out, "table "+a.table.Table+": 3 windows") || !strings.Contains(out, "0 not in it yet, 0 problems") {
		t.Fatalf("karch verify --table on a clean table: exit %d\n%s", code, out)
	}
	if code, out := a.karch(t, "status"); code != 0 || strings.Count(out, "  yes") != 3 {
		t.Fatalf("karch status: exit %d, want 3 windows in the table\n%s", code, out)
	}
	a.python(t, "tamper")
	code, out = a.karch(t, "verify", "--table")
	if code != 3 || !strings.Contains(out, "is in the table and in no committed manifest") || !strings.Contains(out, "which no committed manifest of the window it names lists") {
		t.Fatalf("karch verify --table after another writer's append: exit %d, want 3 naming its file\n%s", code, out)
	}
	t.Logf("karch verify --table:\n%s", out)
}
