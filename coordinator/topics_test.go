package coordinator_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/shard"
	"github.com/karch-archive/karch/tests/chaos/checker"
)

// produceAt produces n records to each partition, stamped evenly over [from, to), with a
// value that names the topic's generation, so that an archived record tells which
// incarnation of a name it came from.
func produceAt(t *testing.T, addr, topic string, gen, partitions, n int, from, to time.Time) []kafka.Message {
	t.Helper()
	var msgs []kafka.Message
	for p := range partitions {
		for i := range n {
			ts := from.Add(to.Sub(from) * time.Duration(i) / time.Duration(n)).Truncate(time.Millisecond)
			msgs = append(msgs, kafka.Message{Partition: p, Time: ts, Key: keyOf(i), Headers: headersOf(i),
				Value: fmt.Appendf(nil, `{"topic":%q,"gen":%d,"p":%d,"n":%d,"at":%q}`, topic, gen, p, i, ts.Format(time.RFC3339Nano))})
		}
	}
	testenv.Produce(t, addr, topic, msgs)
	return msgs
}

// A pipeline of topics by pattern: three topics match at its first window; then a fourth
// is created (its older records join the next window, counted late), one is deleted and one
// is deleted and created again. Every record of every incarnation is archived exactly once,
// each topic that still exists matches Kafka offset by offset, the ended topics are in every
// later manifest with where they stopped, and verify --deep finds nothing.
func TestManyTopicsByPattern(t *testing.T) {
	addr := testenv.Kafka(t)
	base := fmt.Sprintf("mt%d", time.Now().UnixNano())
	voice, sms, data, mms := base+".voice", base+".sms", base+".data", base+".mms"
	testenv.CreateTopic(t, addr, voice, 2)
	testenv.CreateTopic(t, addr, sms, 1)
	testenv.CreateTopic(t, addr, data, 2)
	testenv.CreateTopic(t, addr, base+".other", 1) // not matched: never archived
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	var produced []kafka.Message
	for _, tp := range []struct {
		name  string
		parts int
	}{{voice, 2}, {sms, 1}, {data, 2}, {base + ".other", 1}} {
		msgs := produceAt(t, addr, tp.name, 0, tp.parts, 40, h(0), h(1))
		if tp.name != base+".other" {
			produced = append(produced, msgs...)
		}
	}
	p := newPipeline(t, "", 0)
	p.cfg.TopicsPattern = strings.ReplaceAll(base, ".", `\.`) + `\.(voice|sms|data|mms)`
	if res, err := p.runAt(h(1).Add(2 * time.Minute)); err != nil || len(res) != 1 {
		t.Fatalf("first window: %d committed, %v", len(res), err)
	}

	testenv.CreateTopic(t, addr, mms, 1)
	produced = append(produced, produceAt(t, addr, mms, 0, 1, 10, h(0), h(1))...) // late in window 1
	produced = append(produced, produceAt(t, addr, mms, 1, 1, 10, h(1), h(2))...)
	testenv.DeleteTopic(t, addr, sms)
	recreate(t, addr, data, 2)
	produced = append(produced, produceAt(t, addr, data, 1, 2, 15, h(1), h(2))...)
	produced = append(produced, produceAt(t, addr, voice, 1, 2, 20, h(1), h(3))...)
	if res, err := p.runAt(h(3).Add(2 * time.Minute)); err != nil || len(res) != 2 {
		t.Fatalf("windows 1 and 2: %d committed, %v", len(res), err)
	}

	ms := manifests(t, p)
	if len(ms) != 3 {
		t.Fatalf("%d manifests, want 3", len(ms))
	}
	assertAsProducedByTopic(t, p, ms, produced)
	for _, tp := range []struct {
		name  string
		parts int
		from  int // the first window of the topic's current incarnation
	}{{voice, 2, 0}, {data, 2, 1}, {mms, 1, 1}} {
		assertMatchesKafka(t, p, addr, ms[tp.from:], tp.name, tp.parts)
		// And by the chaos scenarios' checker, which shares no code with karch.
		rep, err := checker.Check(context.Background(), checker.Config{Endpoint: p.s3.Endpoint, Bucket: p.s3.Bucket, Prefix: p.s3.Prefix,
			AccessKey: p.s3.AccessKeyID, SecretKey: p.s3.SecretAccessKey, Pipeline: p.cfg.Pipeline, Brokers: p.cfg.Brokers,
			Topic: tp.name, Shared: true, Start: h(tp.from), Until: h(3)})
		if err != nil || !rep.OK() || rep.Records == 0 {
			t.Fatalf("the checker on topic %s: %v\n%s", tp.name, err, rep)
		}
	}
	ended := func(m *archive.Manifest) map[string]archive.TopicState {
		out := map[string]archive.TopicState{}
		for _, ts := range m.Topics {
			if !ts.Active() {
				out[ts.Topic] = ts
			}
		}
		return out
	}
	if got := topicNames(ms[0], true); !slices.Equal(got, []string{data, sms, voice}) {
		t.Fatalf("window 0 archives topics %v; want %v", got, []string{data, sms, voice})
	}
	for i, m := range ms[1:] {
		if got := topicNames(m, true); !slices.Equal(got, []string{data, mms, voice}) {
			t.Fatalf("window %d archives topics %v; want data, mms, voice", i+1, got)
		}
		e := ended(m)
		if s := e[sms]; s.EndReason != archive.EndDeleted || !s.Ended.Equal(h(1)) || !slices.Equal(s.Ends, []archive.PartitionEnd{{Partition: 0, End: 40}}) {
			t.Fatalf("window %d: sms ended %+v; want deleted at %s, partition 0 at offset 40", i+1, s, h(1))
		}
		if d := e[data]; d.EndReason != archive.EndRecreated || d.ID == "" || d.ID == idOf(m, data) || len(d.Ends) != 2 {
			t.Fatalf("window %d: the first data topic ended %+v; want recreated, with its own ID and both partitions' ends", i+1, d)
		}
	}
	for _, r := range ms[1].Partitions {
		if r.Topic == mms && r.Late != 10 {
			t.Fatalf("window 1: mms/%d has %d late records; want the 10 stamped in the hour before", r.Partition, r.Late)
		}
	}
	if probs := verifyProblemsWith(t, p, audit.Options{Deep: true, Kafka: kafkaIDs{coordinator.NewKafkaOffsets(p.cfg.Brokers, shard.KafkaOptions{ClientID: "karch-test"})}}); len(probs) != 0 {
		t.Fatalf("verify --deep --against-kafka: %q; want none", probs)
	}
}

