package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/internal/cdrgen"
)

// cdrLines is about 64 MB of call-detail JSON Lines, as a shard writes them.
func cdrLines(b *testing.B) [][]byte {
	b.Helper()
	recs := cdrgen.Records(120_000, 2)
	lines := make([][]byte, len(recs))
	for i := range recs {
		lines[i] = archive.AppendLine(nil, &recs[i])
	}
	return lines
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// go test -run '^$' -bench 'Compress|EncodeAll' -benchmem ./bench/
func BenchmarkCompressWriter(b *testing.B) {
	lines := cdrLines(b)
	var raw int64
	for _, l := range lines {
		raw += int64(len(l))
	}
	for _, level := range []int{1, 3} {
		for _, conc := range []int{1, 2} {
			b.Run(fmt.Sprintf("level=%d/concurrency=%d", level, conc), func(b *testing.B) {
				b.SetBytes(raw)
				b.ReportAllocs()
				var out countWriter
				for b.Loop() {
					out = 0
					w, err := compress.NewWriter(context.Background(), &out, compress.Options{Level: level, Concurrency: conc})
					if err != nil {
						b.Fatal(err)
					}
					for _, l := range lines {
						w.Write(l)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(out)/float64(raw), "ratio")
			})
		}
	}
}

// BenchmarkEncodeAllBaseline is the ceiling: the same bytes, the same 4 MiB frames, one
// encoder on one goroutine, nothing else.
func BenchmarkEncodeAllBaseline(b *testing.B) {
	var raw []byte
	for _, l := range cdrLines(b) {
		raw = append(raw, l...)
	}
	frame := compress.Options{}.WithDefaults().FrameSize
	for _, level := range []int{1, 3} {
		b.Run(fmt.Sprintf("level=%d", level), func(b *testing.B) {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)), zstd.WithEncoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			var dst []byte
			var out int
			for b.Loop() {
				out = 0
				for off := 0; off < len(raw); off += frame {
					dst = enc.EncodeAll(raw[off:min(off+frame, len(raw))], dst[:0])
					out += len(dst)
				}
			}
			b.ReportMetric(float64(out)/float64(len(raw)), "ratio")
		})
	}
}
