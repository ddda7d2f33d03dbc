package checker

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCheck archives a topic with the real karch, proves that the checker passes the
// archive, then tampers with copies of it and proves that the checker names each
// tampering by offset.
func TestCheck(t *testing.T) {
	f := newFixture(t)
	t.Run("clean archive", f.testClean)
	t.Run("piece without a line", f.testLineRemoved)
	t.Run("consistent forgery of a value", f.testValueForged)
	t.Run("line duplicated into the next window", f.testDuplicated)
	t.Run("middle manifest deleted", f.testManifestDeleted)
	t.Run("aborted record archived", f.testAbortedArchived)
	t.Run("work in progress", f.testWorkInProgress)
	t.Run("unreachable servers", f.testUnreachable)
}

func runCheck(t *testing.T, c Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Check(ctx, c)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	t.Log(rep)
	return rep
}

// committedCount is how many records Kafka holds at read_committed.
func (f *fixture) committedCount() int64 {
	var n int64
	for _, offs := range f.committed {
		n += int64(len(offs))
	}
	return n
}

func (f *fixture) testClean(t *testing.T) {
	t.Parallel()
	rep := runCheck(t, f.cfg)
	if !rep.OK() {
		t.Fatalf("the archive karch made fails:\n%s", rep)
	}
	if want := f.committedCount(); rep.Records != want || rep.Held != want || rep.Windows != fixtureWindows {
		t.Fatalf("%d records archived, %d in Kafka, %d windows; want %d, %d, %d", rep.Records, rep.Held, rep.Windows, want, want, fixtureWindows)
	}
	if len(f.aborted) == 0 {
		t.Fatal("the fixture has no aborted record: read_committed is not tested")
	}
	f.assertShapes(t)
}

// assertShapes checks that the archive has the shapes the checker must read: a zero-byte
// piece (only aborted records), and pieces of several zstd frames.
func (f *fixture) assertShapes(t *testing.T) {
	t.Helper()
	s := newStore(f.cfg)
	empty, framed := 0, 0
	for w := range fixtureWindows {
		for _, o := range readManifest(t, s, f.windowDir(w)).objects() {
			data := get(t, s, f.windowDir(w)+o["key"].(string)).data
			frames, err := splitFrames(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) == 0 {
				empty++
			}
			if len(frames) > 1 {
				framed++
			}
		}
	}
	if empty == 0 || framed == 0 {
		t.Fatalf("%d zero-byte pieces and %d of several frames; the fixture should have both", empty, framed)
	}
}

// Folders without a manifest, and a piece that no manifest lists, are not archive data;
// windows before Start are not checked.
func (f *fixture) testWorkInProgress(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "wip")
	s := newStore(c)
	junk := &object{data: []byte("not zstd"), contentType: "application/zstd"}
	next := f.start.Add(fixtureWindows * time.Hour)
	wip := fmt.Sprintf("%s/dt=%s/window=%sZ-1h/", f.cfg.Pipeline, next.Format("2006-01-02"), next.Format("1504"))
	put(t, s, wip+"plan.json", &object{data: []byte("{}"), contentType: "application/json"})
	put(t, s, wip+"data/"+f.cfg.Topic+"/0/00000000000000000000.jsonl.zst", junk)
	put(t, s, f.windowDir(1)+"data/"+f.cfg.Topic+"/0/99999999999999999999.jsonl.zst", junk)
	put(t, s, f.cfg.Pipeline+"/dt=2000-01-01/window=0000Z-15m/MANIFEST.json", junk) // before Start

	if rep := runCheck(t, c); !rep.OK() || rep.Windows != fixtureWindows {
		t.Fatalf("work in progress counted:\n%s", rep)
	}
}

// assertRefs fails the test unless refs name exactly the offsets want, as "p/offset".
func assertRefs(t *testing.T, kind string, refs []Ref, want ...string) {
	t.Helper()
	got := make([]string, len(refs))
	for i, r := range refs {
		got[i] = fmt.Sprintf("%d/%d", r.Partition, r.Offset)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s %v, want %v", kind, got, want)
	}
}

func ref(p int32, off int64) string { return fmt.Sprintf("%d/%d", p, off) }

