package icetable

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/columnar"
	"github.com/karch-archive/karch/failure"
)

// The summary of a window's snapshot names the window and its manifest: how a run finds
// the windows that are in the table, and how verify --table ties each file to a manifest.
const (
	SummaryPipeline       = "karch.pipeline"
	SummaryWindowStart    = "karch.window.start"
	SummaryWindowEnd      = "karch.window.end"
	SummaryManifest       = "karch.manifest"
	SummaryManifestSHA256 = "karch.manifest.sha256"
)

// Window is a committed window that the table holds, as its snapshot's summary says.
type Window struct {
	archive.Window
	Manifest   archive.ManifestRef
	SnapshotID int64
}

// Windows lists the pipeline's windows that the table holds, by window start. complete is
// false when snapshots were expired: the summaries then no longer account for every file.
func windows(tbl *table.Table, pipeline string) (map[time.Time]Window, bool) {
	out := map[time.Time]Window{}
	meta := tbl.Metadata()
	complete := true
	for _, s := range meta.Snapshots() {
		if s.ParentSnapshotID != nil && meta.SnapshotByID(*s.ParentSnapshotID) == nil {
			complete = false
		}
		if s.Summary == nil || s.Summary.Properties[SummaryPipeline] != pipeline {
			continue
		}
		p := s.Summary.Properties
		start, err1 := time.Parse(time.RFC3339, p[SummaryWindowStart])
		end, err2 := time.Parse(time.RFC3339, p[SummaryWindowEnd])
		if err1 != nil || err2 != nil {
			continue
		}
		out[start.UTC()] = Window{Window: archive.Window{Start: start.UTC(), End: end.UTC()},
			Manifest: archive.ManifestRef{Key: p[SummaryManifest], SHA256: p[SummaryManifestSHA256]}, SnapshotID: s.SnapshotID}
	}
	return out, complete
}

// Windows lists the pipeline's windows that the table holds, by window start; none when
// the table does not exist yet.
func (t *Table) Windows(ctx context.Context, pipeline string) (map[time.Time]Window, error) {
	tbl, err := t.load(ctx)
	if isNoTable(err) {
		return map[time.Time]Window{}, nil
	}
	if err != nil {
		return nil, err
	}
	w, _ := windows(tbl, pipeline)
	return w, nil
}

// commitAttempts bounds the appends of one window that lose to a concurrent commit.
const commitAttempts = 5

// Append adds the Parquet objects of the committed window m (whose manifest ref names)
// to the table in one append snapshot, unless the table holds the window already: it
// reports whether this call added it. Another commit that lands first makes the catalog
// refuse this one (the snapshot this one read is no longer the table's), and Append reads
// the table again and re-checks, as Iceberg's optimistic concurrency intends; an answer
// lost after the catalog applied the commit is found the same way.
func (t *Table) Append(ctx context.Context, m *archive.Manifest, ref archive.ManifestRef) (bool, error) {
	if !m.Parquet() {
		return false, nil
	}
	tbl, err := t.Ensure(ctx, m.ValueColumns)
	if err != nil {
		return false, err
	}
	var footers []footer // read once, and only for a window the table may lack
	for attempt := 1; ; attempt++ {
		in, complete := windows(tbl, m.Pipeline)
		if _, ok := in[m.Window.Start.UTC()]; ok {
			return false, nil
		}
		if footers == nil {
			if footers, err = t.footers(ctx, tbl, m, ref); err != nil {
				return false, err
			}
		}
		if !complete {
			// Expired snapshots took their summaries with them: the live files are the
			// only account left of which windows the table holds.
			if there, err := t.holdsFiles(ctx, tbl, footers); err != nil || there {
				return false, err
			}
		}
		err := t.appendOnce(ctx, tbl, m, ref, footers)
		if err == nil {
			return true, nil
		}
		err = classify(fmt.Errorf("table %s: append window %s: %w", t.cfg.Table, m.Window.Start.Format(time.RFC3339), err))
		if failure.IsPermanent(err) || attempt == commitAttempts {
			return false, err
		}
		// A refused commit (the table moved on) or one whose answer was lost: the table as
		// it is now says whether this window is in it. Every commit asserts the snapshot it
		// read, so of two in flight at most one lands.
		if tbl, err = t.load(ctx); err != nil {
			return false, err
		}
	}
}

