package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// Filter selects records of a window: one topic (Topic not empty), one partition
// (Partition >= 0) and offsets in [FromOffset, ToOffset) (ToOffset 0: no bound). Format is
// the copy they are read from: archive.FormatJSONL (or empty), or archive.FormatParquet.
type Filter struct {
	Topic                string
	Partition            int32
	FromOffset, ToOffset int64
	Format               string
}

func (f Filter) object(o archive.ManifestObject) bool {
	return (f.Topic == "" || o.Topic == f.Topic) && (f.Partition < 0 || o.Partition == f.Partition) &&
		o.End > f.FromOffset && (f.ToOffset == 0 || o.First < f.ToOffset)
}

func (f Filter) record(r *archive.Record) bool {
	return r.Offset >= f.FromOffset && (f.ToOffset == 0 || r.Offset < f.ToOffset)
}

// Records calls fn for every record of the committed window whose manifest is m, stored in
// the folder dir, that f selects, in the order of the manifest's objects (by topic, then
// partition, then first offset): topic by topic, partition by partition, in offset order
// within each. It streams: one object is open at a time.
func Records(ctx context.Context, b blob.Bucket, dir string, m *archive.Manifest, f Filter, fn func(*archive.Record) error) error {
	parquet := f.Format == archive.FormatParquet
	switch {
	case f.Format != "" && f.Format != archive.FormatJSONL && !parquet:
		return failure.Permanent(fmt.Errorf("format %q: karch reads jsonl or parquet", f.Format))
	case parquet && !(&archive.Plan{Formats: m.Formats}).Parquet():
		return failure.Permanent(fmt.Errorf("window %s has no Parquet copy: its formats are %v", dir, m.Formats))
	}
	for _, o := range m.Objects {
		if !f.object(o) {
			continue
		}
		var err error
		if parquet {
			err = parquetRecords(ctx, b, dir, m, o, f, fn)
		} else {
			err = objectRecords(ctx, b, dir+o.Key, f, fn)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parquetRecords reads the Parquet copy of object o, which must be the one its manifest
// describes: the file is spooled to disk (its footer comes last) and its digest checked
// before any record of it is given out.
func parquetRecords(ctx context.Context, b blob.Bucket, dir string, m *archive.Manifest, o archive.ManifestObject, f Filter, fn func(*archive.Record) error) error {
	if o.Parquet == nil {
		return failure.Permanent(fmt.Errorf("object %s of %s has no Parquet copy in the manifest", o.Key, dir))
	}
	key := dir + o.Parquet.Key
	_, err := shard.ReadParquet(ctx, b, key, pieceOf(o), m.ValueColumns, o.Parquet.SHA256, func(r *archive.Record) error {
		if !f.record(r) {
			return nil
		}
		return fn(r)
	})
	if blob.IsNotFound(err) {
		return failure.Permanent(fmt.Errorf("read %s: the manifest names it, the store does not have it", key))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	return nil
}

// pieceOf is the planned piece of a manifest's object.
func pieceOf(o archive.ManifestObject) archive.Piece {
	return archive.Piece{Key: o.Key, Topic: o.Topic, Partition: o.Partition, First: o.First, End: o.End}
}

func objectRecords(ctx context.Context, b blob.Bucket, key string, f Filter, fn func(*archive.Record) error) error {
	rc, err := b.Get(ctx, key)
	if blob.IsNotFound(err) {
		return failure.Permanent(fmt.Errorf("read %s: the manifest names it, the store does not have it", key))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	zr, err := compress.NewReader(rc)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer zr.Close()
	dec := archive.NewDecoder(zr)
	for {
		r, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, archive.ErrCorruptLine) || errors.Is(err, compress.ErrCorrupt) {
			return failure.Permanent(fmt.Errorf("read %s: %w", key, err))
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		if f.record(&r) {
			if err := fn(&r); err != nil {
				return err
			}
		}
	}
}

// Topics are the topics that the windows archive, sorted: those their manifests plan
// partitions of, whether those hold records or not.
func Topics(windows []Stored) []string {
	var out []string
	for _, w := range windows {
		for _, p := range w.Manifest.Partitions {
			out = append(out, p.Topic)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// CheckTopic insists that the windows archive topic, when one is named: a permanent error
// names it and the topics they do archive.
func CheckTopic(windows []Stored, topic string) error {
	topics := Topics(windows)
	if topic == "" || slices.Contains(topics, topic) {
		return nil
	}
	held, they := strings.Join(topics, ", "), "the windows archive"
	if held == "" {
		held = "none"
	}
	if len(windows) == 1 {
		they = "the window archives"
	}
	return failure.Permanent(fmt.Errorf("topic %s: %s no topic of that name (only %s)", topic, they, held))
}

// TopicsWithRecords are those of Topics that the windows hold records of: of an object
// with at least one record.
func TopicsWithRecords(windows []Stored) []string {
	var out []string
	for _, w := range windows {
		for _, o := range w.Manifest.Objects {
			if o.Records > 0 {
				out = append(out, o.Topic)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Stored is a committed window as the store holds it.
type Stored struct {
	// Dir is the window's folder, with a trailing slash; object keys are relative to it.
	Dir      string
	Manifest *archive.Manifest
}

// Windows reads the committed windows of pipeline that start in [from, to) (zero: no bound),
// oldest first, whatever their lengths.
func Windows(ctx context.Context, b blob.Bucket, pipeline string, from, to time.Time) ([]Stored, error) {
	folders, err := listWindows(ctx, b, pipeline, Options{From: from, To: to})
	if err != nil {
		return nil, err
	}
	var out []Stored
	for _, f := range folders {
		if !f.committed {
			continue
		}
		key := f.dir + archive.ManifestName
		data, err := blob.ReadAll(ctx, b, key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		m, err := archive.DecodeManifest(data)
		if err != nil {
			return nil, failure.Permanent(fmt.Errorf("read %s: %w", key, err))
		}
		out = append(out, Stored{Dir: f.dir, Manifest: m})
	}
	return out, nil
}

// Committed finds the committed window of pipeline that starts at start, whatever its
// length. A window with no manifest is not committed: a permanent error, since the caller
// named it.
func Committed(ctx context.Context, b blob.Bucket, pipeline string, start time.Time) (Stored, error) {
	ws, err := Windows(ctx, b, pipeline, start, start.Add(time.Nanosecond))
	if err != nil {
		return Stored{}, err
	}
	if len(ws) == 0 {
		return Stored{}, failure.Permanent(fmt.Errorf("window %s of %s is not committed (karch status lists the windows)", start.Format(time.RFC3339), pipeline))
	}
	return ws[0], nil
}
