package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"reflect"
	"slices"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/columnar"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/failure"
)

// write streams one piece from Kafka to its objects, one per format of the plan: records
// are encoded by one goroutine while the bucket uploads each object from the other end of
// a pipe, so memory stays bounded by the compressor's frames, a Parquet row group and the
// uploads' parts in flight.
func (w *worker) write(ctx context.Context, pc archive.Piece) (archive.PieceResult, error) {
	res := archive.PieceResult{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First, End: pc.End}
	g, gctx := errgroup.WithContext(ctx)
	jsonl := w.upload(gctx, g, pc, pc.Key, jsonlContentType)
	uploads := []*upload{jsonl}
	var pq *upload
	var columns io.Writer // nil, not a nil *upload, when the plan has no Parquet
	if w.plan.Parquet() {
		pq = w.upload(gctx, g, pc, w.parquetKey(pc), parquetContentType)
		uploads, columns = append(uploads, pq), pq
	}
	g.Go(func() error {
		err := w.encode(gctx, pc, jsonl, columns, &res)
		for _, u := range uploads {
			u.pw.CloseWithError(err)
		}
		return err
	})
	err := g.Wait()
	// A lost create race fails only at the commit, after every byte went through the
	// hash: the caller compares this result with the winner's.
	res.Bytes, res.SHA256, res.Checksum = jsonl.hash.n, jsonl.hash.sum(), jsonl.info.Checksum
	if pq != nil && res.Parquet != nil {
		res.Parquet.Bytes, res.Parquet.SHA256, res.Parquet.Checksum = pq.hash.n, pq.hash.sum(), pq.info.Checksum
	}
	return res, err
}

// encode reads the piece's range and writes it, compressed, to out, and as Parquet to pq
// when pq is not nil. It fills in the record counts (late ones too) and the uncompressed
// size.
func (w *worker) encode(ctx context.Context, pc archive.Piece, out, pq io.Writer, res *archive.PieceResult) error {
	lines, err := newLineSink(ctx, out, w.compress)
	if err != nil {
		return err
	}
	sinks := []recordSink{lines}
	var columns *columnar.Writer
	if pq != nil {
		columns = columnar.NewWriter(pq, w.plan.ValueColumns)
		sinks = append(sinks, columns)
	}
	tally, err := w.reader.ReadRangeTally(ctx, pc.Topic, pc.Partition, pc.First, pc.End, func(r *archive.Record) error {
		res.Records++
		if archive.IsLate(r, w.plan.Window) {
			res.Late++
		}
		for _, s := range sinks {
			if err := s.Write(r); err != nil {
				return err
			}
		}
		return nil
	})
	for _, s := range sinks {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil && tally.Records != res.Records {
		err = fmt.Errorf("the reader counted %d records, %d were written", tally.Records, res.Records)
	}
	if err != nil {
		return fmt.Errorf("archive %s/%d [%d, %d): %w", pc.Topic, pc.Partition, pc.First, pc.End, err)
	}
	res.RawBytes = lines.raw
	res.Control, res.Aborted, res.Compacted = tally.Control, tally.Aborted, tally.Compacted
	if columns != nil {
		res.Parquet = &archive.ParquetObject{Key: w.parquetKey(pc), Records: columns.Records(), Nulls: columns.Nulls()}
	}
	return nil
}

// recordSink is one format's encoder of a piece's records.
type recordSink interface {
	Write(*archive.Record) error
	Close() error
}

// lineSink encodes records as compressed JSON Lines, counting the uncompressed bytes.
type lineSink struct {
	zw   io.WriteCloser
	line []byte
	raw  int64
}

func newLineSink(ctx context.Context, out io.Writer, opts compress.Options) (*lineSink, error) {
	zw, err := compress.NewWriter(ctx, out, opts)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("start compressor: %w", err))
	}
	return &lineSink{zw: zw}, nil
}

func (s *lineSink) Write(r *archive.Record) error {
	s.line = archive.AppendLine(s.line[:0], r)
	s.raw += int64(len(s.line))
	_, err := s.zw.Write(s.line)
	return err
}

