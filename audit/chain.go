package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// checkChain checks the windows, oldest first, as one chain: each starts where the one
// before ended, in time and in every partition's offsets (but for declared gaps), and each
// records the key and digest of the manifest before it. The first window's record of its
// predecessor, outside the checked range, is checked against the store.
func checkChain(ctx context.Context, b blob.Bucket, windows []*window) ([]Problem, error) {
	var out []Problem
	origins, err := checkOrigin(ctx, b, windows)
	if err != nil {
		return nil, err
	}
	out = append(out, origins...)
	for i, cur := range windows {
		if cur.manifest == nil {
			continue
		}
		if i == 0 {
			p, err := checkOutsideLink(ctx, b, cur)
			if err != nil {
				return nil, err
			}
			out = append(out, p...)
			continue
		}
		prev := windows[i-1]
		if !prev.folder.window.End.Equal(cur.folder.window.Start) {
			out = append(out, Problem{What: fmt.Sprintf("no window is committed for [%s, %s): the chain has a hole",
				prev.folder.window.End.Format(time.RFC3339), cur.folder.window.Start.Format(time.RFC3339))})
		}
		if prev.manifest != nil {
			checkLink(cur, prev)
			checkOffsets(cur, prev.manifest)
		}
	}
	return out, nil
}

// checkLink compares cur's record of the manifest before it with that manifest as stored.
// A window committed before a backfill that ends where it begins records none; the
// backfill's last manifest records it as next instead.
func checkLink(cur, prev *window) {
	ref, key := cur.manifest.Previous, cur.report.Manifest
	if next := prev.manifest.Next; ref == nil && next != nil {
		switch {
		case next.Key != key:
			prev.problem(prev.report.Manifest, "records %s as the manifest after it; the window after it is %s", next.Key, key)
		case next.SHA256 != cur.report.SHA256:
			prev.problem(prev.report.Manifest, "records sha256 %s for %s, which now has %s: that manifest was altered", next.SHA256, key, cur.report.SHA256)
		}
		return
	}
	switch {
	case ref == nil && prev.manifest.Previous != nil:
		cur.problem(key, "records no manifest before it, although the chain records them from %s on", prev.report.Manifest)
	case ref == nil:
		// Written before karch recorded the link: the chain's start.
	case ref.Key != prev.report.Manifest:
		cur.problem(key, "records %s as the manifest before it; the window before it is %s", ref.Key, prev.report.Manifest)
	case ref.SHA256 != prev.report.SHA256:
		cur.problem(key, "records sha256 %s for %s, which now has %s: that manifest was altered", ref.SHA256, ref.Key, prev.report.SHA256)
	}
}

// checkOutsideLink checks the first window's record of its predecessor against the store.
func checkOutsideLink(ctx context.Context, b blob.Bucket, first *window) ([]Problem, error) {
	return checkStoredRef(ctx, b, first, first.manifest.Previous, "the manifest before it")
}

// checkStoredRef checks a manifest that w records as what against the store: it is there,
// with the digest recorded.
func checkStoredRef(ctx context.Context, b blob.Bucket, w *window, ref *archive.ManifestRef, what string) ([]Problem, error) {
	if ref == nil {
		return nil, nil
	}
	data, err := blob.ReadAll(ctx, b, ref.Key)
	if blob.IsNotFound(err) {
		return []Problem{{Key: ref.Key, What: fmt.Sprintf("is missing, and %s records it as %s", w.report.Manifest, what)}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref.Key, err)
	}
	if got := archive.RefOf(ref.Key, data); got.SHA256 != ref.SHA256 {
		w.problem(w.report.Manifest, "records sha256 %s for %s (%s), which now has %s: that manifest was altered", ref.SHA256, ref.Key, what, got.SHA256)
	}
	return nil, nil
}

// checkOffsets checks that every partition of the window before continues where it ended,
// or after a gap the window declares.
func checkOffsets(cur *window, prev *archive.Manifest) {
	key := cur.report.Manifest
	ends, err := archive.Chained(prev.End(), prev.Topics, cur.manifest.Topics)
	if err != nil {
		cur.problem(key, "%v", err)
		return
	}
	for _, p := range cur.manifest.Partitions {
		tp := archive.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		end, ok := ends[tp]
		delete(ends, tp)
		if !ok || p.First == end {
			continue
		}
		gap := archive.Gap{Topic: p.Topic, Partition: p.Partition, First: end, End: p.First, Reason: archive.GapRetention}
		if !slices.Contains(cur.manifest.Gaps, gap) {
			cur.problem(key, "partition %s/%d starts at offset %d; the window before ended at %d", p.Topic, p.Partition, p.First, end)
		}
	}
	for tp, end := range ends {
		cur.problem(key, "partition %s/%d, archived up to offset %d by the window before, is missing", tp.Topic, tp.Partition, end)
	}
}

// checkOrigin checks the chain's first window as the newest manifest records it: it is
// stored with the digest recorded. The newest manifest vouches for it, so removing the
// chain's oldest windows (a backfill's, say) is seen, as removing any other window is by the
// links between them. Windows before it are a backfill that joined the chain since; their
// links are checked like any others.
func checkOrigin(ctx context.Context, b blob.Bucket, windows []*window) ([]Problem, error) {
	var newest *window
	for _, w := range windows {
		if w.manifest != nil {
			newest = w
		}
	}
	if newest == nil {
		return nil, nil
	}
	return checkStoredRef(ctx, b, newest, newest.manifest.Origin, "the chain's first window")
}
