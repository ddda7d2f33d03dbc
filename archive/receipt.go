package archive

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ReceiptFormat is the format tag of the shard receipts karch writes. v2 added each piece's
// account of its offsets (Control, Aborted, Compacted).
const ReceiptFormat = "karch.receipt/v2"

// ReceiptFormatV1 is the receipt format before v2, still read: archives written before v2
// hold it. Its pieces have no account of their offsets.
const ReceiptFormatV1 = "karch.receipt/v1"

// Receipt is what a shard proves it stored: written after all of its pieces, so its presence
// means the shard is done. It holds nothing that differs between attempts (no clock, no pod),
// so a rerun after a crash writes the same receipt as an uninterrupted run.
type Receipt struct {
	Format   string        `json:"format"`
	Pipeline string        `json:"pipeline"`
	RunID    string        `json:"run_id"`
	Shard    int           `json:"shard"`
	Pieces   []PieceResult `json:"pieces"`
	Records  int64         `json:"records"`
	RawBytes int64         `json:"raw_bytes"`
	Bytes    int64         `json:"bytes"`
}

// PieceResult is one stored piece. First and End are the planned bounds [First, End);
// Records counts the records actually archived, fewer than End-First where the partition has
// offset gaps (compaction, transaction markers, aborted transactions).
type PieceResult struct {
	Key       string `json:"key"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Records   int64  `json:"records"`
	// Late counts the records, of Records, whose Kafka timestamp is before the plan's
	// window start (IsLate): a partition or topic that joined the chain is archived from
	// its log start, and producers' clocks disagree. It is fixed by the stored records, so
	// every attempt at the piece counts the same; absent when 0.
	Late int64 `json:"late,omitempty"`
	// Control, Aborted and Compacted account, with Records, for every offset of [First,
	// End) (v2; zero in a v1 receipt): the offsets that hold a transaction marker, a record
	// of an aborted transaction, and no record at all (removed by the log cleaner).
	Control   int64 `json:"control"`
	Aborted   int64 `json:"aborted"`
	Compacted int64 `json:"compacted"`
	// RawBytes is the size of the uncompressed JSON Lines, Bytes of the stored object.
	RawBytes int64 `json:"raw_bytes"`
	Bytes    int64 `json:"bytes"`
	// SHA256 is the hex digest of the stored (compressed) bytes.
	SHA256 string `json:"sha256"`
	// Checksum is the store's own checksum of the object (blob.ObjectInfo.Checksum), which
	// a verifier compares with a HEAD without reading the object.
	Checksum string `json:"checksum"`
	// Parquet is the piece's Parquet object, present exactly when the plan's formats
	// include parquet. It holds the same records as the JSON Lines.
	Parquet *ParquetObject `json:"parquet,omitempty"`
}

// ParquetObject is a piece's Parquet object (ParquetKey): its offset bounds are the piece's.
type ParquetObject struct {
	Key     string `json:"key"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	// SHA256 is the hex digest of the stored bytes, Checksum the store's own.
	SHA256   string `json:"sha256"`
	Checksum string `json:"checksum"`
	// Nulls counts, for each typed column that has any, the records whose column is null:
	// the value is not JSON, lacks the field, or holds another type there (or JSON null).
	Nulls map[string]int64 `json:"nulls,omitempty"`
}

// CheckFormats checks that each piece has the objects of the plan's formats: a Parquet
// object at its key, with as many records as the JSON Lines, exactly when parquet is on.
func (r *Receipt) CheckFormats(p *Plan) error {
	for _, pc := range r.Pieces {
		q := pc.Parquet
		switch {
		case q == nil && p.Parquet():
			return fmt.Errorf("receipt piece %s has no Parquet object, and the plan's formats are %v", pc.Key, p.Formats)
		case q == nil:
		case !p.Parquet():
			return fmt.Errorf("receipt piece %s has a Parquet object, and the plan's formats are %v", pc.Key, p.Formats)
		case q.Key != ParquetKey(pc.Topic, pc.Partition, pc.First):
			return fmt.Errorf("receipt piece %s has the Parquet object %s, want %s", pc.Key, q.Key, ParquetKey(pc.Topic, pc.Partition, pc.First))
		case q.Records != pc.Records:
			return fmt.Errorf("receipt piece %s: its Parquet object holds %d records and its JSON Lines %d", pc.Key, q.Records, pc.Records)
		}
	}
	return nil
}

// Add appends a piece and keeps the totals.
func (r *Receipt) Add(p PieceResult) {
	r.Pieces = append(r.Pieces, p)
	r.Records += p.Records
	r.RawBytes += p.RawBytes
	r.Bytes += p.Bytes
}

// DecodeReceipt decodes a receipt of format v2 or v1, rejecting unknown fields, other
// formats, and a piece whose account of its offsets is missing (v2) or present (v1).
func DecodeReceipt(data []byte) (*Receipt, error) {
	var r Receipt
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("decode receipt: %w", err)
	}
	if r.Format != ReceiptFormat && r.Format != ReceiptFormatV1 {
		return nil, fmt.Errorf("decode receipt: format %q, want %q or %q", r.Format, ReceiptFormat, ReceiptFormatV1)
	}
	if err := checkAccountFields(data, r.Format == ReceiptFormat); err != nil {
		return nil, fmt.Errorf("decode receipt of format %s: %w", r.Format, err)
	}
	return &r, nil
}

// accountFields are the piece fields that v2 added, each always present in v2.
var accountFields = []string{"control", "aborted", "compacted"}

// checkAccountFields checks that every piece has all of accountFields (want) or none.
func checkAccountFields(data []byte, want bool) error {
	var doc struct{ Pieces []map[string]json.RawMessage }
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	for i, p := range doc.Pieces {
		for _, f := range accountFields {
			if _, ok := p[f]; ok != want {
				return fmt.Errorf("piece %d: field %q present %v, want %v", i, f, ok, want)
			}
		}
	}
	return nil
}

// errUnaccounted is wrapped by a v2 receipt piece whose account does not add up.
var errUnaccounted = errors.New("does not account for every offset")

// checkAccount checks that a v2 piece accounts for each of its offsets exactly once.
func (p *PieceResult) checkAccount() error {
	if p.Control < 0 || p.Aborted < 0 || p.Compacted < 0 || p.Records+p.Control+p.Aborted+p.Compacted != p.End-p.First {
		return fmt.Errorf("receipt piece %s %w: %d records, %d control, %d aborted and %d compacted in %d offsets",
			p.Key, errUnaccounted, p.Records, p.Control, p.Aborted, p.Compacted, p.End-p.First)
	}
	return nil
}