func (s *lineSink) Close() error { return s.zw.Close() }

const (
	jsonlContentType   = "application/zstd"
	parquetContentType = "application/vnd.apache.parquet"
)

// upload is one object of a piece going up: what is written to it is hashed and piped to
// a conditional create of key.
type upload struct {
	pw   *io.PipeWriter
	hash *countingHash
	info blob.ObjectInfo
}

func (w *worker) upload(ctx context.Context, g *errgroup.Group, pc archive.Piece, key, contentType string) *upload {
	pr, pw := io.Pipe()
	u := &upload{pw: pw, hash: &countingHash{h: sha256.New()}}
	g.Go(func() error {
		info, err := w.bucket.Put(ctx, w.key(key), pr, blob.PutOptions{
			IfAbsent:    true,
			ContentType: contentType,
			Metadata:    archive.PieceMetadata(pc.First, pc.End),
		})
		pr.CloseWithError(err) // a failed upload must not leave the encoder blocked on the pipe
		if err != nil {
			return fmt.Errorf("put piece %s: %w", key, err)
		}
		u.info = info
		return nil
	})
	return u
}

func (u *upload) Write(p []byte) (int, error) {
	n, err := u.pw.Write(p)
	u.hash.Write(p[:n])
	return n, err
}

// account gives a piece that an earlier attempt stored the account of its offsets, which is
// not stored with it: the range is read from Kafka again, counting only. The stored records
// are final, so offsets that held a record then and hold none now (the log cleaner ran in
// between) count as compacted.
func (w *worker) account(ctx context.Context, res *archive.PieceResult) error {
	tally, err := w.reader.ReadRangeTally(ctx, res.Topic, res.Partition, res.First, res.End, func(*archive.Record) error { return nil })
	if errors.Is(err, kafka.OffsetOutOfRange) {
		// Retention deleted offsets of the range since the piece was stored: the piece is
		// final, and refusing it would wedge the window for good. What Kafka no longer says
		// is counted as offsets that hold no record now.
		w.log.Warn("Kafka no longer holds the range of a stored piece; its offsets without a stored record count as compacted",
			"key", res.Key, "first", res.First, "end", res.End, "err", err)
		res.Control, res.Aborted, res.Compacted = 0, 0, res.End-res.First-res.Records
		return nil
	}
	if err != nil {
		return fmt.Errorf("account for the offsets of stored piece %s: %w", res.Key, err)
	}
	res.Control, res.Aborted = tally.Control, tally.Aborted
	res.Compacted = res.End - res.First - res.Records - tally.Control - tally.Aborted
	if res.Compacted < 0 {
		return failure.Permanent(fmt.Errorf("stored piece %s holds %d records, and Kafka now has %d markers and %d aborted records in its %d offsets",
			res.Key, res.Records, tally.Control, tally.Aborted, res.End-res.First))
	}
	return nil
}

// adopt checks a stored piece and rebuilds its receipt entry by reading it back: its bounds
// in metadata must be the plan's, every record must lie in them in offset order, and the
// stream must decompress and decode. The read costs one pass over a piece that an earlier
// attempt wrote, and proves it intact; a piece that fails the check is never overwritten.
// Its late records are counted from what is stored, as write counts what it stores.
func (w *worker) adopt(ctx context.Context, pc archive.Piece, info blob.ObjectInfo) (archive.PieceResult, error) {
	if err := archive.CheckPieceMetadata(pc.Key, info.Metadata, pc.First, pc.End); err != nil {
		return archive.PieceResult{}, failure.Permanent(err)
	}
	rc, err := w.bucket.Get(ctx, w.key(pc.Key))
	if err != nil {
		return archive.PieceResult{}, fmt.Errorf("read piece %s: %w", pc.Key, err)
	}
	defer rc.Close()
	var late int64
	res, err := ScanPieceFunc(pc, rc, func(r *archive.Record) error {
		if archive.IsLate(r, w.plan.Window) {
			late++
		}
		return nil
	})
	if err != nil {
		return archive.PieceResult{}, fmt.Errorf("check stored piece %s: %w", pc.Key, err)
	}
	res.Late, res.Checksum = late, info.Checksum
	return res, nil
}

