package archive

import (
	"errors"
	"fmt"
	"strconv"
)

// Object metadata on every piece: its planned bounds, so that a reader of a bare object knows
// what it claims to hold, and an adopting shard or a verifier can reject an object of another
// plan without reading it.
const (
	MetaFirst = "karch-first"
	MetaEnd   = "karch-end"
)

// ErrPlanMismatch is wrapped by every error about a stored object or receipt that does not
// belong to the plan it is checked against.
var ErrPlanMismatch = errors.New("does not match the plan")

// PieceMetadata is the object metadata a piece is stored with.
func PieceMetadata(first, end int64) map[string]string {
	return map[string]string{MetaFirst: strconv.FormatInt(first, 10), MetaEnd: strconv.FormatInt(end, 10)}
}

// CheckPieceMetadata checks that a stored object's metadata names the bounds [first, end).
func CheckPieceMetadata(key string, md map[string]string, first, end int64) error {
	if md[MetaFirst] != strconv.FormatInt(first, 10) || md[MetaEnd] != strconv.FormatInt(end, 10) {
		return fmt.Errorf("stored piece %s has bounds [%s, %s) and %w [%d, %d)", key, md[MetaFirst], md[MetaEnd], ErrPlanMismatch, first, end)
	}
	return nil
}

// IsLate reports whether r is late in window w: its Kafka timestamp is before the window's
// start. Offsets, not timestamps, decide what a window holds, so a window may hold records
// stamped before it: those of a partition or topic that joined the chain (archived from
// its log start) and those of producers whose clocks lag. A record without a timestamp
// (-1) is late too.
func IsLate(r *Record, w Window) bool { return r.Timestamp.Before(w.Start) }

// Matches checks that the receipt lists exactly the shard's planned pieces, in plan order,
// that no piece claims more records than it has offsets nor more late records than records,
// that each piece of a v2 receipt accounts for every one of its offsets, and that its totals
// add up.
func (r *Receipt) Matches(s ShardPlan) error {
	if r.Shard != s.Index || len(r.Pieces) != len(s.Pieces) {
		return fmt.Errorf("receipt of shard %d with %d pieces %w (shard %d, %d pieces)", r.Shard, len(r.Pieces), ErrPlanMismatch, s.Index, len(s.Pieces))
	}
	var records, raw, stored int64
	for i, p := range s.Pieces {
		got := r.Pieces[i]
		if got.Key != p.Key || got.Topic != p.Topic || got.Partition != p.Partition || got.First != p.First || got.End != p.End {
			return fmt.Errorf("receipt piece %d is %s [%d, %d) and %w's %s [%d, %d)", i, got.Key, got.First, got.End, ErrPlanMismatch, p.Key, p.First, p.End)
		}
		if got.Records < 0 || got.Records > got.End-got.First {
			return fmt.Errorf("receipt piece %s claims %d records in %d offsets", got.Key, got.Records, got.End-got.First)
		}
		if got.Late < 0 || got.Late > got.Records {
			return fmt.Errorf("receipt piece %s claims %d late records of %d", got.Key, got.Late, got.Records)
		}
		if r.Format != ReceiptFormatV1 {
			if err := got.checkAccount(); err != nil {
				return err
			}
		}
		records, raw, stored = records+got.Records, raw+got.RawBytes, stored+got.Bytes
	}
	if records != r.Records || raw != r.RawBytes || stored != r.Bytes {
		return fmt.Errorf("receipt totals (%d records, %d raw bytes, %d bytes) do not add up (%d, %d, %d)", r.Records, r.RawBytes, r.Bytes, records, raw, stored)
	}
	return nil
}
