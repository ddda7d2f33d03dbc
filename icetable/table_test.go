package icetable_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/columnar"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/internal/tabletest"
	"github.com/karch-archive/karch/internal/testenv"
)

var (
	t0    = time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
	cell  = archive.ValueColumn{Name: "cell", Path: []string{"cell"}, Type: archive.TypeString}
	calls = archive.ValueColumn{Name: "calls", Path: []string{"n"}, Type: archive.TypeInt64}
)

// fixture is an archive in the test S3 server and a table in a test catalog.
type fixture struct {
	bucket blob.Bucket
	cfg    icetable.Config
}

func newFixture(t *testing.T, kind string) *fixture {
	s3 := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), s3)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{bucket: b, cfg: tabletest.Config(t, kind, s3)}
}

func (f *fixture) open(t *testing.T) *icetable.Table {
	t.Helper()
	tbl, err := icetable.Open(context.Background(), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tbl.Close() })
	return tbl
}

// piece is one Parquet piece of a window: partition p, offsets from first, one record per
// timestamp.
type piece struct {
	partition int32
	first     int64
	stamps    []time.Time
}

// window stores the Parquet pieces of the window at start, with typed columns cols, and
// returns its manifest and the manifest's ref, as a coordinator would have committed them.
func (f *fixture) window(t *testing.T, start time.Time, cols []archive.ValueColumn, pieces ...piece) (*archive.Manifest, archive.ManifestRef) {
	t.Helper()
	ctx := context.Background()
	dir := archive.WindowDir("calls", start, time.Hour)
	m := &archive.Manifest{Format: archive.ManifestFormat, Pipeline: "calls", Window: archive.Window{Start: start, End: start.Add(time.Hour)},
		Formats: []string{archive.FormatJSONL, archive.FormatParquet}, ValueColumns: cols}
	for _, pc := range pieces {
		var buf bytes.Buffer
		w := columnar.NewWriter(&buf, cols)
		for i, ts := range pc.stamps {
			v := fmt.Sprintf(`{"cell":"c%d","n":%d}`, i%3, i)
			if err := w.Write(&archive.Record{Topic: "calls", Partition: pc.partition, Offset: pc.first + int64(i), Timestamp: ts, Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		key := archive.ParquetKey("calls", pc.partition, pc.first)
		size := int64(buf.Len())
		if _, err := f.bucket.Put(ctx, dir+key, &buf, blob.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		n := int64(len(pc.stamps))
		m.Objects = append(m.Objects, archive.ManifestObject{Key: archive.PieceKey("calls", pc.partition, pc.first), Topic: "calls",
			Partition: pc.partition, First: pc.first, End: pc.first + n, Records: n,
			Parquet: &archive.ParquetObject{Key: key, Records: n, Bytes: size, Nulls: w.Nulls()}})
		m.Records += n
	}
	return m, archive.ManifestRef{Key: dir + archive.ManifestName, SHA256: fmt.Sprintf("%064x", start.Unix())}
}

func stamps(from time.Time, step time.Duration, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = from.Add(time.Duration(i) * step)
	}
	return out
}

func appendWindow(t *testing.T, tbl *icetable.Table, m *archive.Manifest, ref archive.ManifestRef) bool {
	t.Helper()
	added, err := tbl.Append(context.Background(), m, ref)
	if err != nil {
		t.Fatalf("append window %s: %v", m.Window.Start, err)
	}
	return added
}

// load is the table as a catalog client that shares nothing with karch's sees it.
func load(t *testing.T, f *fixture) *table.Table {
	t.Helper()
	tbl, err := f.open(t).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func span(first int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = first + int64(i)
	}
	return out
}

func forEachCatalog(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range []string{icetable.CatalogSQL, icetable.CatalogREST} {
		t.Run(kind, func(t *testing.T) { fn(t, kind) })
	}
}

// Each window joins the table once, in one snapshot that names it, and a window appended
// again is left alone: the records read back by offset are each piece's, once.
func TestAppendAddsEachWindowOnce(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, kind string) {
		f := newFixture(t, kind)
		tbl := f.open(t)
		m1, r1 := f.window(t, t0, []archive.ValueColumn{cell}, piece{0, 0, stamps(t0, time.Second, 40)}, piece{1, 100, stamps(t0, time.Minute, 30)})
		m2, r2 := f.window(t, t0.Add(time.Hour), []archive.ValueColumn{cell}, piece{0, 40, stamps(t0.Add(time.Hour), time.Second, 25)})
		if !appendWindow(t, tbl, m1, r1) || !appendWindow(t, tbl, m2, r2) {
			t.Fatal("a new window was not added")
		}
		if appendWindow(t, tbl, m1, r1) || appendWindow(t, f.open(t), m2, r2) {
			t.Fatal("a window the table holds was added again")
		}
		got := load(t, f)
		if n := len(got.Metadata().Snapshots()); n != 2 {
			t.Fatalf("%d snapshots for two windows", n)
		}
		if want := map[int32][]int64{0: span(0, 65), 1: span(100, 30)}; !equalOffsets(tabletest.Offsets(t, got), want) {
			t.Fatalf("the table holds the offsets %v, want %v", tabletest.Offsets(t, got), want)
		}
		ws, err := tbl.Windows(context.Background(), "calls")
		if err != nil {
			t.Fatal(err)
		}
		if w := ws[t0]; w.Manifest != r1 || !w.End.Equal(t0.Add(time.Hour)) || len(ws) != 2 {
			t.Fatalf("windows in the table: %+v", ws)
		}
	})
}

func equalOffsets(a, b map[int32][]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// Two coordinators appending the same window at once: the catalog takes one commit and
// refuses the other, which finds the window in the table and adds nothing.
func TestRacingAppendsAddTheWindowOnce(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, kind string) {
		f := newFixture(t, kind)
		m, ref := f.window(t, t0, nil, piece{0, 0, stamps(t0, time.Second, 10)})
		// The table exists before the race, so that both race the append, not the create.
		if _, err := f.open(t).Ensure(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			m.Window.Start, m.Window.End = t0.Add(time.Duration(round)*time.Hour), t0.Add(time.Duration(round+1)*time.Hour)
			var wg sync.WaitGroup
			added := make([]bool, 2)
			errs := make([]error, 2)
			for i := range 2 {
				tbl := f.open(t)
				wg.Go(func() { added[i], errs[i] = tbl.Append(context.Background(), m, ref) })
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil || added[0] == added[1] {
				t.Fatalf("round %d: added %v, errors %v; want exactly one added", round, added, errs)
			}
		}
		// Each round added the same object again under another window: the race is about
		// windows, and the file check in verify --table is about objects.
		if n := len(load(t, f).Metadata().Snapshots()); n != 3 {
			t.Fatalf("%d snapshots after three raced windows", n)
		}
	})
}

// A piece whose records span two days names no one day: it joins under the spec that
// partitions by partition alone; the others under partition and day.
func TestPieceAcrossDaysJoinsThePlainSpec(t *testing.T) {
	f := newFixture(t, icetable.CatalogSQL)
	tbl := f.open(t)
	m, ref := f.window(t, t0, nil, piece{0, 0, stamps(t0, 30*time.Minute, 10)}, piece{1, 0, stamps(t0, time.Second, 10)})
	appendWindow(t, tbl, m, ref)
	got := load(t, f)
	specs := map[string]int{}
	for _, s := range got.Metadata().PartitionSpecs() {
		specs[fmt.Sprint(s.NumFields())] = s.ID()
	}
	files := dataFiles(t, got)
	if files["0"].SpecID() != int32(specs["1"]) || files["1"].SpecID() != int32(specs["2"]) {
		t.Fatalf("spec of the piece across days %d, of the other %d; specs %v", files["0"].SpecID(), files["1"].SpecID(), specs)
	}
	if want := map[int32][]int64{0: span(0, 10), 1: span(0, 10)}; !equalOffsets(tabletest.Offsets(t, got), want) {
		t.Fatalf("offsets %v, want %v", tabletest.Offsets(t, got), want)
	}
}

// dataFiles are the table's live data files, by the partition in their path.
func dataFiles(t *testing.T, tbl *table.Table) map[string]interface {
	SpecID() int32
	FilePath() string
} {
	t.Helper()
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := tbl.CurrentSnapshot().Manifests(fs)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]interface {
		SpecID() int32
		FilePath() string
	}{}
	for _, mf := range mfs {
		entries, err := mf.FetchEntries(fs, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := e.DataFile().FilePath()
			out[p[len(p)-len("0/00000000000000000000.parquet"):][:1]] = e.DataFile()
		}
	}
	return out
}

