package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/internal/testenv"
)

// A value nested 10,000 deep, as deep as encoding/json allows, among 40 plain records, as
// key, value and header value: the window commits, verify --deep finds the archive clean,
// and every record reads back byte for byte. Before, such a value was embedded as is, the
// line was one level deeper than any decoder reads, and verify, cat and restore failed on
// the committed window for good.
func TestRunDeeplyNestedValues(t *testing.T) {
	p := newRunPipeline(t, 1, 40)
	deep := func(open, close string, n int) []byte {
		return []byte(strings.Repeat(open, n) + strings.Repeat(close, n))
	}
	extra := []kafka.Message{
		{Time: p.start.Add(time.Hour), Value: deep("[", "]", 10_000)},
		{Time: p.start.Add(time.Hour), Key: deep("[", "]", 9_999), Value: deep(`{"a":`, "0}", 9_999)},
		{Time: p.start.Add(time.Hour), Value: []byte(`{"deep header":1}`), Headers: []kafka.Header{{Key: "h", Value: deep("[", "]", 9_998)}}},
	}
	testenv.Produce(t, testenv.Kafka(t), p.topic, extra)
	p.produced = append(p.produced, extra...)
	p.ends = testenv.EndOffsets(t, testenv.Kafka(t), p.topic, 1)
	if cmd, out := p.run(t); exitCode(t, cmd) != 0 {
		t.Fatalf("karch run:\n%s", out)
	}
	p.assertCommitted(t)
	if cmd, out := p.command(t, "verify", "--deep"); exitCode(t, cmd) != 0 {
		t.Fatalf("karch verify --deep:\n%s", out)
	}
}
