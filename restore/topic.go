package restore

import (
	"fmt"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/audit"
	"github.com/karch-archive/karch/failure"
)

// sourceTopic is the one topic whose records a restore writes: topic, which the windows must
// archive, or else the only topic the windows hold records of ("" when they hold none). The
// records of several topics cannot share a target: the partition map, the partitions kept
// and the origins a rerun resumes by are all per source partition.
func sourceTopic(windows []audit.Stored, topic string) (string, error) {
	if topic != "" {
		return topic, audit.CheckTopic(windows, topic)
	}
	topics := audit.TopicsWithRecords(windows)
	switch len(topics) {
	case 0:
		return "", nil
	case 1:
		return topics[0], nil
	}
	return "", failure.Permanent(fmt.Errorf("the windows hold topics %s: pick one with --topic", strings.Join(topics, ", ")))
}

// checkIncarnations refuses windows that hold records of two topics of one name: one deleted,
// the other created after it under the same name. One manifest never holds both, but a range
// of windows may. Their records have the same origins (topic/partition/offset), so a rerun
// would take what it finds of the one in the target for the other's, and skip it.
func checkIncarnations(windows []audit.Stored, topic string) error {
	var earlier *archive.Manifest
	for _, w := range windows {
		if !holdsRecords(w.Manifest, topic) {
			continue
		}
		if earlier != nil && newIncarnation(earlier, w.Manifest, topic) {
			at := w.Manifest.Window.Start.Format(time.RFC3339)
			return failure.Permanent(fmt.Errorf("topic %s was deleted and created again, and the windows hold records of both (of the new one from the window of %s): their origins (topic/partition/offset) coincide, so restore them into two different topics, with --to %s and with --from %s",
				topic, at, at, at))
		}
		earlier = w.Manifest
	}
	return nil
}

// newIncarnation reports whether later holds records of another topic named topic than
// earlier does: their topic IDs differ, or later's manifest has a topic of that name ended,
// deleted or replaced, since earlier began (an ended topic stays in every later list).
func newIncarnation(earlier, later *archive.Manifest, topic string) bool {
	if a, b := activeID(earlier, topic), activeID(later, topic); a != "" && b != "" && a != b {
		return true
	}
	for _, t := range later.Topics {
		if t.Topic == topic && !t.Active() && t.EndReason != archive.EndUnmatched && t.Ended.After(earlier.Window.Start) {
			return true
		}
	}
	return false
}

// activeID is the topic ID of the topic m archives under the name topic; "" where the manifest
// does not say (written before karch recorded topics, or by brokers before Kafka 2.8).
func activeID(m *archive.Manifest, topic string) string {
	for _, t := range m.Topics {
		if t.Topic == topic && t.Active() {
			return t.ID
		}
	}
	return ""
}

func holdsRecords(m *archive.Manifest, topic string) bool {
	for _, o := range m.Objects {
		if o.Topic == topic && o.Records > 0 {
			return true
		}
	}
	return false
}

// restores reports whether the restore writes records of the planned partition p: of the
// source topic and, with Filter.Partition, of that partition.
func (o Options) restores(p archive.PartitionRange) bool {
	return (o.Filter.Topic == "" || p.Topic == o.Filter.Topic) && (o.Filter.Partition < 0 || p.Partition == o.Filter.Partition)
}
