package coordinator

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/shard"
)

// TopicInfo is one Kafka topic as the cluster's metadata describes it.
type TopicInfo struct {
	Name string
	// ID is Kafka's topic ID in Kafka's own spelling (URL-safe base64, unpadded, as
	// kafka-topics.sh prints it); empty where the broker gives none.
	ID         string
	Internal   bool
	Partitions []int32
}

// Topics lists every topic of the cluster, internal ones included, keyed by name. It asks
// a broker directly, never a client's cache: a topic deleted and created again a moment
// ago must show its new ID. kafka-go's Metadata stops before topic IDs (v10), so this one
// request goes through franz-go, which karch restore writes with already.
func (k *KafkaOffsets) Topics(ctx context.Context) (map[string]TopicInfo, error) {
	cl, err := k.franz()
	if err != nil {
		return nil, err
	}
	req := kmsg.NewPtrMetadataRequest() // no topics: all of them
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, classifyFranz(fmt.Errorf("list the cluster's topics: %w", err))
	}
	out := make(map[string]TopicInfo, len(resp.Topics))
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		name := *t.Topic
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, classifyFranz(fmt.Errorf("list the cluster's topics: topic %s: %w", name, err))
		}
		info := TopicInfo{Name: name, Internal: t.IsInternal, Partitions: make([]int32, len(t.Partitions))}
		if t.TopicID != ([16]byte{}) {
			info.ID = base64.RawURLEncoding.EncodeToString(t.TopicID[:])
		}
		for i, p := range t.Partitions {
			info.Partitions[i] = p.Partition
		}
		slices.Sort(info.Partitions)
		out[name] = info
	}
	return out, nil
}

func (k *KafkaOffsets) franz() (*kgo.Client, error) {
	k.franzOnce.Do(func() {
		opts := append([]kgo.Opt{kgo.SeedBrokers(k.brokers...), kgo.ClientID(k.clientID)}, k.franzOpts...)
		k.franzCl, k.franzErr = kgo.NewClient(opts...)
		if k.franzErr != nil {
			k.franzErr = failure.Permanent(fmt.Errorf("kafka client: %w", k.franzErr))
		}
	})
	return k.franzCl, k.franzErr
}

// Close releases the franz-go client, if Topics made one.
func (k *KafkaOffsets) Close() {
	if cl, err := k.franz(); err == nil {
		cl.Close()
	}
}

// classifyFranz classifies a franz-go error as kafka-go's of the same code would be: Kafka's
// error codes are the protocol's, whichever client reads them.
func classifyFranz(err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return shard.ClassifyKafkaError(fmt.Errorf("%w (%w)", err, kafka.Error(ke.Code)))
	}
	return shard.ClassifyKafkaError(err)
}

// MatchedTopics lists, in order, the cluster's topics that the pipeline's pattern matches
// now (internal ones excepted), as its next window's planning would find them.
func MatchedTopics(ctx context.Context, cfg Config, ol OffsetLister) ([]string, error) {
	pattern, err := cfg.Pattern()
	if err != nil || pattern == nil {
		return nil, err
	}
	cluster, err := ol.Topics(ctx)
	if err != nil {
		return nil, err
	}
	return matching(pattern, cluster), nil
}

// matching lists, in order, the cluster's topics that pattern matches, internal ones excepted.
func matching(pattern *regexp.Regexp, cluster map[string]TopicInfo) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(cluster)) {
		if !cluster[name].Internal && pattern.MatchString(name) {
			out = append(out, name)
		}
	}
	return out
}

