// Package archive is karch's on-storage format: the JSON Lines record codec, object keys, and
// the versioned plan and receipt documents (docs/FORMAT.md). It does no I/O and imports
// nothing else of karch, so every reader of the archive can depend on it alone.
package archive

import "time"

// Record is one Kafka record as the archive keeps it: every field Kafka gives, so that a
// restore can reproduce the record byte for byte.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	// Timestamp is the record's Kafka timestamp as Kafka's consumers see it; the archive
	// keeps milliseconds, in UTC. Any int64 millisecond value is valid, -1 ("no
	// timestamp") and other negatives included: build it with time.UnixMilli, and
	// Timestamp.UnixMilli gives the exact value back.
	Timestamp time.Time
	// LogAppendTime says Timestamp is the broker's append time (the topic's
	// message.timestamp.type is LogAppendTime, and Kafka reports the batch's max
	// timestamp for every record of it); false means the producer's create time.
	LogAppendTime bool
	// Key and Value are nil for a Kafka null (a tombstone value) and non-nil, possibly
	// empty, otherwise.
	Key     []byte
	Value   []byte
	Headers []Header
}

// Header is one Kafka record header. Value is nil for a null header value.
type Header struct {
	Key   string
	Value []byte
}
