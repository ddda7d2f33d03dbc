package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// window is one committed window under check.
type window struct {
	folder   *folder
	manifest *archive.Manifest // nil when it does not decode
	mu       sync.Mutex
	report   Window
}

func (w *window) problem(key, format string, a ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.report.Problems = append(w.report.Problems, Problem{Key: key, What: fmt.Sprintf(format, a...)})
}

// checkWindow checks one committed window: its manifest decodes and adds up, its objects
// tile its partitions' ranges, agree with the receipts and the plan, and are in the store as
// recorded.
func checkWindow(ctx context.Context, b blob.Bucket, f *folder, opts Options) (*window, error) {
	key := f.dir + archive.ManifestName
	w := &window{folder: f, report: Window{Window: f.window, Manifest: key, Problems: []Problem{}}}
	data, err := blob.ReadAll(ctx, b, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	w.report.SHA256 = archive.RefOf(key, data).SHA256
	m, err := archive.DecodeManifest(data)
	if err != nil {
		w.problem(key, "does not decode: %v", err)
		return w, nil
	}
	w.manifest = m
	w.report.Objects, w.report.Records, w.report.Bytes, w.report.Gaps = len(m.Objects), m.Records, m.Bytes, m.Gaps
	w.checkTotals()
	w.checkTiling()
	w.checkFormats()
	if err := w.checkReceipts(ctx, b); err != nil {
		return nil, err
	}
	return w, w.checkObjects(ctx, b, opts)
}

// checkTotals checks that the manifest's counts add up and that it is the window its folder
// names.
func (w *window) checkTotals() {
	m, key := w.manifest, w.report.Manifest
	if !m.Window.Start.Equal(w.folder.window.Start) || !m.Window.End.Equal(w.folder.window.End) {
		w.problem(key, "is for window [%s, %s), its folder for [%s, %s)", m.Window.Start, m.Window.End, w.folder.window.Start, w.folder.window.End)
	}
	var records, stored, raw int64
	perPartition, latePerPartition := map[archive.TopicPartition]int64{}, map[archive.TopicPartition]int64{}
	for _, o := range m.Objects {
		records, stored, raw = records+o.Records, stored+o.Bytes, raw+o.RawBytes
		perPartition[archive.TopicPartition{Topic: o.Topic, Partition: o.Partition}] += o.Records
		latePerPartition[archive.TopicPartition{Topic: o.Topic, Partition: o.Partition}] += o.Late
		if o.Late < 0 || o.Late > o.Records {
			w.problem(key, "object %s says %d of its %d records are late", o.Key, o.Late, o.Records)
		}
	}
	if m.Late != nil && lateTotal(m) != *m.Late {
		w.problem(key, "says %d late records; its objects add up to %d", *m.Late, lateTotal(m))
	}
	if records != m.Records || stored != m.Bytes || raw != m.RawBytes {
		w.problem(key, "totals say %d records, %d bytes, %d raw bytes; its objects add up to %d, %d, %d", m.Records, m.Bytes, m.RawBytes, records, stored, raw)
	}
	for _, p := range m.Partitions {
		tp := archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		if got := perPartition[tp]; got != p.Records {
			w.problem(key, "partition %s/%d says %d records; its objects hold %d", p.Topic, p.Partition, p.Records, got)
		}
		if got := latePerPartition[tp]; got != p.Late {
			w.problem(key, "partition %s/%d says %d late records; its objects hold %d", p.Topic, p.Partition, p.Late, got)
		}
	}
}

// checkTiling checks that each partition's objects cover its range [first, end) exactly:
// no offset in two objects, none in no object.
func (w *window) checkTiling() {
	m, key := w.manifest, w.report.Manifest
	byPartition := map[archive.TopicPartition][]archive.ManifestObject{}
	for _, o := range m.Objects {
		tp := archive.TopicPartition{Topic: o.Topic, Partition: o.Partition}
		byPartition[tp] = append(byPartition[tp], o)
	}
	for _, p := range m.Partitions {
		tp := archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		objs := byPartition[tp]
		delete(byPartition, tp)
		slices.SortFunc(objs, func(a, b archive.ManifestObject) int { return cmp.Compare(a.First, b.First) })
		pos := p.First
		for _, o := range objs {
			if o.First != pos {
				w.problem(key, "partition %s/%d: object %s starts at %d where offset %d is next", p.Topic, p.Partition, o.Key, o.First, pos)
			}
			pos = o.End
		}
		if pos != p.End {
			w.problem(key, "partition %s/%d: its objects end at %d, its range at %d", p.Topic, p.Partition, pos, p.End)
		}
	}
	for tp, objs := range byPartition {
		w.problem(key, "%d objects of partition %s/%d, which the manifest's ranges do not name", len(objs), tp.Topic, tp.Partition)
	}
}

// checkReceipts checks that every shard of the plan left a receipt that matches its planned
// pieces, and that the receipts and the manifest describe the same objects.
func (w *window) checkReceipts(ctx context.Context, b blob.Bucket) error {
	planKey := w.folder.dir + archive.PlanName
	data, err := blob.ReadAll(ctx, b, planKey)
	if blob.IsNotFound(err) {
		w.problem(planKey, "is missing")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", planKey, err)
	}
	plan, err := archive.DecodePlan(data)
	if err != nil {
		w.problem(planKey, "does not decode: %v", err)
		return nil
	}
	inReceipts := map[string]archive.PieceResult{}
	for _, s := range plan.Shards {
		r, err := w.readReceipt(ctx, b, s)
		if err != nil || r == nil {
			return err
		}
		for _, pc := range r.Pieces {
			inReceipts[pc.Key] = pc
		}
	}
	w.compareReceipts(inReceipts)
	return nil
}

// readReceipt reads shard s's receipt and checks it against the plan; nil when it is
// missing or wrong, which is a problem, not an error.
func (w *window) readReceipt(ctx context.Context, b blob.Bucket, s archive.ShardPlan) (*archive.Receipt, error) {
	key := w.folder.dir + archive.ReceiptKey(s.Index)
	data, err := blob.ReadAll(ctx, b, key)
	if blob.IsNotFound(err) {
		w.problem(key, "is missing: shard %d left no receipt", s.Index)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	r, err := archive.DecodeReceipt(data)
	if err == nil {
		err = r.Matches(s)
	}
	if err != nil {
		w.problem(key, "%v", err)
		return nil, nil
	}
	return r, nil
}

func (w *window) compareReceipts(inReceipts map[string]archive.PieceResult) {
	key := w.report.Manifest
	for _, o := range w.manifest.Objects {
		pc, ok := inReceipts[o.Key]
		delete(inReceipts, o.Key)
		switch {
		case !ok:
			w.problem(key, "object %s is in no receipt", o.Key)
		case pc.First != o.First || pc.End != o.End || pc.Records != o.Records || pc.Late != o.Late || pc.Bytes != o.Bytes || pc.RawBytes != o.RawBytes || pc.SHA256 != o.SHA256:
			w.problem(key, "object %s: the manifest says [%d, %d) %d records (%d late) %d bytes sha256 %s, its receipt [%d, %d) %d records (%d late) %d bytes sha256 %s",
				o.Key, o.First, o.End, o.Records, o.Late, o.Bytes, o.SHA256, pc.First, pc.End, pc.Records, pc.Late, pc.Bytes, pc.SHA256)
		case !sameParquet(pc.Parquet, o.Parquet):
			w.problem(key, "object %s: the manifest and its receipt describe its Parquet object differently: %+v and %+v", o.Key, o.Parquet, pc.Parquet)
		}
	}
	for k := range inReceipts {
		w.problem(key, "object %s is in a receipt but not in the manifest", k)
	}
}

// checkObjects checks every object of the manifest in the store, opts.Parallel at once.
func (w *window) checkObjects(ctx context.Context, b blob.Bucket, opts Options) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallel)
	for _, o := range w.manifest.Objects {
		g.Go(func() error {
			err := w.checkObject(gctx, b, o, opts.Deep)
			if err == nil && opts.Progress != nil {
				opts.Progress(o.Bytes)
			}
			return err
		})
	}
	return g.Wait()
}

