// Package tabletest hands tests an Iceberg table in the test catalogs that `make test`
// starts, and reads one as a client that shares no code with karch's. Apart from testenv so
// that only the tests of the table link iceberg-go and Arrow.
package tabletest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/table"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/internal/testenv"
)

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// Config returns the settings of a table unique to the test in the test catalog of
// kind (icetable.CatalogREST or CatalogSQL), whose data files are in the archive s3 writes
// to. The SQL catalog's password is in its URL, as a test may pass it on.
func Config(t testing.TB, kind string, s3 blob.S3Config) icetable.Config {
	t.Helper()
	name := notIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	cfg := icetable.Config{
		Catalog: kind, Table: fmt.Sprintf("karch_test.%s_%d", name, time.Now().UnixNano()), Partition: icetable.Day,
		Store: "s3://" + s3.Bucket + "/" + s3.Prefix, S3Endpoint: s3.Endpoint, S3Region: s3.Region,
		S3AccessKeyID: s3.AccessKeyID, S3SecretAccessKey: s3.SecretAccessKey,
	}
	switch kind {
	case icetable.CatalogREST:
		cfg.URI = testenv.IcebergREST(t)
	case icetable.CatalogSQL:
		cfg.URI = testenv.IcebergSQL(t)
		cfg.Warehouse = "s3://" + testenv.S3Server(t).Bucket + "/iceberg-sql"
	default:
		t.Fatalf("no test catalog %q", kind)
	}
	return cfg
}

// Load reads a test table's current metadata, failing the test when it cannot.
func Load(t testing.TB, cfg icetable.Config) *table.Table {
	t.Helper()
	tt, err := icetable.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	tbl, err := tt.Load(context.Background())
	if err != nil {
		t.Fatalf("load table %s: %v", cfg.Table, err)
	}
	return tbl
}

// Offsets reads every record of the table with iceberg-go's scan, which shares no code
// with karch's readers, and returns the offsets by partition, sorted, duplicates kept.
func Offsets(t testing.TB, tbl *table.Table) map[int32][]int64 {
	t.Helper()
	at, err := tbl.Scan(table.WithSelectedFields("partition", "offset")).ToArrowTable(context.Background())
	if err != nil {
		t.Fatalf("scan table %v: %v", tbl.Identifier(), err)
	}
	defer at.Release()
	out := map[int32][]int64{}
	tr := array.NewTableReader(at, 4096)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		ps := rec.Column(rec.Schema().FieldIndices("partition")[0]).(*array.Int32)
		os := rec.Column(rec.Schema().FieldIndices("offset")[0]).(*array.Int64)
		for i := range int(rec.NumRows()) {
			out[ps.Value(i)] = append(out[ps.Value(i)], os.Value(i))
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// Windows returns the window start that each of the table's snapshots names, in
// snapshot order.
func Windows(t testing.TB, tbl *table.Table) []time.Time {
	t.Helper()
	var out []time.Time
	for _, s := range tbl.Metadata().Snapshots() {
		start, err := time.Parse(time.RFC3339, s.Summary.Properties[icetable.SummaryWindowStart])
		if err != nil {
			t.Fatalf("snapshot %d names no window: %v", s.SnapshotID, s.Summary)
		}
		out = append(out, start.UTC())
	}
	return out
}