// A piece rewritten without one of its lines, the manifest left alone: that offset is lost,
// and the piece's SHA-256 and counts no longer match.
func (f *fixture) testLineRemoved(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "removed")
	s := newStore(c)
	key := readManifest(t, s, f.windowDir(0)).pieces(0)[0]
	lines := readLines(t, s, f.windowDir(0)+key)
	gone := lineOffset(t, lines[1])
	writePiece(t, s, f.windowDir(0)+key, slices.Delete(lines, 1, 2))

	rep := runCheck(t, c)
	assertRefs(t, "lost", rep.Lost, ref(0, gone))
	assertRefs(t, "duplicated", rep.Duplicated)
	assertRefs(t, "mismatched", rep.Mismatched)
	if !strings.Contains(rep.Lost[0].Why, key) {
		t.Errorf("the lost offset does not name the piece %s: %s", key, rep.Lost[0].Why)
	}
	if !hasProblem(rep, key, "sha256") || !hasProblem(rep, key, "records") || !hasProblem(rep, key, "bytes long") {
		t.Fatalf("no problem names the piece's SHA-256, length and records:\n%s", rep)
	}
}

// One byte of a value changed, the manifests rewritten to match (sums, SHA-256, chain):
// only Kafka can tell, and the checker names the offset, with no structural problem.
func (f *fixture) testValueForged(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "forged")
	s := newStore(c)
	m := readManifest(t, s, f.windowDir(1))
	for _, key := range m.pieces(1) {
		lines := readLines(t, s, f.windowDir(1)+key)
		for i, l := range lines {
			if at := bytes.Index(l, []byte(`"value":{"n":`)); at >= 0 {
				off := lineOffset(t, l)
				lines[i] = bytes.Clone(l)
				lines[i][at+len(`"value":{"`)] = 'm'
				f.forge(t, s, 1, key, lines)
				rep := runCheck(t, c)
				assertRefs(t, "mismatched", rep.Mismatched, ref(1, off))
				assertRefs(t, "lost", rep.Lost)
				assertRefs(t, "duplicated", rep.Duplicated)
				if len(rep.Problems) > 0 || !strings.Contains(rep.Mismatched[0].Why, "value") {
					t.Fatalf("want only the value mismatch:\n%s", rep)
				}
				return
			}
		}
	}
	t.Fatal("window 1 has no JSON object value in partition 1")
}

// The last line of window 1's partition 2 copied into window 2's first piece of it, the
// manifests rewritten to match: the offset is duplicated.
func (f *fixture) testDuplicated(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "duplicated")
	s := newStore(c)
	from := readManifest(t, s, f.windowDir(1)).pieces(2)
	src := readLines(t, s, f.windowDir(1)+from[len(from)-1])
	dup := src[len(src)-1]
	key := readManifest(t, s, f.windowDir(2)).pieces(2)[0]
	f.forge(t, s, 2, key, append([][]byte{dup}, readLines(t, s, f.windowDir(2)+key)...))

	rep := runCheck(t, c)
	assertRefs(t, "duplicated", rep.Duplicated, ref(2, lineOffset(t, dup)))
	assertRefs(t, "lost", rep.Lost)
	assertRefs(t, "mismatched", rep.Mismatched)
	if !strings.Contains(rep.Duplicated[0].Why, key) || !strings.Contains(rep.Duplicated[0].Why, from[len(from)-1]) {
		t.Errorf("the duplicate does not name both pieces: %s", rep.Duplicated[0].Why)
	}
	// The piece now holds an offset outside its range, and more records than offsets: no
	// forgery can hide that, but every problem is about that piece.
	if !hasProblem(rep, key, "outside the object") {
		t.Errorf("no problem says that the line is outside its piece:\n%s", rep)
	}
	for _, p := range rep.Problems {
		if !strings.Contains(p, key) {
			t.Errorf("unexpected problem: %s", p)
		}
	}
}

