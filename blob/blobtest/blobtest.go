// Package blobtest is the acceptance suite that every blob.Bucket backend passes.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/blob"
)

// Acceptance runs the suite against buckets from newBucket. A backend with parts (S3) should
// be configured with its smallest part size, so that the 12 MiB objects go up in parts.
func Acceptance(t *testing.T, newBucket func(t *testing.T) blob.Bucket) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, b blob.Bucket)
	}{
		{"RoundTrip", testRoundTrip},
		{"HeadAndChecksum", testHeadAndChecksum},
		{"ConditionalCreate", testConditionalCreate},
		{"ConcurrentConditionalCreate", testConcurrentConditionalCreate},
		{"PlainPutOverwrites", testOverwrite},
		{"NotFound", testNotFound},
		{"List", testList},
		{"FailedReaderLeavesNothing", testFailedReader},
		{"ReaderErrorWrappingEOFLeavesNothing", testReaderErrorWrappingEOF},
		{"ShortReadsAndFinalDataWithEOF", testShortReads},
		{"CancelledContext", testCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, newBucket(t)) })
	}
}

func key(t *testing.T, name string) string {
	return fmt.Sprintf("acceptance/%d/%s", time.Now().UnixNano(), name)
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, b blob.Bucket, key string, data []byte, opts blob.PutOptions) blob.ObjectInfo {
	t.Helper()
	info, err := b.Put(context.Background(), key, bytes.NewReader(data), opts)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

func get(t *testing.T, b blob.Bucket, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

func testRoundTrip(t *testing.T, b blob.Bucket) {
	for _, n := range []int{0, 1, 12<<20 + 7} {
		k := key(t, fmt.Sprintf("rt-%d", n))
		data := random(t, n)
		if info := put(t, b, k, data, blob.PutOptions{IfAbsent: true}); info.Size != int64(n) {
			t.Fatalf("put %d bytes: info says %d", n, info.Size)
		}
		if got := get(t, b, k); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read back %d different bytes", n, len(got))
		}
	}
}

func testHeadAndChecksum(t *testing.T, b blob.Bucket) {
	data := random(t, 12<<20)
	meta := map[string]string{"karch-first": "100", "karch-end": "200"}
	k1, k2 := key(t, "a"), key(t, "b")
	put(t, b, k1, data, blob.PutOptions{Metadata: meta, ContentType: "application/zstd"})
	put(t, b, k2, data, blob.PutOptions{Metadata: meta})
	h1, err := b.Head(context.Background(), k1)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := b.Head(context.Background(), k2)
	if err != nil {
		t.Fatal(err)
	}
	if h1.Size != int64(len(data)) || h1.Key != k1 || h1.Checksum == "" || h1.Checksum != h2.Checksum || h1.ETag == "" {
		t.Fatalf("head: %+v / %+v", h1, h2)
	}
	if put := put(t, b, key(t, "c"), data, blob.PutOptions{}); put.Checksum != h1.Checksum {
		t.Fatalf("Put reports checksum %q, Head %q", put.Checksum, h1.Checksum)
	}
	if h1.Metadata["karch-first"] != "100" || h1.Metadata["karch-end"] != "200" {
		t.Fatalf("metadata: %v", h1.Metadata)
	}
}

func testConditionalCreate(t *testing.T, b blob.Bucket) {
	for _, n := range []int{10, 12 << 20} {
		k := key(t, fmt.Sprintf("cc-%d", n))
		data := random(t, n)
		first := put(t, b, k, data, blob.PutOptions{IfAbsent: true})
		before, _ := b.Head(context.Background(), k)
		_, err := b.Put(context.Background(), k, bytes.NewReader(random(t, n)), blob.PutOptions{IfAbsent: true})
		if !blob.IsExists(err) {
			t.Fatalf("%d bytes: second conditional create: %v, want IsExists", n, err)
		}
		after, _ := b.Head(context.Background(), k)
		if !bytes.Equal(get(t, b, k), data) || before.ETag != after.ETag || first.Size != after.Size {
			t.Fatalf("%d bytes: the losing create changed the object", n)
		}
	}
}

// testConcurrentConditionalCreate races 8 creates of one key, small (a single PutObject on
// S3) and larger than a part (the 412 then comes with CompleteMultipartUpload): exactly one
// wins, the others lose with IsExists, and the stored bytes are the winner's.
func testConcurrentConditionalCreate(t *testing.T, b blob.Bucket) {
	for _, n := range []int{1 << 20, 12 << 20} {
		k := key(t, fmt.Sprintf("race-%d", n))
		var g errgroup.Group
		results := make([]error, 8)
		data := make([][]byte, len(results))
		for i := range results {
			data[i] = random(t, n)
			g.Go(func() error {
				_, results[i] = b.Put(context.Background(), k, bytes.NewReader(data[i]), blob.PutOptions{IfAbsent: true})
				return nil
			})
		}
		g.Wait()
		winner := -1
		for i, err := range results {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("%d bytes: creates %d and %d both won", n, winner, i)
			case err == nil:
				winner = i
			case !blob.IsExists(err):
				t.Fatalf("%d bytes: a losing create: %v, want IsExists", n, err)
			}
		}
		if winner < 0 || !bytes.Equal(get(t, b, k), data[winner]) {
			t.Fatalf("%d bytes: winner %d, and the stored bytes are not its", n, winner)
		}
	}
}

