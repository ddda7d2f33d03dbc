package checker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// readObject reads one object of a committed window and adds its record lines to the
// partition's archived records. Everything wrong with the object is a problem: missing,
// another length or SHA-256 than the manifest's, frames that are not karch's, lines that
// do not decode, are of another partition, out of the object's range or out of order, and
// counts that differ from the manifest's. Only an unreachable store is an error.
func (ch *check) readObject(ctx context.Context, w *window, o mObject, ps *partState) error {
	key := w.dir + o.Key
	obj, err := ch.store.get(ctx, key)
	if errors.Is(err, errMissing) {
		ch.rep.problem("object %s is missing; %s lists it", key, w.manifestKey())
		return nil
	}
	if err != nil {
		return err
	}
	ch.checkStored(key, o, obj)
	frames, err := splitFrames(obj.data)
	if err != nil {
		ch.rep.problem("object %s: %v", key, err)
		frames = [][]byte{obj.data} // the decoder reads concatenated frames, whatever they are
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("create zstd decoder: %w", err)
	}
	defer dec.Close()
	pr := &pieceReader{ch: ch, ps: ps, key: key, o: o, prev: -1}
	for i, f := range frames {
		out, err := dec.DecodeAll(f, nil)
		if err != nil {
			ch.rep.problem("object %s: frame %d does not decompress: %v", key, i, err)
			continue
		}
		pr.frame(i, out)
	}
	pr.finish()
	return nil
}

// checkStored checks an object's stored bytes and properties against its manifest entry
// and FORMAT.md's "Object properties".
func (ch *check) checkStored(key string, o mObject, obj *object) {
	if int64(len(obj.data)) != o.Bytes {
		ch.rep.problem("object %s is %d bytes long; the manifest says %d", key, len(obj.data), o.Bytes)
	}
	sum := sha256.Sum256(obj.data)
	if got := hex.EncodeToString(sum[:]); got != o.SHA256 {
		ch.rep.problem("object %s: sha256 of the stored bytes is %s; the manifest says %s", key, got, o.SHA256)
	}
	if obj.contentType != "application/zstd" {
		ch.rep.problem("object %s: content type %q, not application/zstd", key, obj.contentType)
	}
	for _, m := range []struct {
		name string
		want int64
	}{{"karch-first", o.First}, {"karch-end", o.End}} {
		if got := metaValue(obj.meta, m.name); got != strconv.FormatInt(m.want, 10) {
			ch.rep.problem("object %s: metadata %s is %q; the manifest's bound is %d", key, m.name, got, m.want)
		}
	}
}

func metaValue(meta map[string]string, name string) string {
	for k, v := range meta {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// pieceReader splits an object's decompressed frames into lines and checks them.
type pieceReader struct {
	ch    *check
	ps    *partState
	key   string
	o     mObject
	carry []byte // a line that the previous frame did not end
	lines int64
	raw   int64
	prev  int64 // the offset of the previous line
}

func (pr *pieceReader) frame(i int, out []byte) {
	pr.raw += int64(len(out))
	if len(out) > 0 && out[len(out)-1] != '\n' {
		pr.ch.rep.problem("object %s: frame %d ends inside a line; every frame holds whole lines", pr.key, i)
	}
	data := out
	if len(pr.carry) > 0 {
		data = append(pr.carry, out...)
		pr.carry = nil
	}
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n')
		if n < 0 {
			pr.carry = bytes.Clone(data)
			return
		}
		pr.line(data[:n])
		data = data[n+1:]
	}
}

func (pr *pieceReader) finish() {
	if len(pr.carry) > 0 {
		pr.ch.rep.problem("object %s: the last line has no line feed", pr.key)
		pr.line(pr.carry)
	}
	if pr.raw != pr.o.RawBytes {
		pr.ch.rep.problem("object %s decompresses to %d bytes; the manifest says raw_bytes %d", pr.key, pr.raw, pr.o.RawBytes)
	}
	if pr.lines != pr.o.Records {
		pr.ch.rep.problem("object %s holds %d lines; the manifest says records %d", pr.key, pr.lines, pr.o.Records)
	}
}

// line checks one record line and adds it to the archived records, even when it is out
// of place: it is in a committed window all the same.
func (pr *pieceReader) line(b []byte) {
	pr.lines++
	pr.ch.rep.Records++
	where := fmt.Sprintf("object %s line %d", pr.key, pr.lines)
	rec, notes, err := decodeLine(b)
	if err != nil {
		pr.ch.rep.problem("%s does not decode: %v", where, err)
		if off, ok := salvageOffset(b); ok {
			pr.ps.add(off, occurrence{where: where, bad: "the line does not decode: " + err.Error()})
		}
		return
	}
	for _, n := range notes {
		pr.ch.rep.problem("%s (offset %d): %s", where, rec.offset, n)
	}
	oc := occurrence{where: where, rec: rec}
	if rec.topic != pr.o.Topic || rec.partition != pr.o.Partition {
		pr.ch.rep.problem("%s is of %s/%d; the object is of %s/%d", where, rec.topic, rec.partition, pr.o.Topic, pr.o.Partition)
		oc = occurrence{where: where, bad: fmt.Sprintf("the line is of %s/%d", rec.topic, rec.partition)}
	}
	if rec.offset < pr.o.First || rec.offset >= pr.o.End {
		pr.ch.rep.problem("%s: offset %d is outside the object's [%d, %d)", where, rec.offset, pr.o.First, pr.o.End)
	}
	if rec.offset <= pr.prev {
		pr.ch.rep.problem("%s: offset %d follows offset %d; offsets strictly increase", where, rec.offset, pr.prev)
	}
	pr.prev = rec.offset
	pr.ps.add(rec.offset, oc)
}

// salvageOffset reads the offset of a line that does not decode, so that a bad line is
// reported at its offset.
func salvageOffset(b []byte) (int64, bool) {
	var v struct {
		Offset *int64 `json:"offset"`
	}
	_ = json.Unmarshal(b, &v) // a type error elsewhere in the line still fills Offset
	if v.Offset == nil {
		return 0, false
	}
	return *v.Offset, true
}
