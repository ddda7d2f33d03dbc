package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Workload is what a scenario's topic holds: records spread over the pipeline's windows, of
// every shape the format has to carry exactly.
type Workload struct {
	Partitions int
	// Records is how many records each partition gets in each window.
	Records int
	// ValueSize, when set, gives every record a value of that many random bytes: pieces of
	// several MiB, stored with multipart uploads.
	ValueSize int
	// Transactions adds committed and aborted transactions, so that offsets hold markers and
	// records that read_committed does not see.
	Transactions bool
}

// windows is how many hourly windows every scenario's pipeline archives.
const windows = 3

// produce creates topic and fills it. Timestamps run through the windows from start, a few
// seconds out of order, and stay clear of the last window's end so that no record belongs to
// a window the pipeline does not archive.
func (w Workload) produce(ctx context.Context, brokers, topic string, start time.Time, rng *rand.Rand) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ProducerBatchMaxBytes(4<<20), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := createTopic(ctx, kadm.NewClient(cl), topic, w.Partitions); err != nil {
		return err
	}
	total := w.Partitions * w.Records * windows
	step := (windows*time.Hour - time.Minute) / time.Duration(total)
	recs := make([]*kgo.Record, 0, total)
	for i := range total {
		ts := start.Add(time.Duration(i)*step + time.Duration(rng.IntN(5))*time.Second)
		recs = append(recs, w.record(topic, int32(i%w.Partitions), i, ts, rng))
	}
	if !w.Transactions {
		return cl.ProduceSync(ctx, recs...).FirstErr()
	}
	return produceInTransactions(ctx, brokers, recs, rng)
}

// record is the i'th record: null, empty, text and binary keys; JSON, text, binary and null
// values; headers with duplicate keys and null values.
func (w Workload) record(topic string, p int32, i int, ts time.Time, rng *rand.Rand) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: p, Timestamp: ts}
	switch i % 5 {
	case 0: // null key
	case 1:
		r.Key = []byte{}
	case 2:
		r.Key = fmt.Appendf(nil, "caller-%d", i%97)
	default:
		r.Key = fmt.Appendf(nil, "\xff\x00%d", i%89)
	}
	switch {
	case w.ValueSize > 0:
		r.Value = make([]byte, w.ValueSize)
		for j := range r.Value {
			r.Value[j] = byte(rng.Uint32())
		}
	case i%11 == 0:
		r.Value = nil // a tombstone
	case i%7 == 0:
		r.Value = fmt.Appendf(nil, "line %d\nwith \"quotes\"\t\x01", i)
	default:
		r.Value = fmt.Appendf(nil, `{"call": %d, "secs":%d}`, i, rng.IntN(3600))
	}
	if i%6 == 0 {
		r.Headers = []kgo.RecordHeader{{Key: "trace", Value: fmt.Appendf(nil, "%x", i)}, {Key: "trace", Value: nil}, {Key: "\xfe", Value: []byte{}}}
	}
	return r
}

// produceInTransactions writes recs in transactions of a few records each, aborting about one
// in four after its records reached the log.
func produceInTransactions(ctx context.Context, brokers string, recs []*kgo.Record, rng *rand.Rand) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ProducerBatchMaxBytes(4<<20),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID(fmt.Sprintf("chaos-%d", rng.Uint64())))
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(recs) > 0 {
		n := min(len(recs), 1+rng.IntN(40))
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, recs[:n]...).FirstErr(); err != nil {
			return err
		}
		commit := kgo.TryCommit
		if rng.IntN(4) == 0 {
			commit = kgo.TryAbort
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int) error {
	res, err := adm.CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		md, err := adm.Metadata(ctx, topic)
		if err == nil && len(md.Topics[topic].Partitions) == partitions && ledAll(md.Topics[topic].Partitions) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("topic %s: partitions without a leader after 30s", topic)
}

func ledAll(ps kadm.PartitionDetails) bool {
	for _, p := range ps {
		if p.Leader < 0 || p.Err != nil {
			return false
		}
	}
	return true
}
