package bench

import (
	"testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/cdrgen"
)

// go test -run '^$' -bench 'Line' -benchmem ./bench/
func BenchmarkAppendLine(b *testing.B) {
	recs := cdrgen.Records(10_000, 1)
	var buf []byte
	var n int64
	for i := range recs {
		n += int64(len(recs[i].Value))
	}
	b.SetBytes(n / int64(len(recs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = archive.AppendLine(buf[:0], &recs[i%len(recs)])
		i++
	}
}

func BenchmarkDecodeLine(b *testing.B) {
	recs := cdrgen.Records(10_000, 1)
	lines := make([][]byte, len(recs))
	var n int64
	for i := range recs {
		lines[i] = archive.AppendLine(nil, &recs[i])
		n += int64(len(lines[i]))
	}
	b.SetBytes(n / int64(len(lines)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := archive.DecodeLine(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
