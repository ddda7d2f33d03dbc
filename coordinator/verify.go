package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

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
		if err := r.Matches(s); err != nil {
			return nil, failure.Permanent(fmt.Errorf("verify shard %d: %w", s.Index, err))
		}
		if err := r.CheckFormats(plan); err != nil {
			return nil, failure.Permanent(fmt.Errorf("verify shard %d: %w", s.Index, err))
		}
		for _, pc := range r.Pieces {
			if err := verifyPiece(ctx, b, dir, pc); err != nil {
				return nil, err
			}
			if q := pc.Parquet; q != nil {
				if err := verifyObject(ctx, b, dir, q.Key, q.Bytes, q.Checksum, pc.First, pc.End); err != nil {
					return nil, err
				}
			}
		}
		receipts[i] = r
	}
	return receipts, nil
}

func readReceipt(ctx context.Context, b blob.Bucket, key string) (*archive.Receipt, error) {
	data, err := blob.ReadAll(ctx, b, key)
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

func verifyPiece(ctx context.Context, b blob.Bucket, dir string, pc archive.PieceResult) error {
	return verifyObject(ctx, b, dir, pc.Key, pc.Bytes, pc.Checksum, pc.First, pc.End)
}

// verifyObject checks one stored object of a piece, of any format, against its receipt.
func verifyObject(ctx context.Context, b blob.Bucket, dir, key string, size int64, checksum string, first, end int64) error {
	info, err := b.Head(ctx, dir+key)
	if blob.IsNotFound(err) {
		return failure.Permanent(fmt.Errorf("verify: piece %s is in a receipt but not in the store", key))
	}
	if err != nil {
		return fmt.Errorf("verify piece %s: %w", key, err)
	}
	if info.Checksum != checksum {
		return failure.Permanent(fmt.Errorf("verify: piece %s has checksum %q, its receipt says %q", key, info.Checksum, checksum))
	}
	if info.Size != size {
		return failure.Permanent(fmt.Errorf("verify: piece %s is %d bytes, its receipt says %d", key, info.Size, size))
	}
	if err := archive.CheckPieceMetadata(key, info.Metadata, first, end); err != nil {
		return failure.Permanent(fmt.Errorf("verify: %w", err))
	}
	return nil
}

// manifest assembles the window's manifest from its plan and verified receipts, chained to
// the manifest before it and naming the chain's first.
func (c *coordinator) manifest(ctx context.Context, plan *archive.Plan, receipts []*archive.Receipt, prev *stored) (*archive.Manifest, error) {
	m := &archive.Manifest{
		Format: archive.ManifestFormat, Pipeline: plan.Pipeline, Window: plan.Window, Objects: []archive.ManifestObject{},
		RunID: c.runID, FencingToken: c.token, CommittedAt: c.deps.Now().UTC(), KarchVersion: c.deps.Version, Gaps: plan.Gaps,
		Formats: plan.Formats, ValueColumns: plan.ValueColumns, Topics: plan.Topics,
	}
	records, late := map[archive.TopicPartition]int64{}, map[archive.TopicPartition]int64{}
	var total int64
	for _, r := range receipts {
		for _, p := range r.Pieces {
			m.Objects = append(m.Objects, archive.ManifestObject{Key: p.Key, Topic: p.Topic, Partition: p.Partition, First: p.First,
				End: p.End, Records: p.Records, Late: p.Late, Bytes: p.Bytes, RawBytes: p.RawBytes, SHA256: p.SHA256, Checksum: p.Checksum, Parquet: p.Parquet})
			records[archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}] += p.Records
			late[archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}] += p.Late
			m.Records, m.Bytes, m.RawBytes = m.Records+p.Records, m.Bytes+p.Bytes, m.RawBytes+p.RawBytes
			total += p.Late
		}
	}
	m.Late = &total
	if prev != nil {
		m.Previous = &prev.ref
	}
	origin, err := c.origin(ctx, prev)
	if err != nil {
		return nil, err
	}
	m.Origin = origin
	slices.SortFunc(m.Objects, func(a, b archive.ManifestObject) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.First, b.First))
	})
	for _, r := range plan.Ranges {
		tp := archive.TopicPartition{Topic: r.Topic, Partition: r.Partition}
		m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: r.Topic, Partition: r.Partition, First: r.First, End: r.End,
			Records: records[tp], Late: late[tp]})
	}
	return m, nil
}

// origin is the manifest of the first window of the chain that prev belongs to: prev's
// origin, or prev itself when it is the first, moved back over every backfill that has
// since joined the chain before it (the claim of the slot before it names the backfill's
// first window). Nil for a chain's first window, and for a chain whose manifests predate
// the field.
func (c *coordinator) origin(ctx context.Context, prev *stored) (*archive.ManifestRef, error) {
	var o archive.ManifestRef
	switch {
	case prev == nil || prev.ref.Key == "":
		return nil, nil
	case prev.Origin != nil:
		o = *prev.Origin
	case prev.Previous == nil:
		o = prev.ref
	default:
		return nil, nil
	}
	for {
		w, ok := archive.ParseWindowDir(o.Key)
		if !ok {
			return nil, failure.Permanent(fmt.Errorf("manifest %s: origin %s is not a window's manifest", prev.ref.Key, o.Key))
		}
		cl, err := c.readClaim(ctx, archive.SlotFirstBefore(w))
		if err != nil || cl == nil {
			return &o, err
		}
		first, err := c.readManifest(ctx, archive.WindowDir(c.cfg.Pipeline, cl.Window.Start, cl.Window.End.Sub(cl.Window.Start))+archive.ManifestName)
		if blob.IsNotFound(err) {
			return &o, nil // the backfill has not committed its first window yet
		}
		if err != nil {
			return nil, err
		}
		o = first.ref
	}
}

// commit creates the manifest only if absent, and only while the lease holds. Losing the
// create to another coordinator is success: the first complete manifest is final.
func (c *coordinator) commit(ctx context.Context, dir string, m *archive.Manifest) (*stored, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, false, fmt.Errorf("encode manifest: %w", err)
	}
	key := dir + archive.ManifestName
	data = append(data, '\n')
	_, err = c.deps.Bucket.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
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
	return &stored{Manifest: m, ref: archive.RefOf(key, data)}, true, nil
}