// A value column added to the settings is an added column of the table: the old files read
// it as null, the new ones as stored. The same name with another type is refused for good.
func TestAddedValueColumnEvolvesTheSchema(t *testing.T) {
	forEachCatalog(t, func(t *testing.T, kind string) {
		f := newFixture(t, kind)
		tbl := f.open(t)
		m1, r1 := f.window(t, t0, []archive.ValueColumn{cell}, piece{0, 0, stamps(t0, time.Second, 5)})
		m2, r2 := f.window(t, t0.Add(time.Hour), []archive.ValueColumn{cell, calls}, piece{0, 5, stamps(t0.Add(time.Hour), time.Second, 5)})
		appendWindow(t, tbl, m1, r1)
		appendWindow(t, tbl, m2, r2)
		got := load(t, f)
		if _, ok := got.Schema().FindFieldByName("calls"); !ok || len(got.Metadata().Schemas()) != 2 {
			t.Fatalf("schema after an added column: %s (%d schemas)", got.Schema(), len(got.Metadata().Schemas()))
		}
		at, err := got.Scan(table.WithSelectedFields("offset", "calls")).ToArrowTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer at.Release()
		nulls := 0
		tr := array.NewTableReader(at, 100)
		defer tr.Release()
		for tr.Next() {
			nulls += tr.RecordBatch().Column(1).NullN()
		}
		if at.NumRows() != 10 || nulls != 5 {
			t.Fatalf("%d rows, %d with calls null; want 10 and the old window's 5", at.NumRows(), nulls)
		}
		m3, r3 := f.window(t, t0.Add(2*time.Hour), []archive.ValueColumn{{Name: "calls", Path: []string{"n"}, Type: archive.TypeString}}, piece{0, 10, stamps(t0, time.Second, 1)})
		if _, err := tbl.Append(context.Background(), m3, r3); !failure.IsPermanent(err) {
			t.Fatalf("a column whose type changed: %v, want a permanent error", err)
		}
	})
}

