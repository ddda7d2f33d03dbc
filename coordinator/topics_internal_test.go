package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
)

var (
	w1 = archive.Window{Start: time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)}
	w2 = archive.Window{Start: w1.End, End: w1.End.Add(time.Hour)}
)

func cluster(topics ...TopicInfo) map[string]TopicInfo {
	out := map[string]TopicInfo{}
	for _, t := range topics {
		out[t.Name] = t
	}
	return out
}

// A pattern never takes internal topics; a list does, by name.
func TestPatternLeavesInternalTopicsOut(t *testing.T) {
	cl := cluster(TopicInfo{Name: "__consumer_offsets", ID: "co", Internal: true}, TopicInfo{Name: "cdr-voice", ID: "v"})
	got, err := selectTopics(Config{TopicsPattern: ".*"}, cl, nil, nil, nil, w1)
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]archive.TopicState{{Topic: "cdr-voice", ID: "v"}}) {
		t.Fatalf("pattern .*: %+v, %v; want cdr-voice alone", got, err)
	}
	got, err = selectTopics(Config{Topics: []string{"__consumer_offsets"}, TopicsPattern: ".*"}, cl, nil, nil, nil, w1)
	if err != nil || len(got) != 2 {
		t.Fatalf("pattern .* and __consumer_offsets listed: %+v, %v; want both", got, err)
	}
}

// A topic that stops matching ends where the window before left it; when it matches again
// (same ID), the chain continues it from there, so nothing is archived twice or skipped. One
// of the same name but another ID is a new topic, and the ended one stays ended.
func TestEndedTopicResumesByID(t *testing.T) {
	cl := cluster(TopicInfo{Name: "cdr-voice", ID: "v1", Partitions: []int32{0}}, TopicInfo{Name: "cdr-sms", ID: "s1", Partitions: []int32{0}})
	prevEnds := map[archive.TopicPartition]int64{{Topic: "cdr-voice", Partition: 0}: 70, {Topic: "cdr-sms", Partition: 0}: 30}
	prevTopics := []archive.TopicState{{Topic: "cdr-sms", ID: "s1"}, {Topic: "cdr-voice", ID: "v1"}}
	ended, err := selectTopics(Config{Topic: "cdr-voice"}, cl, prevTopics, prevEnds, nil, w1)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]archive.TopicState{{Topic: "cdr-sms", ID: "s1", Ended: &w1.Start, EndReason: archive.EndUnmatched,
		Ends: []archive.PartitionEnd{{Partition: 0, End: 30}}}, {Topic: "cdr-voice", ID: "v1"}})
	if fmt.Sprint(ended) != want {
		t.Fatalf("sms no longer listed: %+v; want it ended at offset 30", ended)
	}
	chained, err := archive.Chained(prevEnds, prevTopics, ended)
	if err != nil || len(chained) != 1 || chained[archive.TopicPartition{Topic: "cdr-voice"}] != 70 {
		t.Fatalf("chained ends %v, %v; want voice's alone", chained, err)
	}

	voiceEnds := map[archive.TopicPartition]int64{{Topic: "cdr-voice", Partition: 0}: 90}
	again, err := selectTopics(Config{Topics: []string{"cdr-voice", "cdr-sms"}}, cl, ended, voiceEnds, nil, w2)
	if err != nil || fmt.Sprint(again) != fmt.Sprint([]archive.TopicState{{Topic: "cdr-sms", ID: "s1"}, {Topic: "cdr-voice", ID: "v1"}}) {
		t.Fatalf("sms listed again: %+v, %v; want both archived", again, err)
	}
	chained, err = archive.Chained(voiceEnds, ended, again)
	if err != nil || chained[archive.TopicPartition{Topic: "cdr-sms"}] != 30 {
		t.Fatalf("chained ends %v, %v; want sms to continue at 30", chained, err)
	}

	cl["cdr-sms"] = TopicInfo{Name: "cdr-sms", ID: "s2", Partitions: []int32{0}}
	fresh, err := selectTopics(Config{Topics: []string{"cdr-voice", "cdr-sms"}}, cl, ended, voiceEnds, nil, w2)
	if err != nil {
		t.Fatal(err)
	}
	chained, err = archive.Chained(voiceEnds, ended, fresh)
	if _, ok := chained[archive.TopicPartition{Topic: "cdr-sms"}]; err != nil || ok || len(fresh) != 3 {
		t.Fatalf("sms created again: topics %+v, chained %v, %v; want a new sms from its log start and the old one still ended", fresh, chained, err)
	}
}

// A window that ends a topic anywhere but where the window before left it breaks the chain.
func TestChainedRefusesAnEndElsewhere(t *testing.T) {
	prevEnds := map[archive.TopicPartition]int64{{Topic: "a", Partition: 0}: 10, {Topic: "a", Partition: 1}: 20}
	prevTopics := []archive.TopicState{{Topic: "a", ID: "x"}}
	for _, ends := range [][]archive.PartitionEnd{{{Partition: 0, End: 10}, {Partition: 1, End: 19}}, {{Partition: 0, End: 10}}} {
		topics := []archive.TopicState{{Topic: "a", ID: "x", Ended: &w1.Start, EndReason: archive.EndDeleted, Ends: ends}}
		if _, err := archive.Chained(prevEnds, prevTopics, topics); err == nil {
			t.Fatalf("ends %v accepted; the window before ended a at 10 and 20", ends)
		}
	}
}
