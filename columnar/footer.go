package columnar

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/karch-archive/karch/archive"
)

// Footer is what a Parquet piece's footer says of its records, read without its pages.
type Footer struct {
	Rows int64
	// MinTimestamp and MaxTimestamp bound the records' timestamps; zero when the piece is
	// empty or a row group lacks statistics.
	MinTimestamp, MaxTimestamp time.Time
}

// ReadFooter reads the footer of the Parquet piece r of size bytes, checking its format
// tag and schema as Open does, and bounds its timestamps by the row groups' statistics:
// an Iceberg data file must name the one day or hour its records fall in.
func ReadFooter(r io.ReaderAt, size int64, cols []archive.ValueColumn) (Footer, error) {
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return Footer{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if _, err := check(f, cols); err != nil {
		return Footer{}, err
	}
	c, _ := f.Schema().Lookup("timestamp")
	out := Footer{Rows: f.NumRows()}
	var lo, hi int64
	for i, rg := range f.Metadata().RowGroups {
		if rg.NumRows == 0 {
			continue
		}
		st := rg.Columns[c.ColumnIndex].MetaData.Statistics
		if len(st.MinValue) != 8 || len(st.MaxValue) != 8 {
			return Footer{Rows: out.Rows}, nil
		}
		min, max := int64(binary.LittleEndian.Uint64(st.MinValue)), int64(binary.LittleEndian.Uint64(st.MaxValue))
		if i == 0 || min < lo {
			lo = min
		}
		if i == 0 || max > hi {
			hi = max
		}
	}
	if out.Rows > 0 {
		out.MinTimestamp, out.MaxTimestamp = time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC()
	}
	return out, nil
}
