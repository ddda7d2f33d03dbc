// Package shard archives the pieces of one completion index of a window's plan: it reads
// each piece's offset range from Kafka, encodes it as JSON Lines, compresses it into zstd
// frames and streams it to the piece's fixed key, then writes the shard's receipt last.
//
// A shard is safe to run again, and to run twice at once: pieces are created only if absent,
// their content is fixed by their offsets, and a piece that exists already is checked and
// adopted instead of written (docs/DESIGN.md, "Commit order").
package shard

import (
	"context"
	"fmt"
	"log/slog"
	"path"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/failure"
)

// Spec says which shard of which plan to run.
type Spec struct {
	// PlanKey is the plan's key in Deps.Bucket; the window's objects are stored beside it.
	PlanKey string
	Index   int
	// Compress sets the zstd level and frame size of the pieces.
	Compress compress.Options
}

// Deps are the shard's connections to the world.
type Deps struct {
	Bucket blob.Bucket
	// OpenReader returns a reader for the plan's brokers.
	OpenReader func(brokers []string) RecordReader
	Logger     *slog.Logger
}

// Run archives shard spec.Index of the plan and returns its receipt. Errors that no retry can
// cure (an unreadable plan, an index out of range, a missing topic, a stored piece that does
// not match) are marked failure.Permanent.
func Run(ctx context.Context, spec Spec, deps Deps) (*archive.Receipt, error) {
	plan, err := loadPlan(ctx, deps.Bucket, spec.PlanKey)
	if err != nil {
		return nil, err
	}
	if spec.Index < 0 || spec.Index >= len(plan.Shards) {
		return nil, failure.Permanent(fmt.Errorf("shard index %d out of range: the plan has %d shards", spec.Index, len(plan.Shards)))
	}
	w := &worker{
		bucket:   deps.Bucket,
		dir:      path.Dir(spec.PlanKey),
		plan:     plan,
		shard:    plan.Shards[spec.Index],
		compress: spec.Compress,
		log:      deps.Logger.With("pipeline", plan.Pipeline, "run_id", plan.RunID, "window", plan.Window.Start, "shard", spec.Index),
	}
	if r, err := w.existingReceipt(ctx); r != nil || err != nil {
		return r, err
	}
	w.reader = deps.OpenReader(plan.Brokers)
	return w.run(ctx)
}

func loadPlan(ctx context.Context, b blob.Bucket, key string) (*archive.Plan, error) {
	data, err := blob.ReadAll(ctx, b, key)
	if blob.IsNotFound(err) {
		return nil, failure.Permanent(fmt.Errorf("read plan %s: %w", key, err))
	}
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", key, err)
	}
	plan, err := archive.DecodePlan(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read plan %s: %w", key, err))
	}
	return plan, nil
}

type worker struct {
	bucket   blob.Bucket
	dir      string
	plan     *archive.Plan
	shard    archive.ShardPlan
	compress compress.Options
	reader   RecordReader
	log      *slog.Logger
}

func (w *worker) key(rel string) string { return path.Join(w.dir, rel) }

func (w *worker) run(ctx context.Context) (*archive.Receipt, error) {
	receipt := &archive.Receipt{Format: archive.ReceiptFormat, Pipeline: w.plan.Pipeline, RunID: w.plan.RunID, Shard: w.shard.Index, Pieces: []archive.PieceResult{}}
	for _, pc := range w.shard.Pieces {
		res, err := w.piece(ctx, pc)
		if err != nil {
			return nil, err
		}
		receipt.Add(res)
	}
	if err := w.writeReceipt(ctx, receipt); err != nil {
		return nil, err
	}
	w.log.Info("shard done", "pieces", len(receipt.Pieces), "records", receipt.Records, "raw_bytes", receipt.RawBytes, "bytes", receipt.Bytes)
	return receipt, nil
}

