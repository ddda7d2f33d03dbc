package archive

import "fmt"

// ReceiptFormat is the format tag of a shard receipt.
const ReceiptFormat = "karch.receipt/v1"

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
	// RawBytes is the size of the uncompressed JSON Lines, Bytes of the stored object.
	RawBytes int64 `json:"raw_bytes"`
	Bytes    int64 `json:"bytes"`
	// SHA256 is the hex digest of the stored (compressed) bytes.
	SHA256 string `json:"sha256"`
	// Checksum is the store's own checksum of the object (blob.ObjectInfo.Checksum), which
	// a verifier compares with a HEAD without reading the object.
	Checksum string `json:"checksum"`
}

// Add appends a piece and keeps the totals.
func (r *Receipt) Add(p PieceResult) {
	r.Pieces = append(r.Pieces, p)
	r.Records += p.Records
	r.RawBytes += p.RawBytes
	r.Bytes += p.Bytes
}

// DecodeReceipt decodes a receipt, rejecting unknown fields and other formats.
func DecodeReceipt(data []byte) (*Receipt, error) {
	var r Receipt
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("decode receipt: %w", err)
	}
	if r.Format != ReceiptFormat {
		return nil, fmt.Errorf("decode receipt: format %q, want %q", r.Format, ReceiptFormat)
	}
	return &r, nil
}
