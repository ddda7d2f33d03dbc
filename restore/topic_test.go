package restore

import (
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/failure"
)

var h0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// hour builds the committed window that starts at h0 plus h hours, with the topics' states
// and one object of records records per topic.
func hour(h int, states []archive.TopicState, records map[string]int64) audit.Stored {
	start := h0.Add(time.Duration(h) * time.Hour)
	m := &archive.Manifest{Window: archive.Window{Start: start, End: start.Add(time.Hour)}, Topics: states}
	for _, topic := range []string{"cdr-sms", "cdr-voice"} {
		n, ok := records[topic]
		if !ok {
			continue
		}
		m.Partitions = append(m.Partitions, archive.PartitionRange{Topic: topic, First: 0, End: n, Records: n})
		m.Objects = append(m.Objects, archive.ManifestObject{Topic: topic, Key: archive.PieceKey(topic, 0, 0), End: n, Records: n})
	}
	return audit.Stored{Manifest: m}
}

func TestSourceTopic(t *testing.T) {
	both := []audit.Stored{hour(0, nil, map[string]int64{"cdr-sms": 5}), hour(1, nil, map[string]int64{"cdr-sms": 3, "cdr-voice": 4})}
	smsOnly := []audit.Stored{hour(0, nil, map[string]int64{"cdr-sms": 5}), hour(1, nil, map[string]int64{"cdr-sms": 3, "cdr-voice": 0})}
	for _, tc := range []struct {
		name    string
		windows []audit.Stored
		topic   string
		want    string
		err     string
	}{
		{"records of two topics, one picked", both, "cdr-voice", "cdr-voice", ""},
		{"records of two topics, none picked", both, "", "", "the windows hold topics cdr-sms, cdr-voice: pick one with --topic"},
		{"a topic the windows do not archive", both, "cdr-fax", "", "topic cdr-fax: the windows archive no topic of that name (only cdr-sms, cdr-voice)"},
		{"one topic with records, the other planned empty", smsOnly, "", "cdr-sms", ""},
		{"the empty topic picked", smsOnly, "cdr-voice", "cdr-voice", ""},
		{"no records at all", []audit.Stored{hour(0, nil, map[string]int64{"cdr-sms": 0})}, "", "", ""},
	} {
		got, err := sourceTopic(tc.windows, tc.topic)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err || !failure.IsPermanent(err)):
			t.Errorf("%s: error %v, want the permanent %q", tc.name, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%s: topic %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A topic deleted and created again under its name between two windows of the range is
// refused, whether the manifests tell the two apart by topic ID or, from brokers without
// IDs, by the old one's end; a topic that stopped matching and matches again is the same.
func TestCheckIncarnations(t *testing.T) {
	ended := func(h int, id, reason string) archive.TopicState {
		at := h0.Add(time.Duration(h) * time.Hour)
		return archive.TopicState{Topic: "cdr-sms", ID: id, Ended: &at, EndReason: reason}
	}
	active := func(id string) archive.TopicState { return archive.TopicState{Topic: "cdr-sms", ID: id} }
	sms := map[string]int64{"cdr-sms": 5}
	for _, tc := range []struct {
		name    string
		windows []audit.Stored
		refused bool
	}{
		{"one topic throughout", []audit.Stored{hour(0, []archive.TopicState{active("A")}, sms), hour(1, []archive.TopicState{active("A")}, sms)}, false},
		{"created again: another ID", []audit.Stored{
			hour(0, []archive.TopicState{active("A")}, sms),
			hour(1, []archive.TopicState{active("B"), ended(1, "A", archive.EndRecreated)}, sms)}, true},
		{"deleted, a window without it, created again", []audit.Stored{
			hour(0, []archive.TopicState{active("A")}, sms),
			hour(1, []archive.TopicState{ended(1, "A", archive.EndDeleted)}, nil),
			hour(2, []archive.TopicState{active("B"), ended(1, "A", archive.EndDeleted)}, sms)}, true},
		{"deleted and created again, no IDs", []audit.Stored{
			hour(0, []archive.TopicState{active("")}, sms),
			hour(2, []archive.TopicState{active(""), ended(1, "", archive.EndDeleted)}, sms)}, true},
		{"the old one only, its end after the range", []audit.Stored{hour(0, []archive.TopicState{active("A")}, sms)}, false},
		{"the new one only, the old one's end before the range", []audit.Stored{
			hour(3, []archive.TopicState{active("B"), ended(1, "A", archive.EndRecreated)}, sms),
			hour(4, []archive.TopicState{active("B"), ended(1, "A", archive.EndRecreated)}, sms)}, false},
		{"unmatched, then matched again", []audit.Stored{
			hour(0, []archive.TopicState{active("A")}, sms),
			hour(1, []archive.TopicState{ended(1, "A", archive.EndUnmatched)}, nil),
			hour(2, []archive.TopicState{active("A")}, sms)}, false},
		{"manifests without topics", []audit.Stored{hour(0, nil, sms), hour(1, nil, sms)}, false},
	} {
		err := checkIncarnations(tc.windows, "cdr-sms")
		switch {
		case !tc.refused && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.refused && (!failure.IsPermanent(err) || !strings.Contains(err.Error(), "topic cdr-sms was deleted and created again")):
			t.Errorf("%s: %v, want a permanent refusal naming the topic", tc.name, err)
		}
	}
}

func TestOptionsRestores(t *testing.T) {
	voice1 := archive.PartitionRange{Topic: "cdr-voice", Partition: 1}
	for _, tc := range []struct {
		f    audit.Filter
		want bool
	}{
		{audit.Filter{Partition: -1}, true},
		{audit.Filter{Topic: "cdr-voice", Partition: -1}, true},
		{audit.Filter{Topic: "cdr-voice", Partition: 1}, true},
		{audit.Filter{Topic: "cdr-voice", Partition: 0}, false},
		{audit.Filter{Topic: "cdr-sms", Partition: 1}, false},
	} {
		if got := (Options{Filter: tc.f}).restores(voice1); got != tc.want {
			t.Errorf("restores(%+v) with %+v = %v, want %v", voice1, tc.f, got, tc.want)
		}
	}
}
