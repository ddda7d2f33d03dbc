package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// lines makes n JSON-ish lines of varied length.
func lines(n int) [][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"offset":%d,"v":"%x"}`+"\n", i, rng.Uint64()%(1<<(rng.IntN(60)+1)))
	}
	return out
}

func compressLines(t *testing.T, ls [][]byte, opts Options) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(context.Background(), &out, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if _, err := w.Write(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decompress(t *testing.T, data []byte) []byte {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRoundTripAndDeterminism(t *testing.T) {
	for _, n := range []int{0, 1, 100, 60_000} {
		ls := lines(n)
		want := bytes.Join(ls, nil)
		var first []byte
		for _, conc := range []int{1, 4} {
			data := compressLines(t, ls, Options{FrameSize: minFrameSize, Concurrency: conc})
			if got := decompress(t, data); !bytes.Equal(got, want) {
				t.Fatalf("%d lines, concurrency %d: round trip differs", n, conc)
			}
			if first != nil && !bytes.Equal(first, data) {
				t.Fatalf("%d lines: output differs between concurrency 1 and %d", n, conc)
			}
			first = data
		}
		if n == 0 && len(first) != 0 {
			t.Fatalf("empty input gave %d bytes", len(first))
		}
	}
}

// Every frame decodes on its own to whole lines.
func TestFramesEndOnWriteBoundaries(t *testing.T) {
	data := compressLines(t, lines(60_000), Options{FrameSize: minFrameSize})
	frames := bytes.Split(data, []byte{0x28, 0xb5, 0x2f, 0xfd})[1:]
	if len(frames) < 10 {
		t.Fatalf("%d frames; want many", len(frames))
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	for i, f := range frames {
		raw, err := dec.DecodeAll(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, f...), nil)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(raw) < minFrameSize && i < len(frames)-1 || raw[len(raw)-1] != '\n' || raw[0] != '{' {
			t.Fatalf("frame %d: %d bytes, not whole lines of at least the frame size", i, len(raw))
		}
	}
}

// Debian's zstd tool reads our pieces: the archive does not need karch to be read.
func TestZstdToolDecompresses(t *testing.T) {
	tool, err := exec.LookPath("zstd")
	if err != nil {
		t.Fatalf("the zstd command is needed for this test: apt-get install zstd (%v)", err)
	}
	ls := lines(60_000)
	path := filepath.Join(t.TempDir(), "piece.jsonl.zst")
	if err := os.WriteFile(path, compressLines(t, ls, Options{FrameSize: minFrameSize, Level: 19}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "-d", "-c", path).Output()
	if err != nil {
		t.Fatalf("zstd -d: %v", err)
	}
	if !bytes.Equal(out, bytes.Join(ls, nil)) {
		t.Fatal("zstd -d output differs from the input")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterErrorStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	w, err := NewWriter(context.Background(), failingWriter{}, Options{FrameSize: minFrameSize, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for _, l := range lines(60_000) {
		if _, werr = w.Write(l); werr != nil {
			break
		}
	}
	if err := w.Close(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("disk full")) {
		t.Fatalf("Close: %v, want the writer's error", err)
	}
	waitGoroutines(t, before)
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := NewWriter(ctx, io.Discard, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Write([]byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write after cancel: %v", err)
	}
	if err := w.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close after cancel: %v", err)
	}
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d goroutines left, had %d", runtime.NumGoroutine(), want)
}

func TestCorruptInput(t *testing.T) {
	data := compressLines(t, lines(1000), Options{})
	data[len(data)/2] ^= 0xff
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt input: %v, want ErrCorrupt", err)
	}
	if _, err := io.ReadAll(mustReader(t, []byte("not zstd at all"))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("non-zstd input: %v, want ErrCorrupt", err)
	}
}

func mustReader(t *testing.T, data []byte) io.Reader {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{{Level: 23}, {Level: -1}, {FrameSize: 10}, {Concurrency: -1}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

type cutReader struct {
	data []byte
	err  error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// A connection cut mid-read is not corruption: it must stay retryable.
func TestSourceErrorPassesThrough(t *testing.T) {
	data := compressLines(t, lines(10_000), Options{FrameSize: minFrameSize})
	cut := errors.New("connection reset")
	r, err := NewReader(&cutReader{data: data[:len(data)/2], err: cut})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, cut) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want the source's error and not ErrCorrupt", err)
	}
}
