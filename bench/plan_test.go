package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/internal/testenv"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/shard"
)

// planStart is the window the planning benchmark resolves: its records are stamped through
// it, so every partition's start and end are found by time, as for a pipeline's first window.
var planStart = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

var bigTopic struct {
	once sync.Once
	name string
}

// created are the topics the benchmarks made, deleted when they end: a broker that keeps a
// few runs' worth of 2,000 partitions runs out of file descriptors.
var created struct {
	mu     sync.Mutex
	addr   string
	topics []string
}

func remember(addr string, topics ...string) {
	created.mu.Lock()
	defer created.mu.Unlock()
	created.addr, created.topics = addr, append(created.topics, topics...)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(created.topics) > 0 {
		c := &kafka.Client{Addr: kafka.TCP(created.addr), Timeout: time.Minute}
		if _, err := c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: created.topics}); err != nil {
			fmt.Fprintf(os.Stderr, "delete the benchmarks' topics: %v\n", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// thousandPartitions creates, once per benchmark binary, a topic of 1,000 partitions with 20
// records in each, stamped through the window at planStart.
func thousandPartitions(b *testing.B, addr string) string {
	bigTopic.once.Do(func() {
		const partitions, per = 1000, 20
		bigTopic.name = testenv.Topic(b, addr, partitions)
		remember(addr, bigTopic.name)
		msgs := make([]kafka.Message, 0, partitions*per)
		for p := range partitions {
			for i := range per {
				msgs = append(msgs, kafka.Message{Partition: p, Time: planStart.Add(time.Duration(i) * time.Hour / per), Value: []byte(fmt.Sprint(i))})
			}
		}
		testenv.Produce(b, addr, bigTopic.name, msgs)
	})
	return bigTopic.name
}

// Resolving a window of a 1,000-partition topic against the real broker (partitions, last
// stable offsets, the offsets at both edges by time, each read forward to its first data
// record) and packing it into 100 shards: karch plan's work for one window. Target: < 1 s.
//
//	make bench (starts the local servers)
func BenchmarkPlan1000Partitions(b *testing.B) {
	addr := testenv.Kafka(b)
	topic := thousandPartitions(b, addr)
	cfg := coordinator.DefaultConfig()
	cfg.Pipeline, cfg.Brokers, cfg.Topic, cfg.Start, cfg.Shards, cfg.MaxWindows = "bench", []string{addr}, topic, planStart, 100, 1
	cfg.PieceRecords = 10
	deps := coordinator.Deps{Bucket: testenv.LocalBucket(b), Locker: lock.NewLocal(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return planStart.Add(2 * time.Hour) }}
	for b.Loop() {
		deps.Offsets = coordinator.NewKafkaOffsets(cfg.Brokers, shard.KafkaOptions{ClientID: "karch-bench"}) // fresh connections, as a new coordinator has
		plans, err := coordinator.Preview(context.Background(), cfg, deps)
		if err != nil {
			b.Fatal(err)
		}
		if len(plans) != 1 || len(plans[0].Ranges) != 1000 || len(plans[0].Shards) != 100 {
			b.Fatalf("%d plans; want one of 1000 ranges in 100 shards", len(plans))
		}
	}
}

// Packing 10,000 pieces (1,000 partitions of 10 pieces each) into 100 shards, worst-fit
// decreasing. Target: < 100 ms.
func BenchmarkPack10000Pieces(b *testing.B) {
	ranges := make([]archive.Range, 1000)
	for i := range ranges {
		ranges[i] = archive.Range{Topic: "cdr", Partition: int32(i), First: int64(i) * 7, End: int64(i)*7 + 10_000 + int64(i%13)*100}
	}
	base := archive.Plan{Pipeline: "bench", RunID: "bench", Brokers: []string{"b:9092"}}
	for b.Loop() {
		p := coordinator.BuildPlan(base, ranges, 1_100, 100)
		if len(p.Shards) != 100 {
			b.Fatalf("%d shards", len(p.Shards))
		}
	}
}

var manyTopics struct {
	once    sync.Once
	pattern string
}

// hundredTopics creates, once per benchmark binary, 100 topics of 10 partitions each with
// 20 records in each partition, stamped through the window at planStart, all matched by the
// pattern it returns.
func hundredTopics(b *testing.B, addr string) string {
	manyTopics.once.Do(func() {
		const topics, partitions, per = 100, 10, 20
		base := fmt.Sprintf("bench%d", time.Now().UnixNano())
		for i := range topics {
			name := fmt.Sprintf("%s.cdr-%03d", base, i)
			testenv.CreateTopic(b, addr, name, partitions)
			remember(addr, name)
			msgs := make([]kafka.Message, 0, partitions*per)
			for p := range partitions {
				for j := range per {
					msgs = append(msgs, kafka.Message{Partition: p, Time: planStart.Add(time.Duration(j) * time.Hour / per), Value: []byte(fmt.Sprint(j))})
				}
			}
			testenv.Produce(b, addr, name, msgs)
		}
		manyTopics.pattern = base + `\.cdr-[0-9]+`
	})
	return manyTopics.pattern
}

// Resolving a window of 100 topics of 10 partitions, matched by a pattern, against the real
// broker (the cluster's topics with their IDs, then each topic as above) and packing it
// into 100 shards. Targets: < 1 s, < 64 MiB allocated (B/op).
//
//	make bench (starts the local servers)
func BenchmarkPlan100Topics(b *testing.B) {
	addr := testenv.Kafka(b)
	pattern := hundredTopics(b, addr)
	cfg := coordinator.DefaultConfig()
	cfg.Pipeline, cfg.Brokers, cfg.TopicsPattern, cfg.Start, cfg.Shards, cfg.MaxWindows = "bench", []string{addr}, pattern, planStart, 100, 1
	cfg.PieceRecords = 10
	deps := coordinator.Deps{Bucket: testenv.LocalBucket(b), Locker: lock.NewLocal(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return planStart.Add(2 * time.Hour) }}
	for b.Loop() {
		offsets := coordinator.NewKafkaOffsets(cfg.Brokers, shard.KafkaOptions{ClientID: "karch-bench"})
		deps.Offsets = offsets
		plans, err := coordinator.Preview(context.Background(), cfg, deps)
		offsets.Close()
		if err != nil {
			b.Fatal(err)
		}
		if len(plans) != 1 || len(plans[0].Ranges) != 1000 || len(plans[0].Topics) != 100 {
			b.Fatalf("%d plans; want one of 100 topics, 1000 ranges", len(plans))
		}
	}
}
