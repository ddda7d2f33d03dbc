package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
)

// assertRecords decodes every object of the manifests and checks that every produced record
// is archived exactly once, at one (partition, offset) inside its object's range, byte for
// byte as produced: value, key, headers and timestamp. Objects are decoded in parallel: under
// the race detector, decoding is most of an end-to-end test's time.
func (p *runPipeline) assertRecords(t *testing.T, ms []*archive.Manifest) {
	t.Helper()
	c := &recordCheck{produced: p.produced, byValue: make(map[string]int, len(p.produced)),
		seen: make([]bool, len(p.produced)), at: map[[2]int64]bool{}}
	for i, m := range p.produced {
		c.byValue[string(m.Value)] = i
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, m := range ms {
		dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
		for _, o := range m.Objects {
			g.Go(func() error { return c.object(p.bucket, dir+o.Key, o) })
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if c.archived != len(p.produced) {
		t.Fatalf("%d of the %d produced records are archived", c.archived, len(p.produced))
	}
}

// recordCheck matches archived records with the produced messages. Its methods are safe for
// concurrent use.
type recordCheck struct {
	produced []kafka.Message
	byValue  map[string]int // read only
	mu       sync.Mutex
	seen     []bool
	at       map[[2]int64]bool
	archived int
}

// object checks each record of the object at key against its manifest entry o and the
// message produced with its value, then marks them archived.
func (c *recordCheck) object(b blob.Bucket, key string, o archive.ManifestObject) error {
	var found [][3]int64 // partition, offset, produced index
	err := eachArchivedRecord(b, key, func(r archive.Record) error {
		i, ok := c.byValue[string(r.Value)]
		switch {
		case r.Partition != o.Partition || r.Offset < o.First || r.Offset >= o.End:
			return fmt.Errorf("%s holds partition %d offset %d, outside its range %d [%d, %d)", o.Key, r.Partition, r.Offset, o.Partition, o.First, o.End)
		case !ok:
			return fmt.Errorf("partition %d offset %d: value %q was never produced", r.Partition, r.Offset, r.Value)
		}
		if diff := differsFromProduced(r, c.produced[i]); diff != "" {
			return fmt.Errorf("partition %d offset %d: %s", r.Partition, r.Offset, diff)
		}
		found = append(found, [3]int64{int64(r.Partition), r.Offset, int64(i)})
		return nil
	})
	if err != nil {
		return err
	}
	return c.mark(found)
}

// mark records each found (partition, offset, produced index) as archived, once.
func (c *recordCheck) mark(found [][3]int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range found {
		where := [2]int64{f[0], f[1]}
		if c.at[where] || c.seen[f[2]] {
			return fmt.Errorf("partition %d offset %d (produced record %d) is archived twice", f[0], f[1], f[2])
		}
		c.at[where], c.seen[f[2]] = true, true
		c.archived++
	}
	return nil
}

// eachArchivedRecord calls fn with each record of the archived object at key, stopping at its first
// error.
func eachArchivedRecord(b blob.Bucket, key string, fn func(archive.Record) error) error {
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer rc.Close()
	zr, err := compress.NewReader(rc)
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	defer zr.Close()
	dec := archive.NewDecoder(zr)
	for {
		r, err := dec.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}

// differsFromProduced says how an archived record differs from the message produced with its
// value, or "".
func differsFromProduced(r archive.Record, m kafka.Message) string {
	switch {
	case r.Topic == "" || r.Partition != int32(m.Partition):
		return fmt.Sprintf("archived as %s/%d, produced to partition %d", r.Topic, r.Partition, m.Partition)
	case !bytes.Equal(r.Key, m.Key) || (r.Key == nil) != (m.Key == nil):
		return fmt.Sprintf("key %q, produced %q", r.Key, m.Key)
	case !r.Timestamp.Equal(m.Time.Truncate(time.Millisecond)):
		return fmt.Sprintf("timestamp %s, produced %s", r.Timestamp, m.Time)
	case len(r.Headers) != len(m.Headers):
		return fmt.Sprintf("%d headers, produced %d", len(r.Headers), len(m.Headers))
	}
	for i, h := range r.Headers {
		if h.Key != m.Headers[i].Key || !bytes.Equal(h.Value, m.Headers[i].Value) {
			return fmt.Sprintf("header %d is %q=%q, produced %q=%q", i, h.Key, h.Value, m.Headers[i].Key, m.Headers[i].Value)
		}
	}
	return ""
}