// piece stores one piece in every format of the plan, or adopts what an earlier or
// concurrent attempt stored of it.
func (w *worker) piece(ctx context.Context, pc archive.Piece) (archive.PieceResult, error) {
	log := w.log.With("topic", pc.Topic, "partition", pc.Partition, "first", pc.First, "end", pc.End, "key", pc.Key)
	jsonl, pq, err := w.stored(ctx, pc)
	if err != nil {
		return archive.PieceResult{}, err
	}
	if jsonl != nil || pq != nil {
		res, err := w.complete(ctx, pc, jsonl, pq)
		if err == nil {
			log.Info("piece exists; adopted", "records", res.Records, "bytes", res.Bytes, "parquet", res.Parquet != nil)
		}
		return res, err
	}
	res, err := w.write(ctx, pc)
	switch {
	case blob.IsExists(err) && w.plan.Parquet():
		// Another pod for this index stored one object of the piece first: take what it
		// stored, and derive from it what it did not.
		log.Info("lost a create race for an object of the piece; adopting what is stored")
		if jsonl, pq, err = w.stored(ctx, pc); err != nil {
			return archive.PieceResult{}, err
		}
		return w.complete(ctx, pc, jsonl, pq)
	case blob.IsExists(err):
		// Another pod for this index finished the same piece first (Kubernetes may run
		// two): the content is fixed by the offsets, so equal bytes mean success.
		return w.adoptRace(ctx, pc, res)
	case err != nil:
		return archive.PieceResult{}, err
	}
	log.Info("piece stored", "records", res.Records, "raw_bytes", res.RawBytes, "bytes", res.Bytes, "parquet", res.Parquet != nil)
	return res, nil
}

// stored describes the piece's stored objects, JSON Lines and (when the plan has it)
// Parquet: nil where there is none.
func (w *worker) stored(ctx context.Context, pc archive.Piece) (jsonl, pq *blob.ObjectInfo, err error) {
	if jsonl, err = w.head(ctx, pc.Key); err != nil || !w.plan.Parquet() {
		return jsonl, nil, err
	}
	pq, err = w.head(ctx, w.parquetKey(pc))
	return jsonl, pq, err
}

// adoptRace takes the piece that won the create race in place of this attempt's. Two
// attempts far apart in time may read different records for the same offsets (compaction
// ran in between), so the winner's bytes may differ from ours: what counts is that the
// winner covers the planned range and decodes, which adopt checks. The winner is final
// either way, and the receipt is built from what is stored.
func (w *worker) adoptRace(ctx context.Context, pc archive.Piece, mine archive.PieceResult) (archive.PieceResult, error) {
	info, err := w.bucket.Head(ctx, w.key(pc.Key))
	if err != nil {
		return archive.PieceResult{}, fmt.Errorf("head piece %s after losing a create race: %w", pc.Key, err)
	}
	theirs, err := w.adopt(ctx, pc, info)
	if err != nil {
		return archive.PieceResult{}, err
	}
	if theirs.SHA256 == mine.SHA256 {
		// The same records: this attempt's account is the winner's.
		theirs.Control, theirs.Aborted, theirs.Compacted = mine.Control, mine.Aborted, mine.Compacted
		return theirs, nil
	}
	w.log.Warn("lost the create race to an attempt that read other records; adopting the stored piece",
		"key", pc.Key, "records", theirs.Records, "my_records", mine.Records, "sha256", theirs.SHA256, "my_sha256", mine.SHA256)
	return theirs, w.account(ctx, &theirs)
}

// existingReceipt returns the shard's receipt when an earlier attempt completed it.
func (w *worker) existingReceipt(ctx context.Context) (*archive.Receipt, error) {
	key := w.key(archive.ReceiptKey(w.shard.Index))
	data, err := blob.ReadAll(ctx, w.bucket, key)
	if blob.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read receipt %s: %w", key, err)
	}
	r, err := archive.DecodeReceipt(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read receipt %s: %w", key, err))
	}
	if err := r.Matches(w.shard); err != nil {
		return nil, failure.Permanent(fmt.Errorf("receipt %s: %w", key, err))
	}
	if err := r.CheckFormats(w.plan); err != nil {
		return nil, failure.Permanent(fmt.Errorf("receipt %s: %w", key, err))
	}
	w.log.Info("shard already done; its receipt exists", "records", r.Records)
	return r, nil
}
