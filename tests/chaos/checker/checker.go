// Package checker proves, without trusting karch, that a karch archive holds every record
// Kafka holds exactly once and byte for byte, and that its documents prove it the way
// docs/FORMAT.md says they do. The chaos scenarios run it after every trial.
//
// It shares no code with karch's write path: it reads the store with its own S3 client,
// Kafka with franz-go (karch's shards read with kafka-go), and decodes record lines itself,
// from FORMAT.md alone.
package checker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config says which archive to check against which Kafka topic.
type Config struct {
	// The S3 store (path-style, as MinIO serves it). Prefix is the path of the pipeline's
	// store URL (s3://bucket/prefix); it may be empty. Region defaults to us-east-1.
	Endpoint, Region, Bucket, Prefix, AccessKey, SecretKey string
	Pipeline                                               string
	Brokers                                                []string
	Topic                                                  string
	// Shared says that the windows hold other topics too (a pipeline of several topics):
	// their partitions and objects are left to their own checks, one per topic.
	Shared bool
	// The committed windows must tile [Start, Until) exactly: no gap, no overlap. Windows
	// that end before Start are not read; the one that ends at Start, if any, must be the
	// first window's previous. A committed window that ends after Until is a problem.
	Start, Until time.Time
	// From is where each partition's coverage must begin; a partition it does not name (or
	// a nil From) begins at its log start offset. Set it when Start is not the pipeline's
	// first window, or when the topic holds records older than Start. A window may begin
	// after From where Kafka holds nothing at read_committed in between (aborted records,
	// markers): karch begins at the first data record.
	From map[int32]int64
	// To is where each partition's coverage must end; a partition it does not name (or a nil
	// To) ends at its last stable offset (the end at read_committed). Set it when the topic
	// holds records stamped at or after Until.
	To map[int32]int64
}

// Validate checks the configuration without any I/O.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"Endpoint", c.Endpoint}, {"Bucket", c.Bucket}, {"Pipeline", c.Pipeline}, {"Topic", c.Topic},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("checker: %s is required", f.name))
		}
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("checker: Brokers is required"))
	}
	if !c.Start.Before(c.Until) {
		errs = append(errs, fmt.Errorf("checker: Start %s is not before Until %s", c.Start, c.Until))
	}
	return errors.Join(errs...)
}

// Ref names one offset of one partition of the topic, and why it is reported.
type Ref struct {
	Partition int32
	Offset    int64
	Why       string
}

func (r Ref) String() string {
	return fmt.Sprintf("partition %d offset %d: %s", r.Partition, r.Offset, r.Why)
}

// Report is what Check found. Lost, Duplicated and Mismatched hold at most one Ref per
// offset each, ordered by partition and offset.
type Report struct {
	Windows int   // committed windows in [Start, Until)
	Records int64 // record lines read from the objects of those windows
	Held    int64 // records Kafka holds at read_committed in the checked offset ranges

	// Lost: a record Kafka holds that no committed window holds (or an offset a manifest
	// declares as a gap).
	Lost []Ref
	// Duplicated: an offset that committed windows hold more than once, in two windows or
	// twice in one.
	Duplicated []Ref
	// Mismatched: an archived record whose bytes differ from Kafka's, that does not decode,
	// or at an offset where Kafka holds no record at read_committed (an aborted
	// transaction's record, a transaction marker, an offset out of range).
	Mismatched []Ref
	// Problems: structural failures: tiling, chain, sums, SHA-256, bounds, decoding.
	Problems []string
}

// OK is true when the archive holds every record exactly once, as Kafka holds it, and
// every structural check passed.
func (r *Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Duplicated) == 0 && len(r.Mismatched) == 0 && len(r.Problems) == 0
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *Report) sort() {
	for _, refs := range [][]Ref{r.Lost, r.Duplicated, r.Mismatched} {
		slices.SortStableFunc(refs, func(a, b Ref) int {
			if a.Partition != b.Partition {
				return int(a.Partition) - int(b.Partition)
			}
			return compareInt(a.Offset, b.Offset)
		})
	}
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Check reads every committed window of the pipeline and every record Kafka holds in the
// checked ranges, and reports what differs. It returns an error only when the check itself
// could not run (an invalid Config, a server it cannot reach, a topic that does not exist);
// everything it finds about the archive is in the Report.
func Check(ctx context.Context, c Config) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ch := &check{cfg: c, store: newStore(c), rep: &Report{}}
	if err := ch.loadWindows(ctx); err != nil {
		return nil, err
	}
	k, err := openKafka(ctx, c)
	if err != nil {
		return nil, err
	}
	defer k.close()
	ch.kafka = k
	ch.checkTiling()
	for _, w := range ch.windows {
		ch.checkManifest(w)
	}
	ch.checkChain()
	if err := ch.checkPartitions(ctx); err != nil {
		return nil, err
	}
	ch.rep.sort()
	return ch.rep, nil
}

// check is the state of one Check.
type check struct {
	cfg   Config
	store *store
	kafka *kafkaView
	rep   *Report
	// windows are the committed windows in [Start, Until), by start then end; prior is the
	// committed window that ends at Start, if any.
	windows []*window
	prior   *window
	folders []*folder // every window folder, committed or not
	// parts is the state of each partition the chain or Kafka knows.
	parts map[int32]*partState
}
