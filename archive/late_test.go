package archive

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A record is late when its timestamp is before the window's start; one at the start is
// not, and one without a timestamp (-1) is.
func TestIsLate(t *testing.T) {
	start := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	w := Window{Start: start, End: start.Add(time.Hour)}
	for _, tc := range []struct {
		ts   time.Time
		late bool
	}{
		{start, false},
		{start.Add(-time.Millisecond), true},
		{start.Add(59 * time.Minute), false},
		{start.Add(2 * time.Hour), false}, // after the window: not late, whatever else it is
		{time.UnixMilli(-1), true},
	} {
		if got := IsLate(&Record{Timestamp: tc.ts}, w); got != tc.late {
			t.Errorf("IsLate(%s) in [%s, %s) = %v, want %v", tc.ts, w.Start, w.End, got, tc.late)
		}
	}
}

// A receipt piece's late records are some of its records: never fewer than 0 nor more
// than it holds.
func TestReceiptMatchesLate(t *testing.T) {
	pc := Piece{Key: PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180}
	plan := ShardPlan{Index: 0, Pieces: []Piece{pc}}
	for _, tc := range []struct {
		late int64
		ok   bool
	}{{0, true}, {1, true}, {50, true}, {51, false}, {-1, false}} {
		r := &Receipt{Format: ReceiptFormat, Pipeline: "cdr", RunID: "r", Pieces: []PieceResult{}}
		r.Add(PieceResult{Key: pc.Key, Topic: pc.Topic, Partition: pc.Partition, First: pc.First, End: pc.End,
			Records: 50, Late: tc.late, Compacted: 10})
		err := r.Matches(plan)
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "late records") {
			t.Errorf("late %d of 50 records: %v, want ok=%v", tc.late, err, tc.ok)
		}
	}
}

// late is absent from a receipt piece with no late record, so receipts of windows without
// one keep their bytes, and a receipt that has it decodes.
func TestReceiptLateField(t *testing.T) {
	r := &Receipt{Format: ReceiptFormat, Pipeline: "cdr", RunID: "r", Pieces: []PieceResult{}}
	r.Add(PieceResult{Key: PieceKey("cdr", 3, 120), Topic: "cdr", Partition: 3, First: 120, End: 180, Records: 60})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"late"`)) {
		t.Fatalf("a piece without late records encodes late: %s", data)
	}
	r.Pieces[0].Late = 7
	if data, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeReceipt(data)
	if err != nil || got.Pieces[0].Late != 7 {
		t.Fatalf("decode %s: %+v, %v; want late 7", data, got, err)
	}
}
