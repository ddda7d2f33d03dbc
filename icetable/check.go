package icetable

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/karch-archive/karch/archive"
)

// Check is what verify --table found: the table against the committed windows.
type Check struct {
	Table   string `json:"table"`
	Windows int    `json:"windows"`
	Files   int    `json:"files"`
	Records int64  `json:"records"`
	// Lagging are committed windows with Parquet objects that the table does not hold yet:
	// the next run appends them.
	Lagging []archive.Window `json:"lagging,omitempty"`
	// Problems are what should not be: a file that no committed manifest lists, one listed
	// and missing, a file twice, counts or bounds that differ, a snapshot that names a
	// manifest other than the committed one.
	Problems []string `json:"problems,omitempty"`
}

// Reader reads a stored document of the archive.
type Reader func(ctx context.Context, key string) ([]byte, error)

// expected is a Parquet object as a committed manifest lists it.
type expected struct {
	window  time.Time
	obj     archive.ManifestObject
	matched int
}

// Check proves, from the catalog and the table's metadata alone, that the table's live data
// files are exactly the Parquet objects of the committed windows its snapshots name, each
// once, with the manifests' record counts, sizes and offset bounds; that every snapshot
// added only files of the window it names; and it lists the committed windows (committed,
// in the scope checked) that the table does not hold yet. read reads the manifests.
func (t *Table) Check(ctx context.Context, pipeline string, committed []archive.ManifestRef, read Reader) (*Check, error) {
	out := &Check{Table: t.cfg.Table}
	tbl, err := t.load(ctx)
	if err != nil && !isNoTable(err) {
		return nil, err
	}
	in := map[time.Time]Window{}
	if tbl != nil {
		in, _ = windows(tbl, pipeline)
	}
	manifests := map[string]*archive.Manifest{}
	readManifest := func(ref archive.ManifestRef) (*archive.Manifest, error) {
		if m, ok := manifests[ref.Key]; ok {
			return m, nil
		}
		data, err := read(ctx, ref.Key)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", ref.Key, err)
		}
		if got := archive.RefOf(ref.Key, data); ref.SHA256 != "" && got.SHA256 != ref.SHA256 {
			out.problem("manifest %s has SHA-256 %s; the table's snapshot of its window names %s", ref.Key, got.SHA256, ref.SHA256)
		}
		m, err := archive.DecodeManifest(data)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", ref.Key, err)
		}
		manifests[ref.Key] = m
		return m, nil
	}
	for _, ref := range committed {
		m, err := readManifest(archive.ManifestRef{Key: ref.Key})
		if err != nil {
			return nil, err
		}
		w, ok := in[m.Window.Start.UTC()]
		switch {
		case !ok && m.Parquet():
			out.Lagging = append(out.Lagging, m.Window)
		case ok && w.Manifest != ref:
			out.problem("the table's snapshot %d of window %s names manifest %s sha256 %s; the committed one is %s sha256 %s",
				w.SnapshotID, m.Window.Start.Format(time.RFC3339), w.Manifest.Key, w.Manifest.SHA256, ref.Key, ref.SHA256)
		}
	}
	if tbl == nil {
		return out, nil
	}
	want := map[string]*expected{}
	for start, w := range in {
		m, err := readManifest(w.Manifest)
		if err != nil {
			return nil, err
		}
		if !m.Window.Start.Equal(start) {
			out.problem("the table's snapshot %d names window %s and manifest %s, which is window %s", w.SnapshotID, start.Format(time.RFC3339), w.Manifest.Key, m.Window.Start.Format(time.RFC3339))
			continue
		}
		dir := strings.TrimSuffix(t.cfg.Store, "/") + "/" + strings.TrimSuffix(w.Manifest.Key, archive.ManifestName)
		for _, o := range m.Objects {
			if o.Parquet != nil && o.Parquet.Records > 0 {
				want[dir+o.Parquet.Key] = &expected{window: start, obj: o}
			}
		}
	}
	out.Windows = len(in)
	if err := t.checkFiles(ctx, tbl, pipeline, want, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Check) problem(format string, a ...any) {
	c.Problems = append(c.Problems, fmt.Sprintf(format, a...))
}

