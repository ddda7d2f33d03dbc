// Package compress writes and reads karch's piece streams: a sequence of independent zstd
// frames, so that a reader can decompress frames in parallel and a verifier can stream.
package compress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// ErrCorrupt is wrapped by errors from a stream that is not valid zstd.
var ErrCorrupt = errors.New("compress: corrupt zstd stream")

// Options tune a Writer. The zero value means the defaults.
type Options struct {
	// Level is the zstd level, 1 to 22; 0 means 3, zstd's default.
	Level int
	// FrameSize is the uncompressed size after which a frame ends; 0 means 4 MiB.
	FrameSize int
	// Concurrency is how many frames are compressed at once; 0 means min(GOMAXPROCS, 4).
	Concurrency int
}

const minFrameSize = 64 << 10

// WithDefaults returns o with zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Level == 0 {
		o.Level = 3
	}
	if o.FrameSize == 0 {
		o.FrameSize = 4 << 20
	}
	if o.Concurrency == 0 {
		o.Concurrency = min(runtime.GOMAXPROCS(0), 4)
	}
	return o
}

// Validate names the first field that is out of range.
func (o Options) Validate() error {
	o = o.WithDefaults()
	switch {
	case o.Level < 1 || o.Level > 22:
		return fmt.Errorf("zstd level %d: want 1 to 22", o.Level)
	case o.FrameSize < minFrameSize:
		return fmt.Errorf("frame size %d: want at least %d", o.FrameSize, minFrameSize)
	case o.Concurrency < 1:
		return fmt.Errorf("compress concurrency %d: want at least 1", o.Concurrency)
	}
	return nil
}

// Writer compresses what is written to it into independent zstd frames.
//
// A frame ends at the end of the first Write that brings it to at least FrameSize bytes, so a
// caller that writes whole lines gets frames of whole lines. Frames are compressed by up to
// Concurrency goroutines and written in order; the output depends only on the input and
// Level and FrameSize, never on Concurrency or timing, so a retried piece is byte-identical.
// Memory is bounded: Write blocks while Concurrency frames are in flight.
//
// A Writer is not safe for concurrent use. Close must be called, also after an error, to
// stop its goroutines.
type Writer struct {
	enc   *zstd.Encoder
	opts  Options
	g     *errgroup.Group
	ctx   context.Context // the group's: done when ctx is, or when a frame failed
	outer context.Context
	slots chan struct{} // one token per frame in flight
	prev  chan struct{} // closed when the previous frame has been written
	out   io.Writer
	buf   []byte
	raw   int64
}

// Encoders are shared by every Writer with the same options: EncodeAll is safe for
// concurrent use, and each encoder's history buffers are the largest allocation of a
// shard, which would otherwise be made anew for every piece.
var (
	encodersMu sync.Mutex
	encoders   = map[Options]*zstd.Encoder{}
)

func encoderFor(opts Options) (*zstd.Encoder, error) {
	encodersMu.Lock()
	defer encodersMu.Unlock()
	if enc, ok := encoders[opts]; ok {
		return enc, nil
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(opts.Level)),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(false), zstd.WithEncoderConcurrency(opts.Concurrency),
		zstd.WithWindowSize(windowFor(opts.FrameSize)), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("start zstd encoder: %w", err)
	}
	encoders[opts] = enc
	return enc, nil
}

// windowFor is the smallest power-of-two window that spans a frame: frames are
// independent, so a larger window only makes the encoder's history buffer larger.
func windowFor(frameSize int) int {
	w := zstd.MinWindowSize
	for w < frameSize && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// rawBufs and outBufs recycle frame buffers across Writers: a raw frame is FrameSize and a
// little more (the Write that ends it), a compressed one a fraction of that, grown by the
// encoder when the data does not compress.
var rawBufs, outBufs sync.Pool

// NewWriter returns a Writer to w. ctx bounds its life: once ctx is done, Write and Close
// fail.
func NewWriter(ctx context.Context, w io.Writer, opts Options) (*Writer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	enc, err := encoderFor(opts)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	done := make(chan struct{})
	close(done)
	return &Writer{enc: enc, opts: opts, g: g, ctx: gctx, outer: ctx, slots: make(chan struct{}, opts.Concurrency), prev: done, out: w}, nil
}

// RawBytes returns how many uncompressed bytes were written so far.
func (w *Writer) RawBytes() int64 { return w.raw }

// Write buffers p and hands a full frame to a compressor.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, w.failure(err)
	}
	if w.buf == nil {
		w.buf = getBuf(&rawBufs, w.opts.FrameSize+w.opts.FrameSize/8)
	}
	w.buf = append(w.buf, p...)
	w.raw += int64(len(p))
	if len(w.buf) >= w.opts.FrameSize {
		if err := w.flushFrame(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// flushFrame compresses the buffered frame on a goroutine; the goroutine writes it after
// the frame before it, which keeps the output in order.
func (w *Writer) flushFrame() error {
	select {
	case w.slots <- struct{}{}:
	case <-w.ctx.Done():
		return w.failure(w.ctx.Err())
	}
	raw, prev, mine := w.buf, w.prev, make(chan struct{})
	w.buf, w.prev = nil, mine
	w.g.Go(func() error {
		defer func() { <-w.slots }()
		defer close(mine)
		frame := w.enc.EncodeAll(raw, getBuf(&outBufs, w.opts.FrameSize/4))
		rawBufs.Put(raw[:0])
		select {
		case <-prev:
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
		_, err := w.out.Write(frame)
		outBufs.Put(frame[:0])
		if err != nil {
			return fmt.Errorf("write zstd frame: %w", err)
		}
		return nil
	})
	return nil
}

func getBuf(pool *sync.Pool, size int) []byte {
	if b, ok := pool.Get().([]byte); ok && cap(b) >= size {
		return b
	}
	return make([]byte, 0, size)
}

// failure prefers the error that stopped the pipeline over the cancellation it caused.
func (w *Writer) failure(err error) error {
	if gerr := w.g.Wait(); gerr != nil {
		return gerr
	}
	return err
}

// Close compresses what is buffered, waits until every frame is written, and returns the
// first error. An empty stream produces no output at all, which NewReader reads as empty.
func (w *Writer) Close() error {
	var err error
	if len(w.buf) > 0 {
		err = w.flushFrame()
	}
	if gerr := w.g.Wait(); gerr != nil {
		err = gerr
	}
	if err == nil {
		err = w.outer.Err() // the group's context ends with Wait; the caller's says if it was cancelled
	}
	return err
}

// NewReader returns a streaming reader of concatenated zstd frames. Errors caused by the
// stream's content wrap ErrCorrupt; errors of r itself pass through unchanged, so that a
// connection cut mid-read stays retryable.
func NewReader(r io.Reader) (io.ReadCloser, error) {
	src := &sourceReader{r: r}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, fmt.Errorf("start zstd decoder: %w", err)
	}
	return &reader{dec: dec, src: src}, nil
}

type reader struct {
	dec *zstd.Decoder
	src *sourceReader
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.dec.Read(p)
	if err != nil && err != io.EOF && (r.src.err == nil || !errors.Is(err, r.src.err)) {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return n, err
}

func (r *reader) Close() error {
	r.dec.Close()
	return nil
}

// sourceReader remembers the error of the underlying reader.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
