package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// PlanFormat is the format tag of plan.json. A change of its meaning is a new version.
const PlanFormat = "karch.plan/v1"

// Plan is a window's immutable work list: which offset ranges each shard archives and where.
// Once created it is never rewritten; every later step is derived from it.
type Plan struct {
	Format   string `json:"format"`
	Pipeline string `json:"pipeline"`
	Window   Window `json:"window"`
	RunID    string `json:"run_id"`
	// Brokers are the Kafka bootstrap addresses the shards read from.
	Brokers []string `json:"brokers"`
	// Ranges are the window's offsets, one per partition, empty ones included; the
	// pieces of all shards tile the non-empty ones.
	Ranges []Range     `json:"ranges,omitempty"`
	Shards []ShardPlan `json:"shards"`
	// Gaps are offsets that this window's chain skips because Kafka no longer holds them,
	// planned only with the operator's explicit consent (accept_data_loss); the manifest
	// repeats them so that the audit trail shows the loss.
	Gaps []Gap `json:"gaps,omitempty"`
	// Formats are the formats each piece is stored in; absent means JSON Lines alone. With
	// FormatParquet, every piece has a Parquet object too (ParquetKey), with the typed
	// ValueColumns.
	Formats      []string      `json:"formats,omitempty"`
	ValueColumns []ValueColumn `json:"value_columns,omitempty"`
	// Topics are the chain's topics as of this window: each topic the window archives, by
	// name and Kafka topic ID, and each topic the chain has ended, with where it ended. The
	// manifest repeats them. Absent in plans written before karch recorded them.
	Topics []TopicState `json:"topics,omitempty"`
}

// TopicState is one topic of a chain. A topic is one incarnation of a name: a topic deleted
// and created again under its name has another ID, and is another topic.
type TopicState struct {
	Topic string `json:"topic"`
	// ID is Kafka's topic ID (a UUID); empty where Kafka did not say (brokers before 2.8).
	ID string `json:"id,omitempty"`
	// Ended, when set, is the start of the window from which the topic is no longer
	// archived, for EndReason; Ends are its partitions' end offsets in the last window
	// that archived it. An ended topic stays in every later window's list, so that one that
	// matches again continues from Ends rather than being archived twice.
	Ended     *time.Time     `json:"ended,omitempty"`
	EndReason string         `json:"end_reason,omitempty"`
	Ends      []PartitionEnd `json:"ends,omitempty"`
}

// PartitionEnd is where one partition of an ended topic stopped.
type PartitionEnd struct {
	Partition int32 `json:"partition"`
	End       int64 `json:"end"`
}

// The reasons a topic ends.
const (
	// EndDeleted: Kafka no longer has a topic of that name.
	EndDeleted = "deleted"
	// EndRecreated: Kafka has a topic of that name with another ID.
	EndRecreated = "recreated"
	// EndUnmatched: the topic exists, but the pipeline's topics and pattern no longer name it.
	EndUnmatched = "unmatched"
)

// Active reports whether the window archives the topic.
func (t TopicState) Active() bool { return t.Ended == nil }

// Chained returns the end offsets that a window must continue, partition by partition: the
// window before's (prevEnds, prevTopics), less the partitions of the topics that this
// window ends (topics, by ID), plus the ends of ended topics that it archives again (same
// ID). A topic this window ends must end where the window before left it.
func Chained(prevEnds map[TopicPartition]int64, prevTopics, topics []TopicState) (map[TopicPartition]int64, error) {
	out := make(map[TopicPartition]int64, len(prevEnds))
	for tp, end := range prevEnds {
		out[tp] = end
	}
	prevActive := map[string]string{} // name -> ID of the topics the window before archived
	prevEnded := map[[2]string]bool{}
	for _, t := range prevTopics {
		if t.Active() {
			prevActive[t.Topic] = t.ID
		} else {
			prevEnded[[2]string{t.Topic, t.ID}] = true
		}
	}
	for _, t := range topics {
		id, wasActive := prevActive[t.Topic]
		switch {
		case !t.Active() && wasActive && id == t.ID:
			for _, e := range t.Ends {
				tp := TopicPartition{t.Topic, e.Partition}
				if end, ok := out[tp]; !ok || end != e.End {
					return nil, fmt.Errorf("topic %s ends partition %d at offset %d, but the window before ended it at %d", t.Topic, e.Partition, e.End, end)
				}
				delete(out, tp)
			}
			for tp := range out {
				if tp.Topic == t.Topic {
					return nil, fmt.Errorf("topic %s ends without partition %d, which the window before archived up to offset %d", t.Topic, tp.Partition, out[tp])
				}
			}
		case t.Active() && t.ID != "" && prevEnded[[2]string{t.Topic, t.ID}]:
			for _, p := range prevTopics {
				if !p.Active() && p.Topic == t.Topic && p.ID == t.ID {
					for _, e := range p.Ends {
						out[TopicPartition{t.Topic, e.Partition}] = e.End
					}
				}
			}
		}
	}
	return out, nil
}