// checkFiles compares the live data files, and the files each snapshot added, with want.
func (t *Table) checkFiles(ctx context.Context, tbl *table.Table, pipeline string, want map[string]*expected, out *Check) error {
	fs, err := tbl.FS(ctx)
	if err != nil {
		return fmt.Errorf("table %s: file IO: %w", t.cfg.Table, err)
	}
	byID := map[int64]time.Time{}
	for start, w := range mustWindows(tbl, pipeline) {
		byID[w.SnapshotID] = start
	}
	offsetID := fieldID(tbl.Schema(), "offset")
	seen := map[string]bool{}
	for mf, err := range tbl.AllManifests(ctx) {
		if err != nil {
			return fmt.Errorf("table %s: read its manifests: %w", t.cfg.Table, err)
		}
		if seen[mf.FilePath()] {
			continue
		}
		seen[mf.FilePath()] = true
		entries, err := mf.FetchEntries(fs, false)
		if err != nil {
			return fmt.Errorf("table %s: read manifest %s: %w", t.cfg.Table, mf.FilePath(), err)
		}
		for _, e := range entries {
			if e.Status() != iceberg.EntryStatusADDED {
				continue
			}
			path := e.DataFile().FilePath()
			start, ok := byID[e.SnapshotID()]
			if w := want[path]; !ok || w == nil || !w.window.Equal(start) {
				out.problem("snapshot %d added %s, which no committed manifest of the window it names lists", e.SnapshotID(), path)
			}
		}
	}
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		for path := range want {
			out.problem("%s is listed by a committed manifest and missing from the table", path)
		}
		return nil
	}
	live, err := snap.Manifests(fs)
	if err != nil {
		return fmt.Errorf("table %s: read the current snapshot's manifests: %w", t.cfg.Table, err)
	}
	for _, mf := range live {
		entries, err := mf.FetchEntries(fs, true)
		if err != nil {
			return fmt.Errorf("table %s: read manifest %s: %w", t.cfg.Table, mf.FilePath(), err)
		}
		for _, e := range entries {
			df := e.DataFile()
			out.Files++
			out.Records += df.Count()
			w := want[df.FilePath()]
			if w == nil {
				out.problem("%s is in the table and in no committed manifest the table's snapshots name", df.FilePath())
				continue
			}
			if w.matched++; w.matched == 2 {
				out.problem("%s is in the table twice", df.FilePath())
			}
			checkFile(out, df, w.obj, offsetID)
		}
	}
	paths := make([]string, 0, len(want))
	for path, w := range want {
		if w.matched == 0 {
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	for _, path := range paths {
		out.problem("%s is listed by the committed manifest of window %s and missing from the table", path, want[path].window.Format(time.RFC3339))
	}
	return nil
}

// checkFile compares one live data file with its manifest's object.
func checkFile(out *Check, df iceberg.DataFile, o archive.ManifestObject, offsetID int) {
	path := df.FilePath()
	if df.Count() != o.Parquet.Records {
		out.problem("%s: the table counts %d records, its manifest %d", path, df.Count(), o.Parquet.Records)
	}
	if df.FileSizeBytes() != o.Parquet.Bytes {
		out.problem("%s: the table says %d bytes, its manifest %d", path, df.FileSizeBytes(), o.Parquet.Bytes)
	}
	lo, hi := df.LowerBoundValues()[offsetID], df.UpperBoundValues()[offsetID]
	if len(lo) != 8 || len(hi) != 8 || int64(binary.LittleEndian.Uint64(lo)) != o.First || int64(binary.LittleEndian.Uint64(hi)) != o.End-1 {
		out.problem("%s: the table bounds its offsets by %x..%x, its manifest by [%d, %d)", path, lo, hi, o.First, o.End)
	}
}

func mustWindows(tbl *table.Table, pipeline string) map[time.Time]Window {
	w, _ := windows(tbl, pipeline)
	return w
}

func fieldID(sc *iceberg.Schema, name string) int {
	f, _ := sc.FindFieldByName(name)
	return f.ID
}
