package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
)

// parquetHold is an S3 proxy in front of the test MinIO that holds every request for a
// Parquet object until the client goes away, and says when it holds the first.
type parquetHold struct {
	*httptest.Server
	held chan struct{}
	once sync.Once
}

func holdParquet(t *testing.T) *parquetHold {
	t.Helper()
	target, err := url.Parse(testenv.S3Server(t).Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	h, stop := &parquetHold{held: make(chan struct{})}, make(chan struct{})
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // S3 checks the signature, which covers the host
	}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, ".parquet") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.once.Do(func() { close(h.held) })
			// The server notices that the client went away only once it has read the
			// body; the test's end releases what is still held.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(stop)
		h.Close()
	})
	return h
}

// A shard killed with SIGKILL after the JSON Lines of a piece reached the store and before
// its Parquet object did, then run again: the rerun derives the Parquet object from the
// stored JSON Lines, keeps what is stored, and writes the receipt an uninterrupted run
// writes; both formats of every piece hold Kafka's records, each exactly once.
func TestShardKilledBetweenFormats(t *testing.T) {
	addr := testenv.Kafka(t)
	cfg := testenv.S3Config(t)
	b, err := blob.NewS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	topic := testenv.Topic(t, addr, 1)
	testenv.Produce(t, addr, topic, cdrMessages(40_000))
	ends := testenv.EndOffsets(t, addr, topic, 1)
	p := plan(topic, ends, 10_000, addr)
	p.Formats = []string{archive.FormatJSONL, archive.FormatParquet}
	p.ValueColumns = []archive.ValueColumn{
		{Name: "caller", Path: []string{"caller"}, Type: archive.TypeString},
		{Name: "start", Path: []string{"start"}, Type: archive.TypeTimestamp},
	}
	planKey := putPlan(t, b, p)
	planURL := fmt.Sprintf("s3://%s/%s/%s", cfg.Bucket, cfg.Prefix, planKey)
	dir := strings.TrimSuffix(planKey, archive.PlanName)
	first := p.Shards[0].Pieces[0]

	hold := holdParquet(t)
	cmd, stderr := shardCmd(t, "--plan", planURL, "--index", "0")
	cmd.Env = append(cmd.Env, "KARCH_S3_ENDPOINT="+hold.URL)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if waitForObject(t, b, dir+first.Key, exited) {
		t.Fatalf("the shard exited before its first piece was stored; stderr:\n%s", stderr)
	}
	<-hold.held
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	parquetKey := archive.ParquetKey(first.Topic, first.Partition, first.First)
	if _, err := b.Head(context.Background(), dir+parquetKey); !blob.IsNotFound(err) {
		t.Fatalf("the Parquet object %s exists after the kill (%v): the kill was not between the formats", parquetKey, err)
	}
	jsonlBefore := stat(t, b, dir, p.Shards[0].Pieces)

	rerun, stderr := shardCmd(t, "--plan", planURL, "--index", "0")
	if code := exitCode(t, rerun); code != 0 {
		t.Fatalf("rerun exit code %d; stderr:\n%s", code, stderr)
	}
	for key, etag := range jsonlBefore {
		if after := stat(t, b, dir, p.Shards[0].Pieces)[key]; after != etag {
			t.Errorf("piece %s was rewritten: etag %s, then %s", key, etag, after)
		}
	}
	assertUninterruptedReceipt(t, b, cfg, p, dir)

	want := testenv.Consume(t, addr, topic, 0, 0, ends[0])
	for _, format := range []string{archive.FormatJSONL, archive.FormatParquet} {
		got := storedRecords(t, b, dir, p, format)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records stored, Kafka holds %d", format, len(got), len(want))
		}
		for i, w := range want {
			if g := got[i]; g.Offset != w.Offset || string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || !g.Timestamp.Equal(w.Time) {
				t.Fatalf("%s: record %d is offset %d %q, Kafka's is offset %d %q", format, i, g.Offset, g.Value, w.Offset, w.Value)
			}
		}
	}
}

// storedRecords decodes every piece of p's shard 0 in one format, in plan order.
func storedRecords(t *testing.T, b blob.Bucket, dir string, p *archive.Plan, format string) []archive.Record {
	t.Helper()
	var out []archive.Record
	collect := func(r *archive.Record) error { // the decoders may reuse their buffers
		out = append(out, archive.Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
		return nil
	}
	for _, pc := range p.Shards[0].Pieces {
		var err error
		if format == archive.FormatJSONL {
			_, err = shard.ScanPieceFunc(pc, bytes.NewReader(testenv.ReadObject(t, b, dir+pc.Key)), collect)
		} else {
			data := testenv.ReadObject(t, b, dir+archive.ParquetKey(pc.Topic, pc.Partition, pc.First))
			_, err = shard.ScanParquet(pc, bytes.NewReader(data), int64(len(data)), p.ValueColumns, collect)
		}
		if err != nil {
			t.Fatalf("decode %s of %s: %v", format, pc.Key, err)
		}
	}
	return out
}