func (t *Table) appendOnce(ctx context.Context, tbl *table.Table, m *archive.Manifest, ref archive.ManifestRef, footers []footer) error {
	var files []iceberg.DataFile
	for _, f := range footers {
		df, err := dataFile(tbl, t.cfg.Partition, f)
		if err != nil {
			return failure.Permanent(err)
		}
		files = append(files, df)
	}
	tx := tbl.NewTransaction()
	// The commit must fail, not be replayed on a newer table, if anything committed in
	// between: that may be this window, appended by another coordinator.
	if err := tx.AssertRefSnapshotID(""); err != nil {
		return err
	}
	props := iceberg.Properties{
		SummaryPipeline:       m.Pipeline,
		SummaryWindowStart:    m.Window.Start.UTC().Format(time.RFC3339),
		SummaryWindowEnd:      m.Window.End.UTC().Format(time.RFC3339),
		SummaryManifest:       ref.Key,
		SummaryManifestSHA256: ref.SHA256,
	}
	// The summaries (or, with expired snapshots, holdsFiles) proved the window absent:
	// iceberg-go's scan of every manifest for duplicates would grow each append with the
	// table's age and prove nothing more.
	opts := []table.WriteOption{table.WithoutAutoNameMapping(), table.WithoutDuplicateCheck()}
	var err error
	if len(files) == 0 {
		// A window without records still joins the table, as an empty snapshot, so that
		// the table's windows have no hole where the chain has none.
		err = tx.AddFiles(ctx, nil, props, false)
	} else {
		err = tx.AddDataFiles(ctx, files, props, opts...)
	}
	if err != nil {
		return err
	}
	_, err = tx.Commit(ctx)
	return err
}

// holdsFiles reports whether the table's live data files include the window's files: all of
// them (it is in the table), or none. Some and not others cannot come of karch's appends,
// one snapshot per window, and is permanent.
func (t *Table) holdsFiles(ctx context.Context, tbl *table.Table, footers []footer) (bool, error) {
	snap := tbl.CurrentSnapshot()
	if snap == nil || len(footers) == 0 {
		return false, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return false, fmt.Errorf("table %s: file IO: %w", t.cfg.Table, err)
	}
	want := map[string]bool{}
	for _, f := range footers {
		want[f.path] = true
	}
	found := 0
	mfs, err := snap.Manifests(fs)
	if err != nil {
		return false, fmt.Errorf("table %s: read the current snapshot's manifests: %w", t.cfg.Table, err)
	}
	for _, mf := range mfs {
		entries, err := mf.FetchEntries(fs, true)
		if err != nil {
			return false, fmt.Errorf("table %s: read manifest %s: %w", t.cfg.Table, mf.FilePath(), err)
		}
		for _, e := range entries {
			if want[e.DataFile().FilePath()] {
				found++
			}
		}
	}
	switch found {
	case 0:
		return false, nil
	case len(want):
		return true, nil
	}
	return false, failure.Permanent(fmt.Errorf("table %s holds %d of the window's %d data files: run karch verify --table", t.cfg.Table, found, len(want)))
}

// footer is one Parquet object of a window, where the table reads it, and what its
// footer says.
type footer struct {
	path string
	obj  archive.ManifestObject
	columnar.Footer
}

// footers reads the footer of each non-empty Parquet object of m, through the table's own
// file IO, and checks that it holds the records the manifest says.
func (t *Table) footers(ctx context.Context, tbl *table.Table, m *archive.Manifest, ref archive.ManifestRef) ([]footer, error) {
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, fmt.Errorf("table %s: file IO: %w", t.cfg.Table, err)
	}
	dir := strings.TrimSuffix(t.cfg.Store, "/") + "/" + strings.TrimSuffix(ref.Key, archive.ManifestName)
	var out []footer
	for _, o := range m.Objects {
		if o.Parquet == nil || o.Parquet.Records == 0 {
			continue
		}
		path := dir + o.Parquet.Key
		f, err := fs.Open(path)
		if err != nil {
			return nil, fmt.Errorf("table %s: open %s: %w", t.cfg.Table, path, err)
		}
		ft, err := columnar.ReadFooter(f, o.Parquet.Bytes, m.ValueColumns)
		f.Close()
		if errors.Is(err, columnar.ErrCorrupt) {
			return nil, failure.Permanent(fmt.Errorf("table %s: %s: %w", t.cfg.Table, path, err))
		}
		if err != nil {
			return nil, fmt.Errorf("table %s: read the footer of %s: %w", t.cfg.Table, path, err)
		}
		if ft.Rows != o.Parquet.Records {
			return nil, failure.Permanent(fmt.Errorf("table %s: %s holds %d records and its manifest %s says %d",
				t.cfg.Table, path, ft.Rows, ref.Key, o.Parquet.Records))
		}
		out = append(out, footer{path: path, obj: o, Footer: ft})
	}
	return out, nil
}

// maxMillis bounds the timestamps that Iceberg's microseconds can hold.
const maxMillis = math.MaxInt64 / 1000

