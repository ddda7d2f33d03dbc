package checker

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

const manifestFormat = "karch.manifest/v1"

// manifest is a MANIFEST.json (FORMAT.md, "MANIFEST.json"): the fields the checker proves.
// A manifest grows within v1, so fields it does not know are ignored.
type manifest struct {
	Format   string `json:"format"`
	Pipeline string `json:"pipeline"`
	Window   struct {
		Start string `json:"start"`
		End   string `json:"end"`
	} `json:"window"`
	Partitions []mPartition `json:"partitions"`
	Objects    []mObject    `json:"objects"`
	Records    int64        `json:"records"`
	Bytes      int64        `json:"bytes"`
	RawBytes   int64        `json:"raw_bytes"`
	Previous   *mPrevious   `json:"previous"`
	Gaps       []mGap       `json:"gaps"`
}

type mPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Records   int64  `json:"records"`
}

type mObject struct {
	Key       string `json:"key"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Records   int64  `json:"records"`
	Bytes     int64  `json:"bytes"`
	RawBytes  int64  `json:"raw_bytes"`
	SHA256    string `json:"sha256"`
}

type mGap struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	Reason    string `json:"reason"`
}

type mPrevious struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
}

// The fields FORMAT.md says are always present, at each level.
var (
	manifestFields = []string{"format", "pipeline", "window", "partitions", "objects", "records", "bytes", "raw_bytes", "run_id", "fencing_token", "committed_at", "karch_version"}
	nestedFields   = map[string][]string{
		"window":     {"start", "end"},
		"previous":   {"key", "sha256"},
		"partitions": {"topic", "partition", "first", "end", "records"},
		"objects":    {"key", "topic", "partition", "first", "end", "records", "bytes", "raw_bytes", "sha256"},
		"gaps":       {"topic", "partition", "first", "end", "reason"},
	}
)

// decodeManifest decodes a manifest, rejecting another format and a missing field.
func decodeManifest(data []byte) (*manifest, error) {
	if err := requireFields(data, manifestFields); err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m.Format != manifestFormat {
		return nil, fmt.Errorf("format %q is not %s", m.Format, manifestFormat)
	}
	return &m, requireNested(data)
}

// requireNested checks the fields of the manifest's members that are always present.
func requireNested(data []byte) error {
	var nested struct {
		Window     json.RawMessage   `json:"window"`
		Previous   json.RawMessage   `json:"previous"`
		Partitions []json.RawMessage `json:"partitions"`
		Objects    []json.RawMessage `json:"objects"`
		Gaps       []json.RawMessage `json:"gaps"`
	}
	if err := json.Unmarshal(data, &nested); err != nil {
		return err
	}
	docs := map[string][]json.RawMessage{"window": {nested.Window}, "partitions": nested.Partitions, "objects": nested.Objects, "gaps": nested.Gaps}
	if nested.Previous != nil {
		docs["previous"] = []json.RawMessage{nested.Previous}
	}
	for _, name := range sortedKeys(docs) {
		for i, doc := range docs[name] {
			if err := requireFields(doc, nestedFields[name]); err != nil {
				return fmt.Errorf("%s[%d]: %w", name, i, err)
			}
		}
	}
	return nil
}

// requireFields checks that data is a JSON object with every field of names.
func requireFields(data []byte, names []string) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return fmt.Errorf("not a JSON object")
	}
	for _, n := range names {
		if _, ok := fields[n]; !ok {
			return fmt.Errorf("no %q", n)
		}
	}
	return nil
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkManifest checks what a manifest proves about itself (FORMAT.md, "What a reader can
// check"): its window agrees with its folder, its partitions are the topic's, its objects
// tile each partition's range, its sums add up; and reports every declared gap, since a
// chaos scenario never allows data loss.
func (ch *check) checkManifest(w *window) {
	m := w.m
	if m == nil {
		return
	}
	key := w.manifestKey()
	if m.Pipeline != ch.cfg.Pipeline {
		ch.rep.problem("%s: pipeline %q, not %q", key, m.Pipeline, ch.cfg.Pipeline)
	}
	start, err1 := time.Parse(time.RFC3339Nano, m.Window.Start)
	end, err2 := time.Parse(time.RFC3339Nano, m.Window.End)
	if err1 != nil || err2 != nil || !start.Equal(w.start) || !end.Equal(w.end) {
		ch.rep.problem("%s: window [%s, %s) disagrees with its folder's [%s, %s)", key, m.Window.Start, m.Window.End, stamp(w.start), stamp(w.end))
	}
	ch.checkRanges(w)
	ch.checkObjects(w)
	ch.checkSums(w)
	for _, g := range m.Gaps {
		ch.rep.problem("%s declares a gap: partition %d offsets [%d, %d) are in no window (reason %q)", key, g.Partition, g.First, g.End, g.Reason)
	}
}

// checkRanges checks the manifest's partitions: the pipeline's topic, each partition once,
// first <= end, no more records than offsets.
func (ch *check) checkRanges(w *window) {
	seen := map[int32]bool{}
	for _, r := range w.m.Partitions {
		where := fmt.Sprintf("%s: partition %d [%d, %d)", w.manifestKey(), r.Partition, r.First, r.End)
		switch {
		case r.Topic != ch.cfg.Topic && ch.cfg.Shared:
			continue
		case r.Topic != ch.cfg.Topic:
			ch.rep.problem("%s is of topic %q, not %q", where, r.Topic, ch.cfg.Topic)
		case seen[r.Partition]:
			ch.rep.problem("%s: the partition is listed twice", where)
		case r.Partition < 0 || r.First < 0 || r.First > r.End:
			ch.rep.problem("%s is not a range of offsets", where)
		case r.Records < 0 || r.Records > r.End-r.First:
			ch.rep.problem("%s claims %d records", where, r.Records)
		}
		seen[r.Partition] = true
	}
}

// checkObjects checks that the objects are ordered, named by their bounds, and tile each
// partition's [first, end): the first starts at first, each where the one before ended,
// the last ends at end.
func (ch *check) checkObjects(w *window) {
	key := w.manifestKey()
	next := map[int32]int64{}
	ranges := map[int32]mPartition{}
	for _, r := range ch.ranges(w) {
		ranges[r.Partition], next[r.Partition] = r, r.First
	}
	for i, o := range w.m.Objects {
		where := fmt.Sprintf("%s: object %s", key, o.Key)
		if i > 0 && !objectBefore(w.m.Objects[i-1], o) {
			ch.rep.problem("%s is out of order (objects are ordered by topic, partition and first offset)", where)
		}
		ch.checkObjectEntry(where, o)
		if o.Topic != ch.cfg.Topic && ch.cfg.Shared {
			continue
		}
		r, ok := ranges[o.Partition]
		if !ok || o.Topic != ch.cfg.Topic {
			ch.rep.problem("%s: topic %q partition %d is not among the manifest's partitions", where, o.Topic, o.Partition)
			continue
		}
		if o.First != next[o.Partition] {
			ch.rep.problem("%s starts at %d; the objects of partition %d tile [%d, %d), and the next offset to cover is %d", where, o.First, o.Partition, r.First, r.End, next[o.Partition])
		}
		next[o.Partition] = o.End
	}
	for _, r := range ch.ranges(w) {
		if next[r.Partition] != r.End {
			ch.rep.problem("%s: the objects of partition %d end at %d, not at the range's end %d", key, r.Partition, next[r.Partition], r.End)
		}
	}
}

func objectBefore(a, b mObject) bool {
	if a.Topic != b.Topic {
		return a.Topic < b.Topic
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	return a.First < b.First
}

// checkObjectEntry checks one object entry on its own.
func (ch *check) checkObjectEntry(where string, o mObject) {
	if want := fmt.Sprintf("data/%s/%d/%020d.jsonl.zst", o.Topic, o.Partition, o.First); o.Key != want {
		ch.rep.problem("%s: the key of a piece of topic %q partition %d from %d is %s", where, o.Topic, o.Partition, o.First, want)
	}
	switch {
	case o.First < 0 || o.End <= o.First:
		ch.rep.problem("%s: [%d, %d) is not a piece's range", where, o.First, o.End)
	case o.Records < 0 || o.Records > o.End-o.First:
		ch.rep.problem("%s claims %d records in [%d, %d)", where, o.Records, o.First, o.End)
	}
	if o.Bytes < 0 || o.RawBytes < 0 {
		ch.rep.problem("%s: negative size", where)
	}
	if !sha256RE.MatchString(o.SHA256) {
		ch.rep.problem("%s: sha256 %q is not 64 lower-case hex digits", where, o.SHA256)
	}
}

// checkSums checks the manifest's totals and each partition's records against its objects.
func (ch *check) checkSums(w *window) {
	m := w.m
	var records, bytes, raw int64
	perPart := map[int32]int64{}
	for _, o := range m.Objects {
		records, bytes, raw = records+o.Records, bytes+o.Bytes, raw+o.RawBytes
		if o.Topic == ch.cfg.Topic || !ch.cfg.Shared {
			perPart[o.Partition] += o.Records
		}
	}
	key := w.manifestKey()
	for _, s := range []struct {
		name      string
		got, want int64
	}{{"records", m.Records, records}, {"bytes", m.Bytes, bytes}, {"raw_bytes", m.RawBytes, raw}} {
		if s.got != s.want {
			ch.rep.problem("%s: %s is %d; its objects sum to %d", key, s.name, s.got, s.want)
		}
	}
	for _, r := range ch.ranges(w) {
		if r.Records != perPart[r.Partition] {
			ch.rep.problem("%s: partition %d claims %d records; its objects sum to %d", key, r.Partition, r.Records, perPart[r.Partition])
		}
	}
}

// ranges are the window's partitions of the checked topic; with Shared off, every one (one
// of another topic is a problem that checkRanges names).
func (ch *check) ranges(w *window) []mPartition {
	if !ch.cfg.Shared {
		return w.m.Partitions
	}
	var out []mPartition
	for _, r := range w.m.Partitions {
		if r.Topic == ch.cfg.Topic {
			out = append(out, r)
		}
	}
	return out
}
