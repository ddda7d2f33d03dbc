package checker

import (
	"fmt"
)

// checkChain follows the committed windows in order (FORMAT.md, "What a reader can
// check"): each manifest names the one before it by key and SHA-256 of its stored bytes,
// and each partition continues where the window before it ended (or after a declared
// gap). A partition's first window must begin at From (or its log start): that claim, and
// where the chain ends, are settled against Kafka when the partition is read (holes).
func (ch *check) checkChain() {
	next := map[int32]int64{} // where each partition of the chain continues
	from := map[int32]string{}
	for i, w := range ch.windows {
		ch.checkPrevious(i, w)
		if w.m == nil {
			continue
		}
		here := map[int32]bool{}
		for _, r := range w.m.Partitions {
			if r.Topic != ch.cfg.Topic || here[r.Partition] {
				continue // reported by checkRanges
			}
			here[r.Partition] = true
			ch.chainRange(w, r, next, from)
		}
		for _, o := range w.m.Objects {
			if o.Topic == ch.cfg.Topic { // an object of another topic is reported by checkObjects
				ps := ch.part(o.Partition)
				ps.objects = append(ps.objects, piece{w: w, o: o})
			}
		}
		for _, p := range sortedKeys(next) {
			if !here[p] {
				ch.rep.problem("%s: partition %d of the chain (last in %s) is missing", w.manifestKey(), p, from[p])
			}
		}
	}
	for p, end := range next {
		ps := ch.part(p)
		ps.inChain, ps.chainEnd = true, end
	}
}

// chainRange checks where one partition range of a window begins, and records it.
func (ch *check) chainRange(w *window, r mPartition, next map[int32]int64, from map[int32]string) {
	ps := ch.part(r.Partition)
	ps.ranges = append(ps.ranges, span{first: r.First, end: r.End, window: w.dir})
	at, known := next[r.Partition]
	for _, g := range w.m.Gaps {
		if g.Topic == r.Topic && g.Partition == r.Partition {
			ps.gaps = append(ps.gaps, gapRef{g: g, window: w.dir})
			if known && g.First == at {
				at = g.End
			}
		}
	}
	where := fmt.Sprintf("%s: partition %d", w.manifestKey(), r.Partition)
	switch {
	case !known:
		ch.chainStart(ps, where, r.First)
	case r.First != at:
		ch.rep.problem("%s starts at %d; the chain continues at %d, where %s ended", where, r.First, at, from[r.Partition])
	}
	next[r.Partition], from[r.Partition] = r.End, w.dir
}

// chainStart checks where a partition's first window begins: at From (or the log start).
// Beginning later is only wrong if Kafka holds a record in between (a hole, settled when
// the partition is read): offsets of aborted transactions or markers need no archiving.
func (ch *check) chainStart(ps *partState, where string, first int64) {
	want := ch.kafka.from(ps.p)
	switch {
	case first < want:
		ch.rep.problem("%s, new to the chain, starts at %d, before %d where coverage begins (From, or the log start)", where, first, want)
	case first > want:
		ps.holes = append(ps.holes, &hole{first: want, end: first, hit: -1,
			why: fmt.Sprintf("%s, new to the chain, starts at %d, after %d where coverage begins (From, or the log start)", where, first, want)})
	}
}

// checkPrevious checks a manifest's previous: the committed window that ends where this
// one starts, its key, and the SHA-256 of its stored bytes.
func (ch *check) checkPrevious(i int, w *window) {
	if w.m == nil {
		return
	}
	prev := ch.windowEndingAt(i, w)
	key := w.manifestKey()
	got := w.m.Previous
	switch {
	case got == nil && prev != nil:
		ch.rep.problem("%s has no previous, though %s ends where it starts", key, prev.manifestKey())
	case got == nil && i > 0:
		ch.rep.problem("%s has no previous, though it is not the pipeline's first window", key)
	case got == nil:
	case prev == nil:
		ch.rep.problem("%s: previous %s is not a committed window that ends at %s (its manifest is missing)", key, got.Key, stamp(w.start))
	case got.Key != prev.manifestKey():
		ch.rep.problem("%s: previous is %s; the window before it is %s", key, got.Key, prev.manifestKey())
	case got.SHA256 != prev.sum:
		ch.rep.problem("%s: previous.sha256 is %s; the stored bytes of %s hash to %s", key, got.SHA256, prev.manifestKey(), prev.sum)
	}
}

// windowEndingAt returns the committed window that ends where ch.windows[i] starts, if any.
func (ch *check) windowEndingAt(i int, w *window) *window {
	for j := i - 1; j >= 0; j-- {
		if ch.windows[j].end.Equal(w.start) {
			return ch.windows[j]
		}
	}
	if ch.prior != nil && ch.prior.end.Equal(w.start) {
		return ch.prior
	}
	return nil
}
