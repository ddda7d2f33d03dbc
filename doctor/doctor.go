// Package doctor checks a pipeline's configuration against the servers it names, before its
// first run: each check says what it proved, or why it failed and how to fix that.
package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/lock"
)

// Kafka is what the checks ask of the cluster: its metadata, and committed records read as
// shards read them.
type Kafka interface {
	Partitions(ctx context.Context, topic string) ([]int32, error)
	StableEnds(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	LogStarts(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
	ReadRange(ctx context.Context, topic string, partition int32, first, end int64, fn func(*archive.Record) error) error
}

// Protector reads back an object's encryption, class and lock (S3 only).
type Protector interface {
	Protection(ctx context.Context, key string) (blob.Protection, error)
}

// Table is the pipeline's Iceberg table (icetable.Table).
type Table interface {
	Describe(ctx context.Context, pipeline string) (string, error)
}

// Deps are the pipeline's clients, built from its configuration as a run builds them.
type Deps struct {
	Pipeline string
	// Topics are the topics named one by one; Matched, when set, lists those the pipeline's
	// topics_pattern (Pattern) matches now.
	Topics  []string
	Pattern string
	Matched func(ctx context.Context) ([]string, error)
	// Brokers, Store and Redis name the servers in the checklist; Security says how Kafka
	// is spoken to ("TLS, SASL SCRAM-SHA-512").
	Brokers, Store, Redis, Security string
	Kafka                           Kafka
	// Locker is nil when the pipeline has no Redis: the lease is in-process.
	Locker lock.Locker
	Bucket blob.Bucket
	// Table is nil when the pipeline has no table.
	Table Table
	// Want is the protection every object should get (zero fields: the store's defaults),
	// and Retention the Object Lock period from each write.
	Want      blob.Protection
	Retention time.Duration
	// ProbeID makes the probe's keys unique to this check.
	ProbeID string
	Now     func() time.Time
}

// Check is one line of the checklist: what it proved, or its failure and the fix.
type Check struct {
	Name string
	OK   bool
	// Detail is what was proved, or the failure.
	Detail string
	Fix    string
}

// maxSkew is the clock difference with the store past which the check fails: due windows and
// retention dates are computed from the local clock.
const maxSkew = 30 * time.Second

// Run runs every check, in order, and returns them all: a failure does not hide the rest,
// except where a check needs what an earlier one proved.
func Run(ctx context.Context, d Deps) []Check {
	var out []Check
	out = append(out, kafkaChecks(ctx, d)...)
	out = append(out, redisCheck(ctx, d))
	out = append(out, storeChecks(ctx, d)...)
	if d.Table != nil {
		out = append(out, tableCheck(ctx, d))
	}
	return out
}

func tableCheck(ctx context.Context, d Deps) Check {
	const name = "table: the catalog answers and the table loads"
	detail, err := d.Table.Describe(ctx, d.Pipeline)
	if err != nil {
		return fail(name, err, "check table_catalog_uri, the catalog's credential (KARCH_TABLE_CATALOG_CREDENTIAL, _TOKEN or _PASSWORD) and its grants on the table's namespace; the archive is not affected: windows join the table once it answers")
	}
	return pass(name, "%s", detail)
}

func pass(name, format string, args ...any) Check {
	return Check{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)}
}

func fail(name string, err error, fix string) Check {
	return Check{Name: name, Detail: err.Error(), Fix: fix}
}

func kafkaChecks(ctx context.Context, d Deps) []Check {
	topics := d.Topics
	if d.Matched != nil {
		const name = "kafka: the topics pattern matches"
		matched, err := d.Matched(ctx)
		if err != nil {
			return []Check{fail(name, err, fmt.Sprintf("check brokers (%s), the TLS and SASL settings, and that the user may describe the cluster's topics", d.Brokers))}
		}
		if len(matched) == 0 {
			return []Check{fail(name, fmt.Errorf("topics_pattern %q matches no topic of the cluster", d.Pattern), "check topics_pattern: it must match a whole topic name (cdr-.* rather than cdr-)")}
		}
		var out []Check
		out = append(out, pass(name, "topics_pattern %q matches %d topics: %s", d.Pattern, len(matched), strings.Join(matched, ", ")))
		for _, t := range matched {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
		return append(out, topicChecks(ctx, d, topics)...)
	}
	return topicChecks(ctx, d, topics)
}

// topicChecks proves, for each topic, that it exists and that its committed records can be
// read.
func topicChecks(ctx context.Context, d Deps, topics []string) []Check {
	var out []Check
	for _, topic := range topics {
		const reach, read = "kafka: the topic exists", "kafka: committed records are readable"
		parts, err := d.Kafka.Partitions(ctx, topic)
		if err != nil {
			out = append(out, fail(reach, err, fmt.Sprintf("check brokers (%s), the TLS and SASL settings, and that topic %s exists and the user may describe it", d.Brokers, topic)))
			continue
		}
		out = append(out, pass(reach, "%s over %s: topic %s has %d partitions", d.Brokers, d.Security, topic, len(parts)))
		out = append(out, readCheck(ctx, d, topic, parts, read))
	}
	return out
}

// readCheck fetches the last few committed offsets of the first partition that has any, at
// read_committed, as a shard does: it proves the user may read the topic.
func readCheck(ctx context.Context, d Deps, topic string, parts []int32, name string) Check {
	fix := fmt.Sprintf("grant the user READ on topic %s (and DESCRIBE)", topic)
	starts, err := d.Kafka.LogStarts(ctx, topic, parts)
	if err != nil {
		return fail(name, err, fix)
	}
	ends, err := d.Kafka.StableEnds(ctx, topic, parts)
	if err != nil {
		return fail(name, err, fix)
	}
	for _, p := range parts {
		if ends[p] <= starts[p] {
			continue
		}
		first, records := max(starts[p], ends[p]-10), 0
		err := d.Kafka.ReadRange(ctx, topic, p, first, ends[p], func(*archive.Record) error { records++; return nil })
		if err != nil {
			return fail(name, err, fix)
		}
		return pass(name, "fetched offsets [%d, %d) of %s/%d at read_committed: %d records", first, ends[p], topic, p, records)
	}
	return pass(name, "topic %s holds no records yet: nothing to fetch, reading not proven", topic)
}

func redisCheck(ctx context.Context, d Deps) Check {
	const name = "redis: the lease's commands are allowed"
	if d.Locker == nil {
		return pass(name, "no redis configured: the lease is in-process, for one coordinator at a time only")
	}
	lease, err := d.Locker.Acquire(ctx, "karch:doctor:"+d.Pipeline)
	if errors.Is(err, lock.ErrHeld) {
		return pass(name, "%s: another doctor holds the check's lease; its commands ran", d.Redis)
	}
	if err != nil {
		return fail(name, err, "check redis, redis_username, the password and the TLS settings; the user needs: ~karch:* +set +get +del +pexpire +incr +eval +evalsha")
	}
	if err := lease.Release(ctx); err != nil {
		return fail(name, err, "the user needs: ~karch:* +set +get +del +pexpire +incr +eval +evalsha")
	}
	return pass(name, "%s: took and released a lease (fencing token %d)", d.Redis, lease.Token())
}

func storeChecks(ctx context.Context, d Deps) []Check {
	const list = "store: the pipeline's folder is listable"
	errStop := errors.New("stop")
	err := d.Bucket.List(ctx, d.Pipeline+"/", func(blob.ObjectInfo) error { return errStop })
	if err != nil && !errors.Is(err, errStop) {
		return []Check{fail(list, err, fmt.Sprintf("check store (%s), s3_endpoint, the credentials and s3:ListBucket", d.Store))}
	}
	out := []Check{pass(list, "%s", d.Store)}
	dir := archive.ProbeDir(d.Pipeline)
	small, large := dir+"doctor-"+d.ProbeID, dir+"doctor-"+d.ProbeID+"-multipart"
	before := d.Now()
	single := probe(ctx, d, "store: a second create of one key is refused", small, 64)
	out = append(out, single, probe(ctx, d, "store: a second multipart completion of one key is refused", large, 5<<20+1))
	if !single.OK {
		return out
	}
	out = append(out, readBack(ctx, d, small, 64, before))
	if p, ok := d.Bucket.(Protector); ok {
		out = append(out, protection(ctx, d, p, small, before))
	}
	return out
}

func probe(ctx context.Context, d Deps, name, key string, size int) Check {
	err := blob.ProbeConditionalCreate(ctx, d.Bucket, key, size)
	if errors.Is(err, blob.ErrIgnoresConditional) {
		return fail(name, err, "use a store that honours If-None-Match: * on PutObject and CompleteMultipartUpload (AWS S3, MinIO); karch refuses to run on this one")
	}
	if err != nil {
		return fail(name, err, "the credentials need s3:PutObject (and s3:PutObjectRetention with Object Lock) on the store's prefix")
	}
	return pass(name, "%s (%d bytes)", key, size)
}

// readBack reads the probe whole, and compares the store's time of the write with the local
// clock's.
func readBack(ctx context.Context, d Deps, key string, size int, before time.Time) Check {
	const name = "store: the probe reads back whole, and the clocks agree"
	fix := "the credentials need s3:GetObject on the store's prefix"
	info, err := d.Bucket.Head(ctx, key)
	if err != nil {
		return fail(name, err, fix)
	}
	r, err := d.Bucket.Get(ctx, key)
	if err != nil {
		return fail(name, err, fix)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return fail(name, err, fix)
	}
	if buf.Len() != size || info.Size != int64(size) || !strings.HasPrefix(buf.String(), "karch conditional-create probe") {
		return fail(name, fmt.Errorf("%s reads back %d bytes (head says %d), want the %d written", key, buf.Len(), info.Size, size), "check the store: it does not keep what it is sent")
	}
	// The store's time has whole seconds: a write it stamps before the local clock's second
	// began is the store's clock behind.
	skew := info.ModTime.Sub(before.Truncate(time.Second))
	if skew < -maxSkew || skew > maxSkew+time.Since(before) {
		return fail(name, fmt.Errorf("the store stamped the probe %s from this machine's clock", skew.Round(time.Second)), "synchronise the clocks (NTP): due windows and retention dates come from this one")
	}
	return pass(name, "%d bytes; the store's clock is within %s of this one", size, maxSkew)
}

// protection compares what the store keeps of the probe with what the configuration asks.
func protection(ctx context.Context, d Deps, p Protector, key string, before time.Time) Check {
	const name = "store: encryption, class and Object Lock as configured"
	got, err := p.Protection(ctx, key)
	if err != nil {
		return fail(name, err, "the credentials need s3:GetObject on the store's prefix")
	}
	w := d.Want
	var wrong []string
	if w.SSE != "" && got.SSE != w.SSE {
		wrong = append(wrong, fmt.Sprintf("encryption %q, want %q", got.SSE, w.SSE))
	}
	if w.KMSKeyID != "" && !strings.HasSuffix(got.KMSKeyID, w.KMSKeyID) {
		wrong = append(wrong, fmt.Sprintf("KMS key %q, want %q", got.KMSKeyID, w.KMSKeyID))
	}
	if w.StorageClass != "" && got.StorageClass != w.StorageClass && (w.StorageClass != "STANDARD" || got.StorageClass != "") {
		wrong = append(wrong, fmt.Sprintf("storage class %q, want %q", got.StorageClass, w.StorageClass))
	}
	if w.LockMode != "" && (got.LockMode != w.LockMode || got.RetainUntil.Before(before.Add(d.Retention-time.Minute))) {
		wrong = append(wrong, fmt.Sprintf("lock %q until %s, want %q for %s", got.LockMode, got.RetainUntil.Format(time.RFC3339), w.LockMode, d.Retention))
	}
	if len(wrong) > 0 {
		return fail(name, errors.New(strings.Join(wrong, "; ")), "create the bucket with Object Lock for s3_object_lock_mode; check s3_sse, s3_kms_key_id, s3_storage_class and the bucket's policy")
	}
	return pass(name, "encryption %s, key %s, class %s, lock %s until %s", orNone(got.SSE), orNone(got.KMSKeyID),
		orNone(got.StorageClass), orNone(got.LockMode), orNone(formatTime(got.RetainUntil)))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