// dataFile describes one Parquet object to the table: its partition, and bounds that
// readers prune by. A file whose records' timestamps fall in more than one day (or hour)
// can name no single timestamp partition, and goes in the spec that partitions by
// partition alone, which the table keeps registered for it.
func dataFile(tbl *table.Table, granularity string, f footer) (iceberg.DataFile, error) {
	id := func(name string) int { return fieldID(tbl.Schema(), name) }
	o := f.obj
	spec, _ := timedSpec(tbl, granularity)
	lo, hi := f.MinTimestamp.UnixMilli(), f.MaxTimestamp.UnixMilli()
	inRange := !f.MinTimestamp.IsZero() && lo > -maxMillis && hi < maxMillis
	var timeValue any
	if inRange {
		tr := transformOf(granularity)
		a := tr.Apply(iceberg.Optional[iceberg.Literal]{Valid: true, Val: iceberg.TimestampLiteral(lo * 1000)})
		b := tr.Apply(iceberg.Optional[iceberg.Literal]{Valid: true, Val: iceberg.TimestampLiteral(hi * 1000)})
		if a.Valid && b.Valid && a.Val.Equals(b.Val) {
			timeValue = a.Val.Any()
		}
	}
	partData := map[int]any{}
	logical := map[int]string{}
	if timeValue != nil {
		for i := range spec.NumFields() {
			pf := spec.Field(i)
			if pf.Name == "partition" {
				partData[pf.FieldID] = o.Partition
			} else {
				partData[pf.FieldID] = timeValue
				if granularity == Day {
					logical[pf.FieldID] = "date"
				}
			}
		}
	} else {
		plain, ok := plainSpec(tbl)
		if !ok {
			return nil, fmt.Errorf("table %s has no partition spec by partition alone, for %s", tbl.Identifier(), f.path)
		}
		spec = plain
		partData[spec.Field(0).FieldID] = o.Partition
	}
	b, err := iceberg.NewDataFileBuilder(spec, iceberg.EntryContentData, f.path, iceberg.ParquetFile, partData, logical, nil, f.Rows, o.Parquet.Bytes)
	if err != nil {
		return nil, fmt.Errorf("data file %s: %w", f.path, err)
	}
	lower, upper := map[int][]byte{}, map[int][]byte{}
	bound := func(name string, l, u iceberg.Literal) {
		lb, err1 := l.MarshalBinary()
		ub, err2 := u.MarshalBinary()
		if err1 == nil && err2 == nil {
			lower[id(name)], upper[id(name)] = lb, ub
		}
	}
	bound("topic", iceberg.StringLiteral(o.Topic), iceberg.StringLiteral(o.Topic))
	bound("partition", iceberg.Int32Literal(o.Partition), iceberg.Int32Literal(o.Partition))
	// The piece's planned offsets bound its records; with transaction markers or
	// compaction the records may not reach them, and a bound need not be tight.
	bound("offset", iceberg.Int64Literal(o.First), iceberg.Int64Literal(o.End-1))
	if inRange {
		bound("timestamp", iceberg.TimestampLiteral(lo*1000), iceberg.TimestampLiteral(hi*1000))
	}
	counts, nulls := map[int]int64{}, map[int]int64{}
	for _, name := range []string{"topic", "partition", "offset", "timestamp", "timestamp_type"} {
		counts[id(name)], nulls[id(name)] = f.Rows, 0
	}
	for name, n := range o.Parquet.Nulls {
		nulls[id(name)] = n
	}
	return b.LowerBoundValues(lower).UpperBoundValues(upper).ValueCounts(counts).NullValueCounts(nulls).Build(), nil
}

func isNoTable(err error) bool { return errors.Is(err, catalog.ErrNoSuchTable) }

// Holds reports which windows of the pipeline the table holds, by start
// (coordinator.Table).
func (t *Table) Holds(ctx context.Context, pipeline string) (map[time.Time]bool, error) {
	ws, err := t.Windows(ctx, pipeline)
	if err != nil {
		return nil, err
	}
	out := make(map[time.Time]bool, len(ws))
	for start := range ws {
		out[start] = true
	}
	return out, nil
}

// Describe reaches the catalog and says what it holds of the table: karch doctor's check.
// A table that does not exist yet is no failure: the first window to join creates it.
func (t *Table) Describe(ctx context.Context, pipeline string) (string, error) {
	tbl, err := t.load(ctx)
	if isNoTable(err) {
		return fmt.Sprintf("%s catalog %s answers; table %s does not exist yet: the first committed window creates it", t.cfg.Catalog, t.cfg.URI, t.cfg.Table), nil
	}
	if err != nil {
		return "", err
	}
	ws, _ := windows(tbl, pipeline)
	var newest time.Time
	for _, w := range ws {
		if w.End.After(newest) {
			newest = w.End
		}
	}
	detail := fmt.Sprintf("%s catalog %s: table %s holds %d windows of pipeline %s", t.cfg.Catalog, t.cfg.URI, t.cfg.Table, len(ws), pipeline)
	if !newest.IsZero() {
		detail += ", the newest ending " + newest.Format(time.RFC3339)
	}
	return detail, nil
}