// ScanPieceFunc reads a stored piece and measures it, giving each record to fn when fn is
// not nil: every record must decode and lie in the piece's bounds, in offset order.
// Adopting shards and verifiers share it. Corruption is permanent; an error reading the
// stream is not (the network may fail mid-read).
func ScanPieceFunc(pc archive.Piece, r io.Reader, fn func(*archive.Record) error) (archive.PieceResult, error) {
	res := archive.PieceResult{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First, End: pc.End}
	stored := &countingHash{h: sha256.New()}
	zr, err := compress.NewReader(io.TeeReader(r, stored))
	if err != nil {
		return res, err
	}
	defer zr.Close()
	var raw counter
	dec := archive.NewDecoder(io.TeeReader(zr, &raw))
	prev := pc.First - 1
	for {
		rec, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, classifyRead(err)
		}
		if err := acceptRecord(pc, &prev, &rec, fn); err != nil {
			return res, err
		}
		res.Records++
	}
	// Drain what the decoder did not need, so the digest covers every stored byte.
	if _, err := io.Copy(io.Discard, io.TeeReader(r, stored)); err != nil {
		return res, err
	}
	res.RawBytes, res.Bytes, res.SHA256 = int64(raw), stored.n, hex.EncodeToString(stored.h.Sum(nil))
	return res, nil
}

// acceptRecord checks that a stored record lies in its piece's bounds after the record at prev,
// then gives it to fn when fn is not nil: every scan of a stored piece, in either format.
func acceptRecord(pc archive.Piece, prev *int64, rec *archive.Record, fn func(*archive.Record) error) error {
	if rec.Topic != pc.Topic || rec.Partition != pc.Partition || rec.Offset <= *prev || rec.Offset >= pc.End {
		return failure.Permanent(fmt.Errorf("record %s/%d@%d after offset %d: outside the piece or out of order", rec.Topic, rec.Partition, rec.Offset, *prev))
	}
	*prev = rec.Offset
	if fn == nil {
		return nil
	}
	return fn(rec)
}

func classifyRead(err error) error {
	if errors.Is(err, compress.ErrCorrupt) || errors.Is(err, archive.ErrCorruptLine) {
		return failure.Permanent(err)
	}
	return err
}

// writeReceipt creates the receipt only if absent. An existing one (a concurrent pod for
// this index) must be byte-identical, since a receipt holds nothing that varies by attempt
// reading the same log; but the log cleaner may have run between the two attempts, so one
// that differs only in the accounts of its pieces' offsets is taken as final (sameStored).
func (w *worker) writeReceipt(ctx context.Context, r *archive.Receipt) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode receipt: %w", err)
	}
	data = append(data, '\n')
	key := w.key(archive.ReceiptKey(r.Shard))
	_, err = w.bucket.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if !blob.IsExists(err) {
		if err != nil {
			return fmt.Errorf("put receipt %s: %w", key, err)
		}
		return nil
	}
	stored, err := blob.ReadAll(ctx, w.bucket, key)
	if err != nil {
		return fmt.Errorf("read receipt %s after losing a create race: %w", key, err)
	}
	if theirs, err := archive.DecodeReceipt(stored); bytes.Equal(stored, data) || err == nil && sameStored(theirs, r) {
		return nil
	}
	return failure.Permanent(fmt.Errorf("receipt %s exists with other content", key))
}

// sameStored reports whether two receipts list the same stored objects, whatever their
// accounts of the offsets say.
func sameStored(a, b *archive.Receipt) bool {
	strip := func(r archive.Receipt) archive.Receipt {
		r.Pieces = slices.Clone(r.Pieces)
		for i := range r.Pieces {
			r.Pieces[i].Control, r.Pieces[i].Aborted, r.Pieces[i].Compacted = 0, 0, 0
		}
		return r
	}
	return reflect.DeepEqual(strip(*a), strip(*b))
}

// countingHash counts and hashes what is written to it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// counter counts what is written to it.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}
