package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// ManifestFormat is the format tag of MANIFEST.json, the archive's public contract.
const ManifestFormat = "karch.manifest/v1"

// Manifest proves a window: every object of the window, with its checksum and counts.
// Object keys are relative to the manifest's folder. Its presence means the window is
// committed; it is created once and never rewritten.
type Manifest struct {
	Format     string           `json:"format"`
	Pipeline   string           `json:"pipeline"`
	Window     Window           `json:"window"`
	Partitions []PartitionRange `json:"partitions"`
	Objects    []ManifestObject `json:"objects"`
	Records    int64            `json:"records"`
	Bytes      int64            `json:"bytes"`
	RawBytes   int64            `json:"raw_bytes"`
	// Late is the window's records stamped before its start (the sum of its objects'
	// Late), present on every manifest whose objects count them: on one without it (written
	// before karch counted them), the objects' and partitions' late counts mean nothing.
	Late         *int64    `json:"late,omitempty"`
	RunID        string    `json:"run_id"`
	FencingToken int64     `json:"fencing_token"`
	CommittedAt  time.Time `json:"committed_at"`
	KarchVersion string    `json:"karch_version"`
	// Previous names the manifest of the window before, with the SHA-256 of its bytes: each
	// manifest vouches for the one before it, so whoever keeps the newest manifest's digest
	// can prove that no earlier window was altered or removed. Absent on a pipeline's first
	// window and on manifests written before karch recorded it.
	Previous *ManifestRef `json:"previous,omitempty"`
	// Next is set on the last window of a backfill that ends where committed windows begin:
	// the committed window after it, which was written before it and so records no
	// Previous. Next is that link the other way round, in a manifest that can still hold it.
	Next *ManifestRef `json:"next,omitempty"`
	// Origin names the manifest of the chain's first window, as known when this window was
	// committed; absent on the first window itself, and where the committer could not know
	// it (a chain whose manifests predate the field). Whoever keeps the newest manifest's
	// digest can so prove that no window was removed from the chain's old end either.
	Origin *ManifestRef `json:"origin,omitempty"`
	// Gaps are the plan's declared holes in the chain before this window (Plan.Gaps).
	Gaps []Gap `json:"gaps,omitempty"`
	// Formats and ValueColumns are the plan's: absent formats mean JSON Lines alone.
	Formats      []string      `json:"formats,omitempty"`
	ValueColumns []ValueColumn `json:"value_columns,omitempty"`
	// Topics are the plan's (Plan.Topics): the chain's topics, archived and ended.
	Topics []TopicState      `json:"topics,omitempty"`
	Extra  map[string]string `json:"extra,omitempty"`
}

// ManifestRef points at a committed manifest: its key relative to the destination prefix
// ("<pipeline>/dt=.../window=.../MANIFEST.json") and the hex SHA-256 of its stored bytes.
type ManifestRef struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
}

// RefOf is the reference to the manifest stored at key with the bytes data.
func RefOf(key string, data []byte) ManifestRef {
	sum := sha256.Sum256(data)
	return ManifestRef{Key: key, SHA256: hex.EncodeToString(sum[:])}
}

// PartitionRange is one partition's planned offsets [First, End) and the records archived.
type PartitionRange struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Records   int64  `json:"records"`
	Late      int64  `json:"late,omitempty"` // the sum of its objects' Late; absent when 0
}

// ManifestObject is one stored piece.
type ManifestObject struct {
	Key       string `json:"key"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Records   int64  `json:"records"`
	Late      int64  `json:"late,omitempty"` // of Records, stamped before the window's start (PieceResult.Late); absent when 0
	Bytes     int64  `json:"bytes"`
	RawBytes  int64  `json:"raw_bytes"`
	SHA256    string `json:"sha256"`
	Checksum  string `json:"checksum,omitempty"`
	// Parquet is the piece's Parquet object, when the window's formats include parquet.
	Parquet *ParquetObject `json:"parquet,omitempty"`
}

// DecodeManifest decodes a manifest; unknown fields are allowed (the format may grow), other
// formats are not.
func DecodeManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("decode manifest: format %q, want %q", m.Format, ManifestFormat)
	}
	return &m, nil
}

// Parquet reports whether the window's pieces have Parquet objects.
func (m *Manifest) Parquet() bool { return slices.Contains(m.Formats, FormatParquet) }

// End returns the end offset of each partition, keyed by topic and partition: where the
// next window starts.
func (m *Manifest) End() map[TopicPartition]int64 {
	out := make(map[TopicPartition]int64, len(m.Partitions))
	for _, p := range m.Partitions {
		out[TopicPartition{p.Topic, p.Partition}] = p.End
	}
	return out
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}
