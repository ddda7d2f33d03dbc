package shard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/columnar"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/failure"
)

func (w *worker) parquetKey(pc archive.Piece) string {
	return archive.ParquetKey(pc.Topic, pc.Partition, pc.First)
}

// head describes a stored object of the piece, or returns nil when there is none.
func (w *worker) head(ctx context.Context, key string) (*blob.ObjectInfo, error) {
	info, err := w.bucket.Head(ctx, w.key(key))
	if blob.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("head piece %s: %w", key, err)
	}
	return &info, nil
}

// complete finishes a piece of which an earlier or concurrent attempt stored one object
// or more: each stored object is checked and adopted, and a missing one is derived from a
// stored one rather than read from Kafka again, so that every format holds the same
// records even when the log cleaner ran in between. jsonl and pq describe the stored
// objects (stored), nil where there is none.
func (w *worker) complete(ctx context.Context, pc archive.Piece, jsonl, pq *blob.ObjectInfo) (archive.PieceResult, error) {
	var res archive.PieceResult
	var err error
	switch {
	case jsonl != nil:
		res, err = w.adopt(ctx, pc, *jsonl)
	case pq != nil:
		res, err = w.deriveJSONL(ctx, pc)
	default:
		return archive.PieceResult{}, fmt.Errorf("piece %s: no object of it is stored after a lost create race", pc.Key)
	}
	if err == nil {
		err = w.account(ctx, &res)
	}
	if err == nil && w.plan.Parquet() {
		if pq != nil {
			res.Parquet, err = w.adoptParquet(ctx, pc, *pq)
		} else {
			res.Parquet, err = w.deriveParquet(ctx, pc)
		}
		if err == nil && res.Parquet.Records != res.Records {
			err = failure.Permanent(fmt.Errorf("piece %s holds %d records and its Parquet object %s %d: two attempts read different records",
				pc.Key, res.Records, res.Parquet.Key, res.Parquet.Records))
		}
	}
	return res, err
}

// adoptParquet checks a stored Parquet object as adopt checks JSON Lines: its bounds, its
// schema, and every record in the piece's range in offset order.
func (w *worker) adoptParquet(ctx context.Context, pc archive.Piece, info blob.ObjectInfo) (*archive.ParquetObject, error) {
	key := w.parquetKey(pc)
	if err := archive.CheckPieceMetadata(key, info.Metadata, pc.First, pc.End); err != nil {
		return nil, failure.Permanent(err)
	}
	obj, err := ReadParquet(ctx, w.bucket, w.key(key), pc, w.plan.ValueColumns, "", nil)
	if err != nil {
		return nil, fmt.Errorf("check stored piece %s: %w", key, err)
	}
	obj.Checksum = info.Checksum
	return obj, nil
}

// ReadParquet reads the stored Parquet piece of pc at key through ScanParquet, copying it
// to a temporary file first (Parquet is read from its footer, at the end). The result has
// the stored object's size and SHA-256; when wantSHA256 is not empty, another digest is a
// permanent error before any record reaches fn.
func ReadParquet(ctx context.Context, b blob.Bucket, key string, pc archive.Piece, cols []archive.ValueColumn, wantSHA256 string, fn func(*archive.Record) error) (*archive.ParquetObject, error) {
	hash := &countingHash{h: sha256.New()}
	f, err := blob.Spool(ctx, b, key, hash)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if sum := hash.sum(); wantSHA256 != "" && sum != wantSHA256 {
		return nil, failure.Permanent(fmt.Errorf("its sha256 is %s, want %s", sum, wantSHA256))
	}
	obj, err := ScanParquet(pc, f, f.Size, cols, fn)
	if err != nil {
		return nil, err
	}
	obj.Bytes, obj.SHA256 = hash.n, hash.sum()
	return obj, nil
}

