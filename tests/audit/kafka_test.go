package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/internal/testenv"
)

// verify --against-kafka compares the archive with what Kafka still holds: clean when they
// agree; a partition added to the topic and not yet archived is named. A topic deleted and
// created again under its name is another topic (another Kafka topic ID): its records are
// not the archived ones', so they are not compared, and the archive stays clean.
func TestVerifyAgainstKafka(t *testing.T) {
	a := newArchive(t)
	if code, out := a.karch(t, "verify", "--against-kafka"); code != 0 || !strings.Contains(out, ", 0 problems") {
		t.Fatalf("a clean archive against Kafka: exit %d\n%s", code, out)
	}
	c := &kafka.Client{Addr: kafka.TCP(a.brokers), Timeout: 30 * time.Second}
	resp, err := c.CreatePartitions(context.Background(), &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: a.topic, Count: 3}}})
	if err == nil {
		err = resp.Errors[a.topic]
	}
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "verify to see the new partition", time.Minute, func() bool {
		code, out := a.karch(t, "verify", "--against-kafka")
		return code == 3 && strings.Contains(out, "/2 of the topic is in no window")
	})

	recreate(t, c, a.topic)
	var msgs []kafka.Message
	for i := range 300 {
		msgs = append(msgs, kafka.Message{Partition: i % 2, Time: t0.Add(time.Duration(i) * 36 * time.Second), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"n":%d,"forged":true}`, i)})
	}
	testenv.Produce(t, a.brokers, a.topic, msgs)
	code, out := a.karch(t, "verify", "--against-kafka", "--window", t0.Format(time.RFC3339))
	if code != 0 || strings.Contains(out, "differs from Kafka") || !strings.Contains(out, ", 0 problems") {
		t.Fatalf("against a recreated topic: exit %d; want 0, its records not compared with the archived topic's\n%s", code, out)
	}
}

func recreate(t *testing.T, c *kafka.Client, topic string) {
	t.Helper()
	if _, err := c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the topic to be created again", time.Minute, func() bool {
		resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}}})
		if err == nil {
			err = resp.Errors[topic]
		}
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			t.Fatalf("create topic %s again: %v", topic, err)
		}
		return err == nil // AlreadyExists: the deletion is still under way
	})
	testenv.WaitFor(t, "the topic's partitions", time.Minute, func() bool {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		return err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == 2
	})
}