// A catalog that cannot be reached is retryable: the window stays committed and joins the
// table on a later run.
func TestCatalogDownIsRetryable(t *testing.T) {
	f := newFixture(t, icetable.CatalogSQL)
	m, ref := f.window(t, t0, nil, piece{0, 0, stamps(t0, time.Second, 3)})
	cfg := f.cfg
	cfg.URI = "postgres://karch@127.0.0.1:1/karch_iceberg?sslmode=disable&connect_timeout=2"
	tbl, err := icetable.Open(context.Background(), cfg)
	if err == nil {
		_, err = tbl.Append(context.Background(), m, ref)
	}
	if err == nil || failure.IsPermanent(err) {
		t.Fatalf("a catalog that is down: %v, want a retryable error", err)
	}
	if _, err := f.open(t).Load(context.Background()); !errors.Is(err, catalog.ErrNoSuchTable) {
		t.Fatalf("the table after a failed append: %v", err)
	}
}

// After the snapshots of earlier windows were expired, their summaries are gone: the live
// files still show the window is in the table, and an append of it again adds nothing.
func TestExpiredSnapshotsStillAddAWindowOnce(t *testing.T) {
	f := newFixture(t, icetable.CatalogSQL)
	tbl := f.open(t)
	m1, r1 := f.window(t, t0, nil, piece{0, 0, stamps(t0, time.Second, 5)})
	m2, r2 := f.window(t, t0.Add(time.Hour), nil, piece{0, 5, stamps(t0.Add(time.Hour), time.Second, 5)})
	appendWindow(t, tbl, m1, r1)
	appendWindow(t, tbl, m2, r2)
	tx := load(t, f).NewTransaction()
	if err := tx.ExpireSnapshots(table.WithRetainLast(1), table.WithOlderThan(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(load(t, f).Metadata().Snapshots()); n != 1 {
		t.Fatalf("%d snapshots after expiring all but the last", n)
	}
	if appendWindow(t, f.open(t), m1, r1) {
		t.Fatal("a window whose snapshot was expired was added again")
	}
	got := load(t, f)
	if want := map[int32][]int64{0: span(0, 10)}; !equalOffsets(tabletest.Offsets(t, got), want) || len(got.Metadata().Snapshots()) != 1 {
		t.Fatalf("offsets %v in %d snapshots, want %v in 1", tabletest.Offsets(t, got), len(got.Metadata().Snapshots()), want)
	}
}