// ScanParquet reads a stored Parquet piece of exactly the typed columns cols: every record must
// decode and lie in the piece's bounds, in offset order. Each record goes to fn when fn is
// not nil. Corruption is permanent.
func ScanParquet(pc archive.Piece, r io.ReaderAt, size int64, cols []archive.ValueColumn, fn func(*archive.Record) error) (*archive.ParquetObject, error) {
	if cols == nil {
		cols = []archive.ValueColumn{} // a plan without typed columns: the envelope alone
	}
	rd, err := columnar.Open(r, size, cols)
	if err != nil {
		return nil, failure.Permanent(err)
	}
	defer rd.Close()
	obj := &archive.ParquetObject{Key: archive.ParquetKey(pc.Topic, pc.Partition, pc.First)}
	prev := pc.First - 1
	for {
		var rec archive.Record
		err := rd.Next(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, failure.Permanent(err)
		}
		if err := acceptRecord(pc, &prev, &rec, fn); err != nil {
			return nil, err
		}
		obj.Records++
	}
	obj.Nulls = rd.Nulls()
	return obj, nil
}

// deriveParquet writes the piece's Parquet object from its stored JSON Lines.
func (w *worker) deriveParquet(ctx context.Context, pc archive.Piece) (*archive.ParquetObject, error) {
	key := w.parquetKey(pc)
	var columns *columnar.Writer
	u, err := w.store(ctx, pc, key, parquetContentType, func(out io.Writer) error {
		columns = columnar.NewWriter(out, w.plan.ValueColumns)
		rc, err := w.bucket.Get(ctx, w.key(pc.Key))
		if err != nil {
			return fmt.Errorf("read piece %s: %w", pc.Key, err)
		}
		defer rc.Close()
		zr, err := compress.NewReader(rc)
		if err != nil {
			return classifyRead(err)
		}
		defer zr.Close()
		dec := archive.NewDecoder(zr)
		for {
			rec, err := dec.Next()
			if errors.Is(err, io.EOF) {
				return columns.Close()
			}
			if err != nil {
				return classifyRead(err)
			}
			if err := columns.Write(&rec); err != nil {
				return err
			}
		}
	})
	if blob.IsExists(err) {
		return w.adoptStoredParquet(ctx, pc)
	}
	if err != nil {
		return nil, fmt.Errorf("derive %s from %s: %w", key, pc.Key, err)
	}
	w.log.Info("Parquet object derived from the stored JSON Lines", "key", key, "records", columns.Records())
	return &archive.ParquetObject{Key: key, Records: columns.Records(), Bytes: u.hash.n, SHA256: u.hash.sum(), Checksum: u.info.Checksum, Nulls: columns.Nulls()}, nil
}

func (w *worker) adoptStoredParquet(ctx context.Context, pc archive.Piece) (*archive.ParquetObject, error) {
	info, err := w.bucket.Head(ctx, w.key(w.parquetKey(pc)))
	if err != nil {
		return nil, fmt.Errorf("head piece %s after losing a create race: %w", w.parquetKey(pc), err)
	}
	return w.adoptParquet(ctx, pc, info)
}

// deriveJSONL writes the piece's JSON Lines from its stored Parquet object, and adopts
// what it stored.
func (w *worker) deriveJSONL(ctx context.Context, pc archive.Piece) (archive.PieceResult, error) {
	key := w.parquetKey(pc)
	_, err := w.store(ctx, pc, pc.Key, jsonlContentType, func(out io.Writer) error {
		lines, err := newLineSink(ctx, out, w.compress)
		if err != nil {
			return err
		}
		_, err = ReadParquet(ctx, w.bucket, w.key(key), pc, w.plan.ValueColumns, "", lines.Write)
		if err != nil {
			err = fmt.Errorf("read piece %s: %w", key, err)
		}
		if cerr := lines.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil && !blob.IsExists(err) {
		return archive.PieceResult{}, fmt.Errorf("derive %s from %s: %w", pc.Key, key, err)
	}
	info, err := w.bucket.Head(ctx, w.key(pc.Key))
	if err != nil {
		return archive.PieceResult{}, fmt.Errorf("head piece %s: %w", pc.Key, err)
	}
	w.log.Info("JSON Lines derived from the stored Parquet object", "key", pc.Key)
	return w.adopt(ctx, pc, info)
}

// store uploads one object of a piece that produce writes, with a conditional create.
func (w *worker) store(ctx context.Context, pc archive.Piece, key, contentType string, produce func(io.Writer) error) (*upload, error) {
	g, gctx := errgroup.WithContext(ctx)
	u := w.upload(gctx, g, pc, key, contentType)
	g.Go(func() error {
		err := produce(u)
		u.pw.CloseWithError(err)
		return err
	})
	return u, g.Wait()
}
