package restore

import (
	"cmp"
	"slices"
)

// span is a run of consecutive origin offsets, [first, last], all in the target.
type span struct{ first, last int64 }

// present is what a target partition already holds of one source partition: sorted,
// disjoint spans of origin offsets. A record is skipped only when its very offset is in a
// span, so that a restore of an earlier window after a later one, a rerun after a narrower
// --from-offset, or a record whose produce failed while later ones landed, are all written.
// A whole restore of dense offsets is one span; each offset the source lacks (compaction,
// transaction markers) costs one more, 16 bytes.
type present struct {
	spans []span
	// sorted is false while the scan appends spans in target order.
	sorted bool
}

// add notes one origin offset, as the scan reads it in target order. Records of one restore
// arrive in offset order, so they extend the last span.
func (p *present) add(off int64) {
	if n := len(p.spans); n > 0 && p.spans[n-1].last+1 == off {
		p.spans[n-1].last = off
		return
	}
	p.spans = append(p.spans, span{off, off})
	p.sorted = false
}

// settle sorts the spans and merges those that overlap or touch (a record written twice by
// an older karch is one offset all the same).
func (p *present) settle() {
	if p.sorted {
		return
	}
	slices.SortFunc(p.spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	out := p.spans[:0]
	for _, s := range p.spans {
		if n := len(out); n > 0 && s.first <= out[n-1].last+1 {
			out[n-1].last = max(out[n-1].last, s.last)
			continue
		}
		out = append(out, s)
	}
	p.spans, p.sorted = out, true
}

// has reports whether off is in the target. settle must have run.
func (p *present) has(off int64) bool {
	_, found := slices.BinarySearchFunc(p.spans, off, func(s span, off int64) int {
		switch {
		case s.last < off:
			return -1
		case s.first > off:
			return 1
		}
		return 0
	})
	return found
}
