package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic creates a topic with a name unique to the test and returns it. configs are
// "name=value" topic settings.
func Topic(t testing.TB, addr string, partitions int, configs ...string) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	name = fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	CreateTopic(t, addr, name, partitions, configs...)
	return name
}

// CreateTopic creates the topic name with the given partitions and configs, and waits until
// every partition has a leader.
func CreateTopic(t testing.TB, addr, name string, partitions int, configs ...string) {
	t.Helper()
	var entries []kafka.ConfigEntry
	for _, c := range configs {
		k, v, _ := strings.Cut(c, "=")
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries,
	}}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	waitLeaders(t, c, name, partitions)
}

// DeleteTopic deletes the topic and waits until the broker's metadata no longer lists it.
func DeleteTopic(t testing.TB, addr, name string) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second}
	resp, err := c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{name}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		t.Fatalf("delete topic %s: %v", name, err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{name}})
		if err == nil && (len(md.Topics) == 0 || md.Topics[0].Error != nil) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s is still listed a minute after its deletion (%v)", name, err)
		}
	}
}

// waitLeaders waits until every partition of a new topic has a leader: until then its
// requests fail with NotLeaderForPartition, which a test would take for a failure.
func waitLeaders(t testing.TB, c *kafka.Client, topic string, partitions int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && len(md.Topics[0].Partitions) == partitions && ledAll(md.Topics[0].Partitions) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no leader for every partition after 30s (%v)", topic, err)
		}
	}
}

func ledAll(parts []kafka.Partition) bool {
	for _, p := range parts {
		if p.Error != nil || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

// Produce writes msgs to topic and fails the test on error. Each message keeps the
// partition it names.
func Produce(t testing.TB, addr, topic string, msgs []kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w := &kafka.Writer{
		Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: partitionOf{}, BatchTimeout: time.Millisecond, BatchBytes: 8 << 20, BatchSize: 1000,
	}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// partitionOf sends each message to the partition it names.
type partitionOf struct{}

func (partitionOf) Balance(m kafka.Message, _ ...int) int { return m.Partition }

// Consume reads every record of topic/partition in [first, end) at read_uncommitted, through
// kafka-go's own Reader: the independent view that archived pieces are compared with.
func Consume(t testing.TB, addr, topic string, partition int, first, end int64) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: partition, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		t.Fatalf("seek %s/%d to %d: %v", topic, partition, first, err)
	}
	var out []kafka.Message
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, partition, err)
		}
		if m.Offset >= end {
			return out
		}
		out = append(out, m)
		if m.Offset == end-1 {
			return out
		}
	}
}

// EndOffsets returns the log end offset of each partition of topic. A broker that has just
// made a topic can answer NOT_LEADER_FOR_PARTITION for a moment after its metadata named the
// leaders (seen on a freshly started Kafka): retryable errors are asked again for 10 s.
func EndOffsets(t testing.TB, addr, topic string, partitions int) []int64 {
	t.Helper()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := (&kafka.Client{Addr: kafka.TCP(addr)}).ListOffsets(context.Background(), req)
		if err != nil {
			t.Fatalf("list end offsets of %s: %v", topic, err)
		}
		ends, err := endsOf(resp.Topics[topic], partitions)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("end offsets of %s: %v", topic, err)
			}
			return ends
		}
	}
}

func endsOf(answers []kafka.PartitionOffsets, partitions int) ([]int64, error) {
	ends := make([]int64, partitions)
	for _, p := range answers {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		ends[p.Partition] = p.LastOffset
	}
	return ends, nil
}
