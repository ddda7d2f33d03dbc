package audit

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/restore"
)

// twoTopics has the coordinator archive window t0 of a pipeline of two topics: voice with
// the edge cases (nulls, binary and duplicate headers, transactions), sms with 2 × 50
// records. The pipeline's topics come from the environment, so that --topic is cat's and
// restore's own.
func twoTopics(t *testing.T) (a *archived, voice, sms string) {
	t.Helper()
	addr := testenv.Kafka(t)
	voice, sms = testenv.Topic(t, addr, 2), produceHours(t, addr)
	edgeCases(t, addr, voice)
	a = archiveTopic(t, addr, voice, localStore(t), 1, func(c *coordinator.Config) { c.Topic, c.Topics = "", []string{voice, sms} })
	if got := audit.TopicsWithRecords([]audit.Stored{{Manifest: a.ms[0]}}); !slices.Equal(got, slices.Sorted(slices.Values([]string{voice, sms}))) {
		t.Fatalf("the window holds records of %q, want both %s and %s", got, voice, sms)
	}
	a.topic, a.env = "", append(a.env, "KARCH_TOPICS="+voice+","+sms) // a.args passes --topic "": every topic
	return a, voice, sms
}

// A restore of one topic of a two-topic window writes that topic's records and no other's,
// each byte for byte (key, value and their null-ness, headers in order, timestamp) at its
// source partition and in its source offset order; without --topic it is refused, naming
// both, and a rerun finds every record of the topic there already.
func TestRestoreOneTopicOfTwo(t *testing.T) {
	a, voice, sms := twoTopics(t)
	dst := testenv.Topic(t, a.brokers, 2)
	code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst)
	both := strings.Join(slices.Sorted(slices.Values([]string{voice, sms})), ", ")
	if code != 3 || !strings.Contains(out, "the windows hold topics "+both+": pick one with --topic") {
		t.Fatalf("restore of two topics without --topic: exit %d, want 3 naming them\n%s", code, out)
	}
	if code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst, "--topic", voice+"-not"); code != 3 || !strings.Contains(out, "topic "+voice+"-not: ") {
		t.Fatalf("restore --topic of a topic the window does not archive: exit %d, want 3 naming it\n%s", code, out)
	}
	if n := originsIn(t, a.brokers, dst); n != 0 {
		t.Fatalf("%d records written by refused restores", n)
	}
	if code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst, "--topic", voice); code != 0 {
		t.Fatalf("restore --topic %s: exit %d\n%s", voice, code, out)
	}
	want := archivedOf(t, a, voice)
	got := restoredIn(t, a.brokers, dst)
	if len(got) != len(want) || len(want) < 200 {
		t.Fatalf("%d records restored, the window holds %d of %s", len(got), len(want), voice)
	}
	for i, w := range want {
		if g := got[i]; !reflect.DeepEqual(g, w) {
			t.Fatalf("restored record %d:\n got %+v\nwant %+v", i, brief(g), brief(w))
		}
	}
	code, out = a.karch(t, "restore", "--window", window(0), "--to-topic", dst, "--topic", voice)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("restored 0 records to %s (partition:records ); %d were there already", dst, len(want))) {
		t.Fatalf("rerun of restore --topic %s: exit %d, want 0 records written and %d there\n%s", voice, code, len(want), out)
	}
}

// --translate-group of a two-topic pipeline needs --topic, and with it translates that
// topic's group offsets.
func TestRestoreTranslateGroupOfOneTopic(t *testing.T) {
	a, _, sms := twoTopics(t)
	dst := testenv.Topic(t, a.brokers, 2)
	if code, out := a.karch(t, "restore", "--window", window(0), "--to-topic", dst, "--topic", sms); code != 0 {
		t.Fatalf("restore --topic %s: exit %d\n%s", sms, code, out)
	}
	group := dst + "-group"
	if err := restore.CommitGroup(context.Background(), []string{a.brokers}, group, sms, map[int32]int64{0: 10, 1: 50}); err != nil {
		t.Fatal(err)
	}
	if code, out := a.karch(t, "restore", "--translate-group", group, "--to-topic", dst); code != 3 || !strings.Contains(out, "--topic") {
		t.Fatalf("translate group of a two-topic pipeline without --topic: exit %d, want 3 asking for it\n%s", code, out)
	}
	code, out := a.karch(t, "restore", "--translate-group", group, "--to-topic", dst, "--topic", sms, "--log-level", "error")
	if code != 0 || !strings.Contains(out, dst+"\t0\t10\n") || !strings.Contains(out, dst+"\t1\t50\n") {
		t.Fatalf("translate group --topic %s: exit %d, want 0:10 1:50\n%s", sms, code, out)
	}
}

