package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// checkFormats checks that the manifest lists a Parquet object for each of its objects
// exactly when its formats include parquet.
func (w *window) checkFormats() {
	m := w.manifest
	parquet := (&archive.Plan{Formats: m.Formats}).Parquet()
	for _, o := range m.Objects {
		switch {
		case parquet && o.Parquet == nil:
			w.problem(w.report.Manifest, "object %s has no Parquet object, and the window's formats are %v", o.Key, m.Formats)
		case !parquet && o.Parquet != nil:
			w.problem(w.report.Manifest, "object %s has the Parquet object %s, and the window's formats are %v", o.Key, o.Parquet.Key, m.Formats)
		case o.Parquet != nil && o.Parquet.Key != archive.ParquetKey(o.Topic, o.Partition, o.First):
			w.problem(w.report.Manifest, "object %s has the Parquet object %s, want %s", o.Key, o.Parquet.Key, archive.ParquetKey(o.Topic, o.Partition, o.First))
		case o.Parquet != nil && o.Parquet.Records != o.Records:
			w.problem(w.report.Manifest, "object %s holds %d records, its Parquet object %d", o.Key, o.Records, o.Parquet.Records)
		}
	}
}

// sameParquet reports whether a receipt and the manifest describe one Parquet object.
func sameParquet(a, b *archive.ParquetObject) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key && a.Records == b.Records && a.Bytes == b.Bytes && a.SHA256 == b.SHA256 &&
		a.Checksum == b.Checksum && maps.Equal(a.Nulls, b.Nulls)
}

// headParquet compares the Parquet object of o with its manifest entry as checkObject does
// the JSON Lines; it reports whether the object is there to be read.
func (w *window) headParquet(ctx context.Context, b blob.Bucket, o archive.ManifestObject) (bool, error) {
	q := o.Parquet
	key := w.folder.dir + q.Key
	info, err := b.Head(ctx, key)
	switch {
	case blob.IsNotFound(err):
		w.problem(key, "is missing")
		return false, nil
	case err != nil:
		return false, fmt.Errorf("head %s: %w", key, err)
	case info.Size != q.Bytes:
		w.problem(key, "is %d bytes, the manifest says %d", info.Size, q.Bytes)
		return false, nil
	case q.Checksum != "" && info.Checksum != q.Checksum:
		w.problem(key, "has the store checksum %q, the manifest says %q", info.Checksum, q.Checksum)
	}
	if err := archive.CheckPieceMetadata(q.Key, info.Metadata, o.First, o.End); err != nil {
		w.problem(key, "%v", err)
	}
	return true, nil
}

// readParquet reads the Parquet object of o through: it must hold its manifest entry's
// bytes and null counts, and the very records of the JSON Lines, whose digest (of their
// lines, in order) is jsonl.
func (w *window) readParquet(ctx context.Context, b blob.Bucket, o archive.ManifestObject, jsonl string) error {
	q := o.Parquet
	key := w.folder.dir + q.Key
	lines := newLineDigest()
	got, err := shard.ReadParquet(ctx, b, key, pieceOf(o), w.manifest.ValueColumns, "", lines.add)
	switch {
	case blob.IsNotFound(err):
		return nil // headParquet reported it
	case failure.IsPermanent(err):
		w.problem(key, "%v", err)
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", key, err)
	}
	switch {
	case got.Records != q.Records || got.Bytes != q.Bytes || got.SHA256 != q.SHA256:
		w.problem(key, "holds %d records, %d bytes with sha256 %s; the manifest says %d, %d, %s",
			got.Records, got.Bytes, got.SHA256, q.Records, q.Bytes, q.SHA256)
	case !maps.Equal(got.Nulls, q.Nulls):
		w.problem(key, "has null counts %v in its typed columns; the manifest says %v", got.Nulls, q.Nulls)
	case lines.sum() != jsonl:
		w.problem(key, "does not hold the records of %s: their lines differ", o.Key)
	}
	return nil
}

// lineDigest hashes records as their JSON Lines (archive.AppendLine), the one encoding of
// a record that both formats can be compared in.
type lineDigest struct {
	h    hash.Hash
	line []byte
}

func newLineDigest() *lineDigest { return &lineDigest{h: sha256.New()} }

func (d *lineDigest) add(r *archive.Record) error {
	d.line = archive.AppendLine(d.line[:0], r)
	d.h.Write(d.line)
	return nil
}

func (d *lineDigest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }
