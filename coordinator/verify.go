package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
)

// verify proves the window before it is committed: every shard's receipt is present and
// lists exactly its planned pieces, so the pieces cover every planned range exactly once;
// every piece exists with the size and store checksum its receipt gives and the planned
// bounds in its metadata.
func verify(ctx context.Context, b blob.Bucket, dir string, plan *archive.Plan) ([]*archive.Receipt, error) {
	receipts := make([]*archive.Receipt, len(plan.Shards))
	for i, s := range plan.Shards {
		r, err := readReceipt(ctx, b, dir+archive.ReceiptKey(s.Index))
		if err != nil {
			return nil, err
		}
		if err := sameShard(r, s); err != nil {
			return nil, failure.Permanent(fmt.Errorf("verify shard %d: %w", s.Index, err))
		}
		for _, pc := range r.Pieces {
			if err := verifyPiece(ctx, b, dir, pc); err != nil {
				return nil, err
			}
		}
		receipts[i] = r
	}
	return receipts, nil
}

func readReceipt(ctx context.Context, b blob.Bucket, key string) (*archive.Receipt, error) {
	data, err := readAll(ctx, b, key)
	if blob.IsNotFound(err) {
		return nil, failure.Permanent(fmt.Errorf("verify: receipt %s is missing although its shard succeeded", key))
	}
	if err != nil {
		return nil, fmt.Errorf("read receipt %s: %w", key, err)
	}
	r, err := archive.DecodeReceipt(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read receipt %s: %w", key, err))
	}
	return r, nil
}

// sameShard checks that a receipt covers exactly the shard's planned pieces, and that its
// totals add up.
func sameShard(r *archive.Receipt, s archive.ShardPlan) error {
	if r.Shard != s.Index || len(r.Pieces) != len(s.Pieces) {
		return fmt.Errorf("receipt of shard %d lists %d pieces, the plan %d", r.Shard, len(r.Pieces), len(s.Pieces))
	}
	var records, raw, stored int64
	for i, p := range s.Pieces {
		got := r.Pieces[i]
		if got.Key != p.Key || got.Topic != p.Topic || got.Partition != p.Partition || got.First != p.First || got.End != p.End {
			return fmt.Errorf("receipt piece %d is %s [%d, %d), the plan's %s [%d, %d)", i, got.Key, got.First, got.End, p.Key, p.First, p.End)
		}
		if got.Records < 0 || got.Records > got.End-got.First {
			return fmt.Errorf("piece %s claims %d records in %d offsets", got.Key, got.Records, got.End-got.First)
		}
		records, raw, stored = records+got.Records, raw+got.RawBytes, stored+got.Bytes
	}
	if records != r.Records || raw != r.RawBytes || stored != r.Bytes {
		return fmt.Errorf("receipt totals (%d records, %d bytes) do not add up (%d, %d)", r.Records, r.Bytes, records, stored)
	}
	return nil
}

func verifyPiece(ctx context.Context, b blob.Bucket, dir string, pc archive.PieceResult) error {
	info, err := b.Head(ctx, dir+pc.Key)
	if blob.IsNotFound(err) {
		return failure.Permanent(fmt.Errorf("verify: piece %s is in a receipt but not in the store", pc.Key))
	}
	if err != nil {
		return fmt.Errorf("verify piece %s: %w", pc.Key, err)
	}
	first, end := strconv.FormatInt(pc.First, 10), strconv.FormatInt(pc.End, 10)
	if info.Checksum != pc.Checksum {
		return failure.Permanent(fmt.Errorf("verify: piece %s has checksum %q, its receipt says %q", pc.Key, info.Checksum, pc.Checksum))
	}
	if info.Size != pc.Bytes || info.Metadata["karch-first"] != first || info.Metadata["karch-end"] != end {
		return failure.Permanent(fmt.Errorf("verify: piece %s is %d bytes for [%s, %s), its receipt says %d bytes for [%s, %s)",
			pc.Key, info.Size, info.Metadata["karch-first"], info.Metadata["karch-end"], pc.Bytes, first, end))
	}
	return nil
}

// manifest assembles the window's manifest from its plan and verified receipts.
func (c *coordinator) manifest(plan *archive.Plan, receipts []*archive.Receipt) *archive.Manifest {
	m := &archive.Manifest{
		Format: archive.ManifestFormat, Pipeline: plan.Pipeline, Window: plan.Window, Objects: []archive.ManifestObject{},
		RunID: c.runID, FencingToken: c.token, CommittedAt: c.deps.Now().UTC(), KarchVersion: c.deps.Version,
	}
	records := map[archive.TopicPartition]int64{}
	for _, r := range receipts {
		for _, p := range r.Pieces {
			m.Objects = append(m.Objects, archive.ManifestObject{Key: p.Key, Topic: p.Topic, Partition: p.Partition, First: p.First,
				End: p.End, Records: p.Records, Bytes: p.Bytes, RawBytes: p.RawBytes, SHA256: p.SHA256, Checksum: p.Checksum})
			records[archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}] += p.Records
			m.Records, m.Bytes, m.RawBytes = m.Records+p.Records, m.Bytes+p.Bytes, m.RawBytes+p.RawBytes
		}
	}
	slices.SortFunc(m.Objects, func(a, b archive.ManifestObject) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.First, b.First))
	})
	for _, r := range plan.Ranges {
		m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: r.Topic, Partition: r.Partition, First: r.First, End: r.End,
			Records: records[archive.TopicPartition{Topic: r.Topic, Partition: r.Partition}]})
	}
	return m
}

// commit creates the manifest only if absent, and only while the lease holds. Losing the
// create to another coordinator is success: the first complete manifest is final.
func (c *coordinator) commit(ctx context.Context, dir string, m *archive.Manifest) (*archive.Manifest, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, false, fmt.Errorf("encode manifest: %w", err)
	}
	key := dir + archive.ManifestName
	_, err = c.deps.Bucket.Put(ctx, key, bytes.NewReader(append(data, '\n')), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if blob.IsExists(err) {
		theirs, rerr := c.readManifest(ctx, key)
		if rerr != nil {
			return nil, false, rerr
		}
		c.log.Warn("another run committed this window first; keeping its manifest", "window", m.Window.Start, "their_run_id", theirs.RunID)
		return theirs, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("put manifest %s: %w", key, err)
	}
	return m, true, nil
}