func testOverwrite(t *testing.T, b blob.Bucket) {
	k := key(t, "ow")
	put(t, b, k, []byte("one"), blob.PutOptions{})
	put(t, b, k, []byte("two"), blob.PutOptions{})
	if got := get(t, b, k); string(got) != "two" {
		t.Fatalf("after overwrite: %q", got)
	}
}

func testNotFound(t *testing.T, b blob.Bucket) {
	k := key(t, "missing")
	if _, err := b.Get(context.Background(), k); !blob.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := b.Head(context.Background(), k); !blob.IsNotFound(err) {
		t.Fatalf("head missing: %v", err)
	}
}

func testList(t *testing.T, b blob.Bucket) {
	dir := key(t, "list") + "/"
	names := []string{"a.txt", "a/b", "b/c/d", "c"}
	for _, n := range []string{"c", "a/b", "b/c/d", "a.txt"} {
		put(t, b, dir+n, []byte(n), blob.PutOptions{})
	}
	put(t, b, key(t, "listother"), []byte("x"), blob.PutOptions{})
	var got []string
	err := b.List(context.Background(), dir, func(o blob.ObjectInfo) error {
		got = append(got, o.Key[len(dir):])
		if o.Size != int64(len(o.Key[len(dir):])) {
			t.Errorf("%s: size %d", o.Key, o.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("list: %v, want %v", got, names)
	}
	stop := errors.New("stop")
	calls := 0
	if err := b.List(context.Background(), dir, func(blob.ObjectInfo) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("list stops at fn's error: err %v after %d calls", err, calls)
	}
}

// failingReader yields n random bytes, then an error: the writer of a piece dying mid-way.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	rand.Read(p[:k])
	f.n -= k
	return k, nil
}

// failedPutSizes end inside the first part, on a part boundary, and inside a later part,
// for a backend configured with 5 MiB parts as Acceptance asks.
var failedPutSizes = []int{100, 10 << 20, 12<<20 + 7}

func testFailedReader(t *testing.T, b blob.Bucket) {
	assertFailedPuts(t, b, errors.New("encoder died"))
}

// Only the io.Reader contract's bare io.EOF ends the data. An error that wraps io.EOF (a
// Kafka connection closed mid-fetch) or a bare io.ErrUnexpectedEOF (a decoder on a
// truncated stream) is the writer failing: taking it for the end would commit a truncated
// object.
func testReaderErrorWrappingEOF(t *testing.T, b blob.Bucket) {
	assertFailedPuts(t, b, fmt.Errorf("fetch records: %w", io.EOF))
	assertFailedPuts(t, b, io.ErrUnexpectedEOF)
}

// assertFailedPuts puts, for each size, a reader that yields that many bytes then fails
// with readErr: Put must fail with readErr and leave no object.
func assertFailedPuts(t *testing.T, b blob.Bucket, readErr error) {
	t.Helper()
	for _, n := range failedPutSizes {
		k := key(t, fmt.Sprintf("fail-%d", n))
		_, err := b.Put(context.Background(), k, &failingReader{n: n, err: readErr}, blob.PutOptions{IfAbsent: true})
		if !errors.Is(err, readErr) {
			t.Errorf("%d bytes then %q: put: %v, want the reader's error", n, readErr, err)
		}
		if _, err := b.Head(context.Background(), k); !blob.IsNotFound(err) {
			t.Errorf("%d bytes then %q: after the failed put the object exists: %v", n, readErr, err)
		}
	}
}

// testShortReads stores readers that return less than asked and their last bytes together
// with io.EOF, both of which the io.Reader contract allows.
func testShortReads(t *testing.T, b blob.Bucket) {
	for _, n := range append([]int{0, 1}, failedPutSizes...) {
		k := key(t, fmt.Sprintf("short-%d", n))
		data := random(t, n)
		r := iotest.DataErrReader(iotest.HalfReader(bytes.NewReader(data)))
		if _, err := b.Put(context.Background(), k, r, blob.PutOptions{IfAbsent: true}); err != nil {
			t.Fatalf("%d bytes: put: %v", n, err)
		}
		if got := get(t, b, k); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read back %d different bytes", n, len(got))
		}
	}
}

func testCancelled(t *testing.T, b blob.Bucket) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := key(t, "cancel")
	if _, err := b.Put(ctx, k, bytes.NewReader(random(t, 12<<20)), blob.PutOptions{}); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	if _, err := b.Head(context.Background(), k); !blob.IsNotFound(err) {
		t.Fatalf("after a cancelled put the object exists: %v", err)
	}
}