// karch cat and restore --to-stdout print every topic of the window, topic by topic,
// partition by partition, in offset order; --topic prints one.
func TestCatByTopic(t *testing.T) {
	a, voice, sms := twoTopics(t)
	all := slices.SortedFunc(slices.Values(append(archivedOf(t, a, voice), archivedOf(t, a, sms)...)), func(x, y archive.Record) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition), cmp.Compare(x.Offset, y.Offset))
	})
	for _, tc := range []struct {
		args  []string
		topic string
	}{
		{[]string{"cat", "--window", window(0)}, ""},
		{[]string{"cat", "--window", window(0), "--topic", sms}, sms},
		{[]string{"restore", "--window", window(0), "--to-stdout"}, ""},
		{[]string{"restore", "--window", window(0), "--to-stdout", "--topic", voice}, voice},
	} {
		code, out := a.karch(t, append(tc.args, "--log-level", "error")...)
		if code != 0 {
			t.Fatalf("karch %v: exit %d\n%s", tc.args, code, out)
		}
		want := slices.DeleteFunc(slices.Clone(all), func(r archive.Record) bool { return tc.topic != "" && r.Topic != tc.topic })
		if got := decodeLines(t, out); !reflect.DeepEqual(got, want) {
			t.Fatalf("karch %v: %d records, want the %d of %q in order", tc.args, len(got), len(want), tc.topic)
		}
	}
	if code, out := a.karch(t, "cat", "--window", window(0), "--topic", sms+"-not"); code != 3 || !strings.Contains(out, "topic "+sms+"-not: ") {
		t.Fatalf("cat --topic of a topic the window does not archive: exit %d, want 3 naming it\n%s", code, out)
	}
}

// archivedOf is the records of topic that a's windows hold, by partition and offset.
func archivedOf(t *testing.T, a *archived, topic string) []archive.Record {
	t.Helper()
	var out []archive.Record
	for w, m := range a.ms {
		for _, o := range m.Objects {
			if o.Topic == topic {
				out = append(out, decodePiece(t, testenv.ReadObject(t, a.bucket, archive.WindowDir(a.pipeline, t0.Add(time.Duration(w)*time.Hour), time.Hour)+o.Key))...)
			}
		}
	}
	return out
}

// restoredIn reads topic through with franz-go and gives each record as it was archived:
// the topic, partition and offset of its origin header, which is removed.
func restoredIn(t *testing.T, addr, topic string) []archive.Record {
	t.Helper()
	var out []archive.Record
	reader := audit.NewFranzReader([]string{addr})
	for p, end := range testenv.EndOffsets(t, addr, topic, 2) {
		err := reader.ReadRange(context.Background(), topic, int32(p), 0, end, func(r *archive.Record) error {
			last := len(r.Headers) - 1
			if last < 0 || r.Headers[last].Key != restore.OriginHeader {
				return fmt.Errorf("record %d/%d has no origin header last: %+v", p, r.Offset, r.Headers)
			}
			src, off, err := restore.ParseOrigin(r.Headers[last].Value)
			if err != nil {
				return err
			}
			if src.Partition != r.Partition {
				return fmt.Errorf("record %s/%d@%d restored to partition %d", src.Topic, src.Partition, off, r.Partition)
			}
			r.Topic, r.Offset, r.Headers = src.Topic, off, r.Headers[:last]
			if len(r.Headers) == 0 {
				r.Headers = nil
			}
			out = append(out, *r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func decodeLines(t *testing.T, out string) []archive.Record {
	t.Helper()
	var recs []archive.Record
	for _, line := range strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		r, err := archive.DecodeLine([]byte(line))
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}
