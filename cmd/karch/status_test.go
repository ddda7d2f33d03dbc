package main

import (
	"strings"
	"testing"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
)

// karch status names each topic of the newest committed window, and an ended one as ended,
// with when and why.
func TestStatusShowsEndedTopics(t *testing.T) {
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	older := &archive.Manifest{Topics: []archive.TopicState{{Topic: "cdr-sms", ID: "AAAAAAAAAAAAAAAAAAAAAA"}}}
	newest := &archive.Manifest{Topics: []archive.TopicState{
		{Topic: "cdr-sms", ID: "AAAAAAAAAAAAAAAAAAAAAA", Ended: &at, EndReason: archive.EndDeleted, Ends: []archive.PartitionEnd{{Partition: 0, End: 40}}},
		{Topic: "cdr-voice", ID: "BBBBBBBBBBBBBBBBBBBBBB"},
	}}
	var out strings.Builder
	states := []coordinator.WindowState{{State: "committed", Manifest: older}, {State: "committed", Manifest: newest}, {State: "missing"}}
	if err := printTopics(&out, states); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cdr-sms    ended 2026-12-01 02:00Z (deleted)  AAAAAAAAAAAAAAAAAAAAAA", "cdr-voice  archived"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("status printed\n%s\nwant a line with %q", out.String(), want)
		}
	}
}
