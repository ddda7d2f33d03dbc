package checker

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// partState is what the checker knows of one partition: its ranges and objects in the
// committed windows, and, while the partition is being checked, its archived records.
type partState struct {
	p       int32
	ranges  []span  // the windows' ranges of the partition, in chain order
	objects []piece // the windows' objects of the partition, in chain order
	gaps    []gapRef
	holes   []*hole
	// inChain is true when a committed window has the partition; chainEnd is where the
	// chain's last range of it ends.
	inChain  bool
	chainEnd int64

	slots map[int64]*slot // archived records by offset; only while checked
	// heldInGap are offsets of declared gaps that Kafka still holds, which the Kafka pass
	// reports as lost already.
	heldInGap map[int64]bool
}

type span struct {
	first, end int64
	window     string
}

type piece struct {
	w *window
	o mObject
}

type gapRef struct {
	g      mGap
	window string
}

// hole is a claim that [first, end) holds no record Kafka holds at read_committed: true,
// it is a harmless difference (aborted records, transaction markers); false, it is a
// problem, and hit is the first offset Kafka holds in it.
type hole struct {
	first, end int64
	why        string
	hit        int64
}

// slot is one archived offset: every line the committed windows hold for it, and what
// Kafka holds there.
type slot struct {
	occ  []occurrence
	held heldKind
}

type heldKind uint8

const (
	heldNothing heldKind = iota
	heldRecord
	heldMarker
)

// occurrence is one record line for an offset; rec is nil when the line does not decode,
// and bad says why.
type occurrence struct {
	where string
	rec   *record
	bad   string
}

func (ch *check) part(p int32) *partState {
	if ch.parts == nil {
		ch.parts = map[int32]*partState{}
	}
	ps, ok := ch.parts[p]
	if !ok {
		ps = &partState{p: p}
		ch.parts[p] = ps
	}
	return ps
}

func (ps *partState) add(offset int64, oc occurrence) {
	s, ok := ps.slots[offset]
	if !ok {
		s = &slot{}
		ps.slots[offset] = s
	}
	s.occ = append(s.occ, oc)
}

// checkPartitions checks every partition that Kafka or the chain knows, one at a time:
// it reads the partition's objects, then Kafka's records of it in offset order.
func (ch *check) checkPartitions(ctx context.Context) error {
	for _, p := range ch.kafka.partitions() {
		ch.part(p)
	}
	for _, p := range sortedKeys(ch.parts) {
		ps := ch.parts[p]
		lo, hi := ch.kafka.bounds(p, ch.rep)
		ch.checkCoverage(ps, lo, hi)
		ps.slots, ps.heldInGap = map[int64]*slot{}, map[int64]bool{}
		for _, pc := range ps.objects {
			if err := ch.readObject(ctx, pc.w, pc.o, ps); err != nil {
				return err
			}
		}
		if err := ch.compare(ctx, ps, lo, hi); err != nil {
			return err
		}
		ch.settle(ps, lo, hi)
		ps.slots, ps.heldInGap = nil, nil
	}
	return nil
}

// checkCoverage checks that the chain covers the partition up to Kafka's end: ending past
// it is a problem; ending before it is one if Kafka holds a record in between (a hole).
func (ch *check) checkCoverage(ps *partState, lo, hi int64) {
	switch {
	case !ps.inChain && len(ch.windows) > 0 && ch.kafka.has(ps.p):
		ch.rep.problem("partition %d of the topic is in no committed window (a plan has every partition)", ps.p)
	case !ps.inChain:
	case ps.chainEnd > hi:
		ch.rep.problem("partition %d: the committed windows end at %d, after Kafka's end %d", ps.p, ps.chainEnd, hi)
	case ps.chainEnd < hi:
		ps.holes = append(ps.holes, &hole{first: ps.chainEnd, end: hi, hit: -1,
			why: fmt.Sprintf("partition %d: the committed windows end at %d, before Kafka's end %d", ps.p, ps.chainEnd, hi)})
	}
}

// settle reports what the Kafka pass left: duplicates, archived offsets that Kafka does
// not hold, holes that held records, and the offsets of declared gaps.
func (ch *check) settle(ps *partState, lo, hi int64) {
	for _, off := range sortedKeys(ps.slots) {
		s := ps.slots[off]
		if len(s.occ) > 1 {
			ch.duplicated(ps.p, off, s)
		}
		switch s.held {
		case heldNothing:
			ch.mismatch(ps.p, off, fmt.Sprintf("Kafka holds no record here at read_committed (an aborted transaction's record, or outside [%d, %d)); archived in %s", lo, hi, s.occ[0].where))
		case heldMarker:
			ch.mismatch(ps.p, off, fmt.Sprintf("Kafka holds a transaction marker here; archived in %s", s.occ[0].where))
		}
	}
	for _, h := range ps.holes {
		if h.hit >= 0 {
			ch.rep.problem("%s; Kafka holds a record at %d in [%d, %d)", h.why, h.hit, h.first, h.end)
		}
	}
	for _, g := range ps.gaps {
		ch.gapLost(ps, g)
	}
}

// maxGapRefs bounds the lost offsets listed for one declared gap.
const maxGapRefs = 100_000

// gapLost lists the offsets of a declared gap as lost, but those that the Kafka pass
// listed already or that a window holds after all.
func (ch *check) gapLost(ps *partState, g gapRef) {
	end := g.g.End
	if end-g.g.First > maxGapRefs {
		end = g.g.First + maxGapRefs
		ch.rep.problem("%s: the gap of partition %d [%d, %d) is long; only its first %d offsets are listed as lost", g.window, ps.p, g.g.First, g.g.End, maxGapRefs)
	}
	for off := g.g.First; off < end; off++ {
		if !ps.heldInGap[off] && ps.slots[off] == nil {
			ch.rep.Lost = append(ch.rep.Lost, Ref{ps.p, off, fmt.Sprintf("in a gap that %s declares (reason %q)", g.window, g.g.Reason)})
		}
	}
}

func (ch *check) duplicated(p int32, off int64, s *slot) {
	var where []string
	for _, oc := range s.occ {
		where = append(where, oc.where)
	}
	ch.rep.Duplicated = append(ch.rep.Duplicated, Ref{p, off, fmt.Sprintf("archived %d times: %v", len(s.occ), where)})
}

func (ch *check) mismatch(p int32, off int64, why string) {
	ch.rep.Mismatched = append(ch.rep.Mismatched, Ref{p, off, why})
}

// whyLost says where the archive should have held an offset that Kafka holds.
func (ps *partState) whyLost(off int64) string {
	for _, r := range ps.ranges {
		if off < r.first || off >= r.end {
			continue
		}
		for _, pc := range ps.objects {
			if pc.w.dir == r.window && off >= pc.o.First && off < pc.o.End {
				return fmt.Sprintf("Kafka holds it; window %s covers it, but object %s%s [%d, %d) has no line for it", r.window, pc.w.dir, pc.o.Key, pc.o.First, pc.o.End)
			}
		}
		return fmt.Sprintf("Kafka holds it; window %s covers it, but none of its objects does", r.window)
	}
	return "Kafka holds it; no committed window covers it"
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
