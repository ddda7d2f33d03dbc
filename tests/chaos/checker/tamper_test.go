package checker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"
)

// The helpers below forge archives with the test's own S3 client: what a broken or
// malicious writer could leave behind.

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func get(t *testing.T, s *store, key string) *object {
	t.Helper()
	obj, err := s.get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// manifestDoc is a manifest as a generic document, so that a forgery keeps every field.
type manifestDoc map[string]any

func readManifest(t *testing.T, s *store, dir string) manifestDoc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(get(t, s, dir+manifestName).data))
	dec.UseNumber()
	var m manifestDoc
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeManifest(t *testing.T, s *store, dir string, m manifestDoc) {
	t.Helper()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, dir+manifestName, &object{data: append(data, '\n'), contentType: "application/json"})
}

func (m manifestDoc) objects() []map[string]any {
	var out []map[string]any
	for _, o := range m["objects"].([]any) {
		out = append(out, o.(map[string]any))
	}
	return out
}

// pieces returns the keys of a window's objects of partition p, in order.
func (m manifestDoc) pieces(p int32) []string {
	var keys []string
	for _, o := range m.objects() {
		if num(o["partition"]) == int64(p) {
			keys = append(keys, o["key"].(string))
		}
	}
	return keys
}

func num(v any) int64 {
	n, err := strconv.ParseInt(string(v.(json.Number)), 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}

// readLines returns the record lines of a piece, without their line feeds.
func readLines(t *testing.T, s *store, key string) [][]byte {
	t.Helper()
	data := get(t, s, key).data
	if len(data) == 0 {
		return nil
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
}

func lineOffset(t *testing.T, line []byte) int64 {
	t.Helper()
	var v struct {
		Offset int64 `json:"offset"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("line %s: %v", line, err)
	}
	return v.Offset
}

// writePiece replaces a piece with lines, in one zstd frame, keeping its content type and
// metadata, and returns its new bytes and raw (uncompressed) length.
func writePiece(t *testing.T, s *store, key string, lines [][]byte) ([]byte, int) {
	t.Helper()
	var raw []byte
	for _, l := range lines {
		raw = append(append(raw, l...), '\n')
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	if len(raw) > 0 {
		data = enc.EncodeAll(raw, nil)
	}
	old := get(t, s, key)
	put(t, s, key, &object{data: data, contentType: old.contentType, meta: old.meta})
	return data, len(raw)
}

// forge replaces a piece of window w with lines and rewrites the manifests so that they
// agree with it: the object's entry, the window's sums, and the chain of every later
// window. Only reading Kafka can tell.
func (f *fixture) forge(t *testing.T, s *store, w int, key string, lines [][]byte) {
	t.Helper()
	dir := f.windowDir(w)
	data, raw := writePiece(t, s, dir+key, lines)
	m := readManifest(t, s, dir)
	sum := sha256.Sum256(data)
	var total, stored, rawTotal int64
	perPart := map[int64]int64{}
	for _, o := range m.objects() {
		if o["key"] == key {
			o["bytes"], o["raw_bytes"], o["records"] = len(data), raw, len(lines)
			o["sha256"] = hex.EncodeToString(sum[:])
			delete(o, "checksum") // optional, and the store's checksum of the old bytes
		}
		total, stored, rawTotal = total+asInt(o["records"]), stored+asInt(o["bytes"]), rawTotal+asInt(o["raw_bytes"])
		perPart[asInt(o["partition"])] += asInt(o["records"])
	}
	m["records"], m["bytes"], m["raw_bytes"] = total, stored, rawTotal
	for _, p := range m["partitions"].([]any) {
		pm := p.(map[string]any)
		pm["records"] = perPart[asInt(pm["partition"])]
	}
	writeManifest(t, s, dir, m)
	f.rechain(t, s, w+1)
}

func asInt(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	}
	return num(v)
}

// rechain rewrites previous.sha256 of windows from w on, so that the chain proves the
// forgery.
func (f *fixture) rechain(t *testing.T, s *store, from int) {
	t.Helper()
	for w := max(from, 1); w < fixtureWindows; w++ {
		prev := get(t, s, f.windowDir(w-1)+manifestName).data
		sum := sha256.Sum256(prev)
		m := readManifest(t, s, f.windowDir(w))
		m["previous"].(map[string]any)["sha256"] = hex.EncodeToString(sum[:])
		writeManifest(t, s, f.windowDir(w), m)
	}
}

// aLine returns a record line of the aborted record r, as karch would write it.
func aLine(topic string, r produced) []byte {
	line, _ := json.Marshal(map[string]any{
		"topic": topic, "partition": r.partition, "offset": r.offset,
		"timestamp": r.ts.UTC().Format("2006-01-02T15:04:05.000Z"), "key_str": r.key, "value_str": r.value,
	})
	return line
}

func hasProblem(rep *Report, parts ...string) bool {
	for _, p := range rep.Problems {
		all := true
		for _, s := range parts {
			all = all && strings.Contains(p, s)
		}
		if all {
			return true
		}
	}
	return false
}

func deleteInput(s *store, key string) *s3.DeleteObjectInput {
	return &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(key))}
}
