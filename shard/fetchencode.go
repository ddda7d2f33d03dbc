package shard

import (
	"encoding/binary"
	"fmt"
	"io"

	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
)

// appendFetchRequest appends the Fetch request r, versions 4 to 11 (non-flexible, with a
// request header of v1), as it goes on the wire, size prefix included. kafka-go's
// protocol.WriteRequest writes the same bytes through a 64 KiB page buffer per request, which
// a planning of a thousand partition edges allocated, a page per fetch, as often as not.
func appendFetchRequest(b []byte, version int16, correlationID int32, clientID string, r *fetchapi.Request) ([]byte, error) {
	if version < minFetchVersion || version > 11 {
		return b, fmt.Errorf("fetch request v%d: want v%d to v11", version, minFetchVersion)
	}
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // the size, set at the end
	b = binary.BigEndian.AppendUint16(b, 1) // api key: Fetch
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(correlationID))
	b = appendString(b, clientID)
	b = appendInt32(b, r.ReplicaID, r.MaxWaitTime, r.MinBytes, r.MaxBytes)
	b = append(b, byte(r.IsolationLevel))
	if version >= 7 {
		b = appendInt32(b, r.SessionID, r.SessionEpoch)
	}
	b = appendInt32(b, int32(len(r.Topics)))
	for _, t := range r.Topics {
		b = appendString(b, t.Topic)
		b = appendInt32(b, int32(len(t.Partitions)))
		for _, p := range t.Partitions {
			b = appendInt32(b, p.Partition)
			if version >= 9 {
				b = appendInt32(b, p.CurrentLeaderEpoch)
			}
			b = binary.BigEndian.AppendUint64(b, uint64(p.FetchOffset))
			if version >= 5 {
				b = binary.BigEndian.AppendUint64(b, uint64(p.LogStartOffset))
			}
			b = appendInt32(b, p.PartitionMaxBytes)
		}
	}
	if version >= 7 {
		b = appendInt32(b, int32(len(r.ForgottenTopics)))
		for _, t := range r.ForgottenTopics {
			b = appendString(b, t.Topic)
			b = appendInt32(b, int32(len(t.Partitions)))
			b = appendInt32(b, t.Partitions...)
		}
	}
	if version >= 11 {
		b = appendString(b, r.RackID)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, nil
}

func appendInt32(b []byte, vs ...int32) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return b
}

// appendString appends a protocol STRING: an int16 length, then the bytes.
func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// writeFetchRequest writes the request to w in one write.
func writeFetchRequest(w io.Writer, version int16, correlationID int32, clientID string, r *fetchapi.Request) error {
	b, err := appendFetchRequest(make([]byte, 0, 128), version, correlationID, clientID, r)
	if err == nil {
		_, err = w.Write(b)
	}
	return err
}