// Parquet reports whether the plan's pieces have a Parquet object each.
func (p *Plan) Parquet() bool { return slices.Contains(p.Formats, FormatParquet) }

// Gap is a declared hole in the chain: the records of partition Partition with offsets in
// [First, End) are in no window.
type Gap struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
	// Reason says why: GapRetention.
	Reason string `json:"reason"`
}

// GapRetention is the reason of a gap that Kafka's retention opened: the log start offset
// moved past the chain's end before the window was archived.
const GapRetention = "retention"

// Range is one partition's offsets [First, End).
type Range struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
}

// Window is a UTC interval [Start, End).
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// ShardPlan is the work of one completion index.
type ShardPlan struct {
	Index  int     `json:"index"`
	Pieces []Piece `json:"pieces"`
}

// Piece is one data object: the records of partition Partition with offsets in [First, End).
// Key is relative to the window's folder.
type Piece struct {
	Key       string `json:"key"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	First     int64  `json:"first"`
	End       int64  `json:"end"`
}

// ErrInvalidPlan is returned (wrapped) by DecodePlan and Plan.Validate.
var ErrInvalidPlan = errors.New("archive: invalid plan")

// DecodePlan decodes and validates a plan. Unknown fields are errors: a plan written by a
// newer karch must not be half understood.
func DecodePlan(data []byte) (*Plan, error) {
	var p Plan
	if err := decodeStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPlan, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks what every consumer of a plan relies on.
func (p *Plan) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPlan, fmt.Sprintf(format, a...))
	}
	switch {
	case p.Format != PlanFormat:
		return bad("format %q, want %q", p.Format, PlanFormat)
	case p.Pipeline == "":
		return bad("no pipeline")
	case len(p.Brokers) == 0:
		return bad("no brokers")
	case !p.Window.End.After(p.Window.Start):
		return bad("window end %s is not after start %s", p.Window.End, p.Window.Start)
	}
	if p.Formats != nil {
		if err := CheckFormats(p.Formats); err != nil {
			return bad("formats: %v", err)
		}
	}
	if len(p.ValueColumns) > 0 && !p.Parquet() {
		return bad("value_columns without the parquet format")
	}
	if err := CheckValueColumns(p.ValueColumns); err != nil {
		return bad("value_columns: %v", err)
	}
	for _, r := range p.Ranges {
		if r.Topic == "" || r.Partition < 0 || r.First < 0 || r.End < r.First {
			return bad("range %+v", r)
		}
	}
	if err := checkTopics(p.Topics); err != nil {
		return bad("topics: %v", err)
	}
	for _, g := range p.Gaps {
		if g.Topic == "" || g.Partition < 0 || g.First < 0 || g.End <= g.First || g.Reason == "" {
			return bad("gap %+v", g)
		}
	}
	for i, s := range p.Shards {
		if s.Index != i {
			return bad("shard %d has index %d", i, s.Index)
		}
		for _, pc := range s.Pieces {
			if pc.Topic == "" || pc.Partition < 0 || pc.First < 0 || pc.End < pc.First {
				return bad("shard %d: piece %+v", i, pc)
			}
			if pc.Key != PieceKey(pc.Topic, pc.Partition, pc.First) {
				return bad("shard %d: piece key %q, want %q", i, pc.Key, PieceKey(pc.Topic, pc.Partition, pc.First))
			}
		}
	}
	return nil
}

// checkTopics insists on one active topic per name, and on an ended topic's reason.
func checkTopics(topics []TopicState) error {
	active := map[string]bool{}
	for _, t := range topics {
		switch {
		case t.Topic == "":
			return errors.New("a topic without a name")
		case t.Active() && active[t.Topic]:
			return fmt.Errorf("topic %s is archived twice", t.Topic)
		case t.Active() && (t.EndReason != "" || len(t.Ends) > 0):
			return fmt.Errorf("topic %s has an end but no ended time", t.Topic)
		case !t.Active() && t.EndReason == "":
			return fmt.Errorf("ended topic %s has no end_reason", t.Topic)
		}
		active[t.Topic] = active[t.Topic] || t.Active()
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}
