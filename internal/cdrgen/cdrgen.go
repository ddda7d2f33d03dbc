// Package cdrgen makes synthetic call-detail records, the same for the same seed, for the
// demo and the benchmarks.
package cdrgen

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/karch-archive/karch/archive"
)

var results = []string{"ANSWERED", "ANSWERED", "ANSWERED", "BUSY", "NO_ANSWER", "FAILED", "REJECTED"}

// Records makes n realistic call-detail records of about 400 bytes of JSON each, the same
// for the same seed: topic "cdr", partition 0, offsets from 0, 1 ms apart from
// 2026-11-23T02:00:00Z, a "4471-22"-style key and an 8-byte binary trace header.
func Records(n int, seed uint64) []archive.Record {
	rng := rand.New(rand.NewPCG(seed, 0x4b41524348))
	start := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	recs := make([]archive.Record, n)
	for i := range recs {
		ts := start.Add(time.Duration(i) * time.Millisecond)
		trace := make([]byte, 8)
		for j := range trace {
			trace[j] = byte(rng.UintN(256))
		}
		recs[i] = archive.Record{
			Topic: "cdr", Offset: int64(i), Timestamp: ts,
			Key:     fmt.Appendf(nil, "44%02d-%02d", rng.IntN(100), rng.IntN(100)),
			Value:   Value(rng, ts),
			Headers: []archive.Header{{Key: "trace", Value: trace}},
		}
	}
	return recs
}

// Value is one call's JSON: call id, caller, callee, start, end, duration, cell, result and
// a few more fields a switch reports.
func Value(rng *rand.Rand, ts time.Time) []byte {
	dur := rng.IntN(3_600_000)
	return fmt.Appendf(nil, `{"call_id":"%08x-%04x-%04x-%04x-%012x","caller":"+4479%08d","callee":"+44%010d",`+
		`"start":"%s","end":"%s","duration_ms":%d,"cell":"234-15-%04d-%04d","result":"%s",`+
		`"imsi":"23415%010d","imei":"35%013d","tariff":"T%02d","roaming":%t,"bytes_up":%d,"bytes_down":%d,"mos":%.2f}`,
		rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<16), rng.IntN(1<<16), rng.Int64N(1<<48),
		rng.IntN(1e8), rng.Int64N(1e10), ts.Format(time.RFC3339Nano), ts.Add(time.Duration(dur)*time.Millisecond).Format(time.RFC3339Nano),
		dur, rng.IntN(1e4), rng.IntN(1e4), results[rng.IntN(len(results))],
		rng.Int64N(1e10), rng.Int64N(1e13), rng.IntN(40), rng.IntN(20) == 0, rng.IntN(5e6), rng.IntN(5e7), 1+rng.Float64()*3.5)
}
