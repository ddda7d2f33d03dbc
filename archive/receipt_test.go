package archive

import (
	"errors"
	"testing"
)

// A v2 receipt accounts for every offset of each piece; a v1 receipt has no account, and
// is still read.
func TestReceiptMatchesAccount(t *testing.T) {
	pc := Piece{Key: PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180}
	plan := ShardPlan{Index: 0, Pieces: []Piece{pc}}
	receipt := func(format string, control, aborted, compacted int64) *Receipt {
		r := &Receipt{Format: format, Pipeline: "cdr", RunID: "r", Pieces: []PieceResult{}}
		r.Add(PieceResult{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First, End: pc.End,
			Records: 50, Control: control, Aborted: aborted, Compacted: compacted})
		return r
	}
	for _, tc := range []struct {
		name string
		r    *Receipt
		ok   bool
	}{
		{"every offset accounted for", receipt(ReceiptFormat, 2, 5, 3), true},
		{"an offset unaccounted for", receipt(ReceiptFormat, 2, 5, 2), false},
		{"an offset counted twice", receipt(ReceiptFormat, 2, 5, 4), false},
		{"a negative count", receipt(ReceiptFormat, 12, -2, 0), false},
		{"v1, without an account", receipt(ReceiptFormatV1, 0, 0, 0), true},
	} {
		err := tc.r.Matches(plan)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errUnaccounted) {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
