package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/internal/testenv"
)

// produceLagging makes a topic of 2 partitions × 150 records over the three hours from t0,
// in order except every tenth, which is stamped a minute before its hour: a producer whose
// clock lags, so that the second and third windows hold late records.
func produceLagging(t *testing.T, addr string) string {
	t.Helper()
	topic := testenv.Topic(t, addr, 2)
	var msgs []kafka.Message
	for i := range 300 {
		ts := t0.Add(time.Duration(i) * 36 * time.Second)
		if h := ts.Sub(t0) / time.Hour; i%10 == 7 && h > 0 {
			ts = t0.Add(h*time.Hour - time.Minute) // partition 1: i is odd
		}
		msgs = append(msgs, kafka.Message{Partition: i % 2, Time: ts, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	testenv.Produce(t, addr, topic, msgs)
	return topic
}

// An object of the newest window whose late count is wrong in its manifest, its partition's
// entry and its receipt alike, so that every document agrees, passes the quick verify and
// is named by verify --deep, which counts the records stamped before the window's start.
// A manifest whose object disagrees with its receipt is named by the quick verify too.
func TestVerifyDeepChecksLateRecords(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := produceLagging(t, addr)
	for _, tc := range []struct {
		name    string
		receipt bool // the receipt is tampered as the manifest is, so only --deep can tell
	}{{"manifest and receipt agree", true}, {"manifest alone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			a := archiveTopic(t, addr, topic, localStore(t), 3)
			if code, out := a.karch(t, "verify", "--deep"); code != 0 || !strings.Contains(out, ", 0 problems") {
				t.Fatalf("karch verify --deep before the edit: exit %d\n%s", code, out)
			}
			o := tamperLate(t, a, 2, tc.receipt)
			code, out := a.karch(t, "verify")
			t.Logf("karch verify:\n%s", out)
			quick := fmt.Sprintf("%d records (%d late)", o.Records, o.Late)
			switch {
			case tc.receipt && (code != 0 || !strings.Contains(out, ", 0 problems")):
				t.Fatalf("karch verify after a consistent late edit: exit %d, want 0 (only --deep reads the records)\n%s", code, out)
			case !tc.receipt && (code != 3 || !strings.Contains(out, quick)):
				t.Fatalf("karch verify after a late edit of the manifest alone: exit %d, want 3 naming %q\n%s", code, quick, out)
			}
			code, out = a.karch(t, "verify", "--deep")
			t.Logf("karch verify --deep:\n%s", out)
			if want := fmt.Sprintf("%s: holds %d late records", o.Key, o.Late+1); code != 3 || !strings.Contains(out, want) {
				t.Fatalf("karch verify --deep: exit %d, want 3 and a line naming %q\n%s", code, want, out)
			}
		})
	}
}

// tamperLate lowers by one the late count of window w's first object that holds a late
// record, in its manifest entry, its partition's and the window's, and in its receipt when receipt is
// set, each re-encoded as karch writes it. It returns the object as now listed.
func tamperLate(t *testing.T, a *archived, w int, receipt bool) archive.ManifestObject {
	t.Helper()
	var m archive.Manifest
	readJSON(t, a.path(w, archive.ManifestName), &m)
	i := 0
	for m.Objects[i].Late == 0 {
		i++
	}
	o := &m.Objects[i]
	o.Late--
	*m.Late--
	for j := range m.Partitions {
		if m.Partitions[j].Topic == o.Topic && m.Partitions[j].Partition == o.Partition {
			m.Partitions[j].Late--
		}
	}
	writeJSON(t, a.path(w, archive.ManifestName), &m)
	if !receipt {
		return *o
	}
	files, err := filepath.Glob(a.path(w, "receipts/shard-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("receipts of window %d: %v, %v", w, files, err)
	}
	for _, f := range files {
		var r archive.Receipt
		readJSON(t, f, &r)
		for j := range r.Pieces {
			if r.Pieces[j].Key == o.Key {
				r.Pieces[j].Late--
				writeJSON(t, f, &r)
				return *o
			}
		}
	}
	t.Fatalf("object %s is in no receipt of window %d", o.Key, w)
	return *o
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
}

// writeJSON writes v in place as karch writes its documents: indented, ending in a newline.
func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, path, func([]byte) []byte { return append(data, '\n') })
}