// checkObject compares one object with its manifest entry: size, the store's checksum and
// the planned bounds in its metadata; with deep, every record and the digest too.
func (w *window) checkObject(ctx context.Context, b blob.Bucket, o archive.ManifestObject, deep bool) error {
	key := w.folder.dir + o.Key
	info, err := b.Head(ctx, key)
	switch {
	case blob.IsNotFound(err):
		w.problem(key, "is missing")
		return nil
	case err != nil:
		return fmt.Errorf("head %s: %w", key, err)
	case info.Size != o.Bytes:
		w.problem(key, "is %d bytes, the manifest says %d", info.Size, o.Bytes)
		return nil // a read would only fail on the same bytes
	case o.Checksum != "" && info.Checksum != o.Checksum:
		w.problem(key, "has the store checksum %q, the manifest says %q", info.Checksum, o.Checksum)
	}
	if err := archive.CheckPieceMetadata(o.Key, info.Metadata, o.First, o.End); err != nil {
		w.problem(key, "%v", err)
	}
	readable := o.Parquet != nil
	if readable {
		if readable, err = w.headParquet(ctx, b, o); err != nil {
			return err
		}
	}
	if !deep {
		return nil
	}
	jsonl, err := w.readObject(ctx, b, key, o)
	if err != nil || !readable {
		return err
	}
	return w.readParquet(ctx, b, o, jsonl)
}

// readObject reads an object through and compares what it holds with its manifest entry,
// its late records (archive.IsLate in the manifest's window) included. It returns the digest
// of its records' lines, which a Parquet copy must match: the copy holds the same records,
// so the same late ones.
func (w *window) readObject(ctx context.Context, b blob.Bucket, key string, o archive.ManifestObject) (string, error) {
	rc, err := b.Get(ctx, key)
	if blob.IsNotFound(err) {
		return "", nil // Head reported it
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	lines := newLineDigest()
	var late int64
	got, err := shard.ScanPieceFunc(pieceOf(o), rc, func(r *archive.Record) error {
		if archive.IsLate(r, w.manifest.Window) {
			late++
		}
		return lines.add(r)
	})
	if failure.IsPermanent(err) {
		w.problem(key, "%v", err)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	if got.Records != o.Records || got.Bytes != o.Bytes || got.RawBytes != o.RawBytes || got.SHA256 != o.SHA256 {
		w.problem(key, "holds %d records, %d bytes (%d raw) with sha256 %s; the manifest says %d, %d (%d raw), %s",
			got.Records, got.Bytes, got.RawBytes, got.SHA256, o.Records, o.Bytes, o.RawBytes, o.SHA256)
	}
	if w.manifest.Late != nil && late != o.Late { // a manifest without late predates the counts
		w.problem(key, "holds %d late records (stamped before the window's start %s); the manifest says %d",
			late, w.manifest.Window.Start.Format(time.RFC3339), o.Late)
	}
	return lines.sum(), nil
}

func lateTotal(m *archive.Manifest) int64 {
	var n int64
	for _, o := range m.Objects {
		n += o.Late
	}
	return n
}