// The middle window's manifest deleted: the window is missing, and every record of its
// ranges is lost.
func (f *fixture) testManifestDeleted(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "deleted")
	s := newStore(c)
	m := readManifest(t, s, f.windowDir(1))
	if _, err := s.client.DeleteObject(context.Background(), deleteInput(s, f.windowDir(1)+manifestName)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, pr := range m["partitions"].([]any) {
		r := pr.(map[string]any)
		p, first, end := int32(num(r["partition"])), num(r["first"]), num(r["end"])
		for _, off := range f.committed[p] {
			if off >= first && off < end {
				want = append(want, ref(p, off))
			}
		}
	}

	rep := runCheck(t, c)
	assertRefs(t, "lost", rep.Lost, want...)
	assertRefs(t, "duplicated", rep.Duplicated)
	assertRefs(t, "mismatched", rep.Mismatched)
	start := f.start.Add(time.Hour).Format(time.RFC3339)
	if rep.Windows != 2 || !hasProblem(rep, "windows missing", start, f.windowDir(1)) {
		t.Fatalf("%d windows; want 2, and a problem naming the missing window %s:\n%s", rep.Windows, f.windowDir(1), rep)
	}
	if !hasProblem(rep, f.windowDir(2)+manifestName, "previous", f.windowDir(1)+manifestName) {
		t.Fatalf("no problem names the broken chain:\n%s", rep)
	}
}

// A record of the aborted transaction inserted into the piece that covers its offset, and
// a line at the offset of the transaction's abort marker, the manifests rewritten to match:
// Kafka holds no such records at read_committed.
func (f *fixture) testAbortedArchived(t *testing.T) {
	t.Parallel()
	c := f.copyArchive(t, "aborted")
	s := newStore(c)
	// The fixture's aborted transaction in window 2 writes two records to partition 1, then
	// its marker.
	i := slices.IndexFunc(f.aborted, func(r produced) bool { return r.partition == 1 })
	a := f.aborted[i]
	marker := produced{a.partition, f.aborted[i+1].offset + 1, "k", "v", a.ts}
	if f.aborted[i+1].partition != a.partition || a.ts.Before(f.start.Add(2*time.Hour)) {
		t.Fatal("the fixture's aborted transaction has changed")
	}
	for _, r := range []produced{a, marker} {
		key, lines := f.pieceCovering(t, s, 2, r.partition, r.offset)
		at, _ := slices.BinarySearchFunc(lines, r.offset, func(l []byte, off int64) int { return int(lineOffset(t, l) - off) })
		f.forge(t, s, 2, key, slices.Insert(lines, at, aLine(f.cfg.Topic, r)))
	}

	rep := runCheck(t, c)
	assertRefs(t, "mismatched", rep.Mismatched, ref(a.partition, a.offset), ref(a.partition, marker.offset))
	assertRefs(t, "lost", rep.Lost)
	assertRefs(t, "duplicated", rep.Duplicated)
	if len(rep.Problems) > 0 || !strings.Contains(rep.Mismatched[0].Why, "read_committed") || !strings.Contains(rep.Mismatched[1].Why, "marker") {
		t.Fatalf("want only the mismatches of the aborted record and the marker:\n%s", rep)
	}
}

// pieceCovering returns the key and lines of window w's piece of partition p that covers
// offset off.
func (f *fixture) pieceCovering(t *testing.T, s *store, w int, p int32, off int64) (string, [][]byte) {
	t.Helper()
	for _, o := range readManifest(t, s, f.windowDir(w)).objects() {
		if num(o["partition"]) == int64(p) && num(o["first"]) <= off && off < num(o["end"]) {
			key := o["key"].(string)
			return key, readLines(t, s, f.windowDir(w)+key)
		}
	}
	t.Fatalf("window %d has no piece of partition %d that covers %d", w, p, off)
	return "", nil
}

// A server the checker cannot reach is an error, not a report.
func (f *fixture) testUnreachable(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]Config{
		"s3":    withEndpoint(f.cfg, "http://127.0.0.1:1"),
		"kafka": withBrokers(f.cfg, "127.0.0.1:1"),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, err := Check(ctx, c)
		cancel()
		if err == nil {
			t.Errorf("%s unreachable: no error; report:\n%s", name, rep)
		}
		t.Logf("%s unreachable: %v", name, err)
	}
}

func withEndpoint(c Config, endpoint string) Config {
	c.Endpoint = endpoint
	return c
}

func withBrokers(c Config, brokers ...string) Config {
	c.Brokers = brokers
	return c
}