// selectTopics decides the topics of window w: those the pipeline names or its pattern
// matches now, each by its current ID, and the chain's ended topics, those the window before
// archived and this one does not among them (deleted, created again, or no longer matched).
// prevTopics and prevEnds are the window before's (nil for a chain's first window); a
// manifest written before karch recorded topics gives its partitions' topics, with no ID.
// In a backfill (bound), the topics are those of the committed window that follows.
func selectTopics(cfg Config, cluster map[string]TopicInfo, prevTopics []archive.TopicState, prevEnds map[archive.TopicPartition]int64,
	bound map[archive.TopicPartition]int64, w archive.Window) ([]archive.TopicState, error) {
	want, err := wanted(cfg, cluster, bound, prevEnds == nil)
	if err != nil {
		return nil, err
	}
	prevActive := activeOf(prevTopics, prevEnds)
	var states []archive.TopicState
	for _, name := range slices.Sorted(maps.Keys(want)) {
		states = append(states, archive.TopicState{Topic: name, ID: cluster[name].ID})
	}
	for _, name := range slices.Sorted(maps.Keys(prevActive)) {
		id := prevActive[name]
		info, there := cluster[name]
		var reason string
		switch {
		case !there:
			reason = archive.EndDeleted
		case id != "" && info.ID != "" && id != info.ID:
			reason = archive.EndRecreated
		case !want[name]:
			reason = archive.EndUnmatched
		default:
			continue // archived on
		}
		states = append(states, archive.TopicState{Topic: name, ID: id, Ended: &w.Start, EndReason: reason, Ends: endsOf(prevEnds, name)})
	}
	for _, t := range prevTopics {
		if !t.Active() && !(want[t.Topic] && t.ID != "" && cluster[t.Topic].ID == t.ID) {
			states = append(states, t) // still ended; one that is archived again continues from its ends (archive.Chained)
		}
	}
	slices.SortStableFunc(states, func(a, b archive.TopicState) int { return cmp.Compare(a.Topic, b.Topic) })
	return states, nil
}

// wanted names the cluster's topics that window archives. A pipeline's first window insists
// that every listed topic exists and that the pattern matches one: a typo would otherwise
// archive nothing, for ever, successfully. Later, a listed topic that is gone has ended.
func wanted(cfg Config, cluster map[string]TopicInfo, bound map[archive.TopicPartition]int64, first bool) (map[string]bool, error) {
	want := map[string]bool{}
	if bound != nil {
		for tp := range bound {
			if _, ok := cluster[tp.Topic]; !ok {
				return nil, failure.Permanent(fmt.Errorf("topic %s, which the committed window after the backfill archives, does not exist: it was deleted", tp.Topic))
			}
			want[tp.Topic] = true
		}
		return want, nil
	}
	for _, name := range cfg.TopicNames() {
		if _, ok := cluster[name]; ok {
			want[name] = true
		} else if first {
			return nil, failure.Permanent(fmt.Errorf("topic %s does not exist", name))
		}
	}
	pattern, err := cfg.Pattern()
	if err != nil || pattern == nil {
		return want, err
	}
	matched := matching(pattern, cluster)
	for _, name := range matched {
		want[name] = true
	}
	if first && len(matched) == 0 && len(want) == 0 {
		return nil, failure.Permanent(fmt.Errorf("%w: topics_pattern: %q matches no topic of the cluster", ErrConfig, cfg.TopicsPattern))
	}
	return want, nil
}

// activeOf maps the topics the window before archived to their IDs.
func activeOf(prevTopics []archive.TopicState, prevEnds map[archive.TopicPartition]int64) map[string]string {
	out := map[string]string{}
	for _, t := range prevTopics {
		if t.Active() {
			out[t.Topic] = t.ID
		}
	}
	if prevTopics == nil { // a manifest from before topics were recorded
		for tp := range prevEnds {
			out[tp.Topic] = ""
		}
	}
	return out
}

func endsOf(ends map[archive.TopicPartition]int64, topic string) []archive.PartitionEnd {
	var out []archive.PartitionEnd
	for tp, end := range ends {
		if tp.Topic == topic {
			out = append(out, archive.PartitionEnd{Partition: tp.Partition, End: end})
		}
	}
	slices.SortFunc(out, func(a, b archive.PartitionEnd) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}

// topicsOf lists the names of the topics, for logs.
func topicsOf(states []archive.TopicState, active bool) string {
	var names []string
	for _, t := range states {
		if t.Active() == active {
			names = append(names, t.Topic)
		}
	}
	return strings.Join(names, ",")
}