// kafkaIDs is the source cluster as verify --against-kafka reads it.
type kafkaIDs struct{ *coordinator.KafkaOffsets }

func (k kafkaIDs) TopicIDs(ctx context.Context) (map[string]string, error) {
	topics, err := k.Topics(ctx)
	out := map[string]string{}
	for name, t := range topics {
		out[name] = t.ID
	}
	return out, err
}

// assertAsProducedByTopic is assertAsProduced where records of several topics are archived:
// a value names its topic, and the object it is in must be of that topic.
func assertAsProducedByTopic(t *testing.T, p *pipeline, ms []*archive.Manifest, produced []kafka.Message) {
	t.Helper()
	assertAsProduced(t, p, ms, produced)
	for _, m := range ms {
		dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
		for _, o := range m.Objects {
			for _, r := range decode(t, p.deps.Bucket, dir+o.Key) {
				if !strings.Contains(string(r.Value), fmt.Sprintf(`"topic":%q`, o.Topic)) || r.Topic != o.Topic {
					t.Fatalf("object %s of topic %s holds a record of topic %s: %s", o.Key, o.Topic, r.Topic, r.Value)
				}
			}
		}
	}
}

// assertMatchesKafka checks topic's archive in the windows ms against Kafka, offset by
// offset: every offset Kafka holds is archived once, with Kafka's key, value and timestamp.
func assertMatchesKafka(t *testing.T, p *pipeline, addr string, ms []*archive.Manifest, topic string, partitions int) {
	t.Helper()
	ends := testenv.EndOffsets(t, addr, topic, partitions)
	for part := range partitions {
		archived := map[int64]archive.Record{}
		for _, m := range ms {
			dir := archive.WindowDir(m.Pipeline, m.Window.Start, m.Window.End.Sub(m.Window.Start))
			for _, o := range m.Objects {
				if o.Topic != topic || o.Partition != int32(part) {
					continue
				}
				for _, r := range decode(t, p.deps.Bucket, dir+o.Key) {
					if _, dup := archived[r.Offset]; dup {
						t.Fatalf("%s/%d offset %d is archived twice", topic, part, r.Offset)
					}
					archived[r.Offset] = r
				}
			}
		}
		kafkaRecs := testenv.Consume(t, addr, topic, part, 0, ends[part])
		if len(kafkaRecs) != len(archived) {
			t.Fatalf("%s/%d: Kafka holds %d records, the archive %d", topic, part, len(kafkaRecs), len(archived))
		}
		for _, k := range kafkaRecs {
			r, ok := archived[k.Offset]
			if !ok || !sameBytes(r.Value, k.Value) || !sameBytes(r.Key, k.Key) || r.Timestamp.UnixMilli() != k.Time.UnixMilli() {
				t.Fatalf("%s/%d offset %d: archived %+v (archived: %v); Kafka has key %q value %q at %s", topic, part, k.Offset, r, ok, k.Key, k.Value, k.Time)
			}
		}
	}
}

func topicNames(m *archive.Manifest, active bool) []string {
	var out []string
	for _, ts := range m.Topics {
		if ts.Active() == active {
			out = append(out, ts.Topic)
		}
	}
	return out
}

func idOf(m *archive.Manifest, topic string) string {
	for _, ts := range m.Topics {
		if ts.Active() && ts.Topic == topic {
			return ts.ID
		}
	}
	return ""
}

// A listed topic that does not exist, and a pattern that matches nothing, fail a pipeline's
// first window for good, naming the topic or the setting: a typo would otherwise archive
// nothing, successfully, for ever.
func TestMissingTopicsArePermanent(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := testenv.Topic(t, addr, 1)
	p := newPipeline(t, "", 0)
	p.cfg.Topics = []string{topic, topic + "-typo"}
	_, err := p.runAt(t0.Add(time.Hour + 2*time.Minute))
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "topic "+topic+"-typo does not exist") {
		t.Fatalf("a listed topic that does not exist: %v", err)
	}
	p.cfg.Topics, p.cfg.TopicsPattern = nil, topic+`-nothing\..*`
	_, err = p.runAt(t0.Add(time.Hour + 2*time.Minute))
	if !failure.IsPermanent(err) || !strings.Contains(err.Error(), "topics_pattern") {
		t.Fatalf("a pattern that matches no topic: %v", err)
	}
}
