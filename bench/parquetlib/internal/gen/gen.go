// Package gen produces the deterministic synthetic records shared by both writers.
package gen

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

const (
	N           = 1_000_000
	BaseTS      = int64(1764000000000)
	RowGroupKVB = 32 << 20 // flush row group after ~32 MiB of key+value bytes
)

var results = [...]string{"ANSWERED", "BUSY", "NO_ANSWER", "FAILED", "REJECTED"}

var startBase = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// Record holds the raw Kafka-like fields of one record.
type Record struct {
	Offset    int64
	Timestamp int64 // millis UTC
	Key       []byte
	Value     []byte
	Trace     []byte // 8 bytes
}

// Gen generates records deterministically.
type Gen struct {
	r     *rand.Rand
	trace [8]byte
	key   []byte
	val   []byte
}

func New() *Gen { return &Gen{r: rand.New(rand.NewPCG(1, 2))} }

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

// Next returns record number off. Key/Value/Trace are freshly allocated per record
// (callers may retain them until they are written).
func (g *Gen) Next(off int64) Record {
	r := g.r
	caller := "+447" + digits(r, 9)
	callee := "+447" + digits(r, 9)
	cell := "C" + strconv.Itoa(1000+r.IntN(9000))
	start := startBase.Add(time.Duration(r.IntN(30*24*3600)) * time.Second).Format(time.RFC3339)
	dur := r.IntN(3_600_000)
	res := results[r.IntN(len(results))]
	imsi := "23415" + digits(r, 10)
	binary.LittleEndian.PutUint64(g.trace[:], r.Uint64())
	val := fmt.Sprintf(`{"caller":%q,"callee":%q,"cell":%q,"start":%q,"duration_ms":%d,"result":%q,"imsi":%q}`,
		caller, callee, cell, start, dur, res, imsi)
	tr := make([]byte, 8)
	copy(tr, g.trace[:])
	return Record{
		Offset:    off,
		Timestamp: BaseTS + off*3,
		Key:       []byte(fmt.Sprintf("44%d", off%100000)),
		Value:     []byte(val),
		Trace:     tr,
	}
}

// Call is the typed view parsed from the JSON value.
type Call struct {
	Caller     *string `json:"caller"`
	Callee     *string `json:"callee"`
	Cell       *string `json:"cell"`
	Start      *string `json:"start"`
	DurationMs *int64  `json:"duration_ms"`
	Result     *string `json:"result"`
	IMSI       *string `json:"imsi"`
}

// Parse decodes the value with encoding/json; StartMs is nil if absent or unparsable.
func Parse(v []byte) (c Call, startMs *int64) {
	if err := json.Unmarshal(v, &c); err != nil {
		return Call{}, nil
	}
	if c.Start != nil {
		if t, err := time.Parse(time.RFC3339, *c.Start); err == nil {
			ms := t.UnixMilli()
			startMs = &ms
		}
	}
	return c, startMs
}
