package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/compress"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/metrics"
	"github.com/karch-archive/karch/shard"
)

func init() {
	commands["shard"] = command{"archive one shard of a window's plan (run by the Indexed Job)", runShard}
}

type shardFlags struct {
	plan         string
	index        int
	memMiB       int
	fetchRateMiB int
	cpuProfile   string
	compress     compress.Options
	kafka        shard.KafkaOptions
	store        storeFlags
	log          logFlags
	// pipeline and pushGateway say where, and under which group, metrics are pushed.
	pipeline    string
	pushGateway string
}

func parseShardFlags(args []string, stderr io.Writer) (*shardFlags, error) {
	f := &shardFlags{kafka: shard.DefaultKafkaOptions()}
	fs := flag.NewFlagSet("karch shard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, commandHelp("shard")+"usage: karch shard --plan <url> [--index N] [flags]\n\n"+
			"Archives the pieces of one completion index of a plan, then writes its receipt.\n"+
			"The plan URL is s3://bucket/key/plan.json, file:///dir/.../plan.json or a path, or a\n"+
			"backfill's batch-NNNNN.json, whose task at the index names the window's plan and shard.\n"+
			"Exit codes: 0 done, 1 retryable failure, 2 a crash (retried), 3 permanent failure.\n\nflags (each also read from the environment variable shown):\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&f.plan, "plan", os.Getenv("KARCH_PLAN"), "plan URL (KARCH_PLAN)")
	fs.IntVar(&f.index, "index", -1, "completion index (default: JOB_COMPLETION_INDEX)")
	fs.IntVar(&f.compress.Level, "zstd-level", envInt("KARCH_ZSTD_LEVEL", 3), "zstd level, 1-22 (KARCH_ZSTD_LEVEL)")
	fs.IntVar(&f.compress.FrameSize, "frame-size", envInt("KARCH_FRAME_SIZE", 4<<20), "uncompressed bytes per zstd frame (KARCH_FRAME_SIZE)")
	fs.IntVar(&f.memMiB, "memory-limit-mib", envInt("KARCH_MEMORY_LIMIT_MIB", 192),
		"soft heap limit in MiB, so that the garbage collector keeps a shard inside a 256 MiB pod; GOMEMLIMIT, when set, wins (KARCH_MEMORY_LIMIT_MIB)")
	fs.IntVar(&f.fetchRateMiB, "fetch-rate-mib", envInt("KARCH_FETCH_RATE_MIB", 0), "most MiB per second fetched from Kafka; 0: no cap (KARCH_FETCH_RATE_MIB)")
	fs.IntVar(&f.kafka.FetchMaxBytes, "fetch-max-bytes", envInt("KARCH_FETCH_MAX_BYTES", f.kafka.FetchMaxBytes), "bytes per Kafka fetch (KARCH_FETCH_MAX_BYTES)")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a pprof CPU profile of the run to this file, for `go tool pprof`")
	fs.StringVar(&f.pushGateway, "push-gateway", os.Getenv("KARCH_PUSH_GATEWAY"), "Prometheus Pushgateway URL to push metrics to at the end; empty: none (KARCH_PUSH_GATEWAY)")
	fs.StringVar(&f.pipeline, "pipeline", os.Getenv("KARCH_PIPELINE"), "pipeline name, the pushed metrics' group; the coordinator sets it (KARCH_PIPELINE)")
	f.store.register(fs)
	f.log.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, failure.Permanent(err)
	}
	return f, f.validate()
}

// validate checks everything that needs no I/O, so that a bad flag fails at once.
func (f *shardFlags) validate() error {
	if f.plan == "" {
		return failure.Permanent(errors.New("--plan is required (or KARCH_PLAN)"))
	}
	if err := checkEnviron(os.Environ()); err != nil {
		return err
	}
	if err := f.compress.Validate(); err != nil {
		return failure.Permanent(err)
	}
	if f.memMiB < 64 {
		return failure.Permanent(fmt.Errorf("--memory-limit-mib %d: want at least 64", f.memMiB))
	}
	if f.fetchRateMiB < 0 {
		return failure.Permanent(fmt.Errorf("--fetch-rate-mib %d: want 0 (no cap) or more", f.fetchRateMiB))
	}
	f.kafka.FetchRate = f.fetchRateMiB << 20
	if f.pipeline != "" {
		f.kafka.ClientID = coordinator.ClientID(f.pipeline)
	}
	if err := f.kafkaSecurity(); err != nil {
		return err
	}
	if f.kafka.FetchMaxBytes < 1<<20 {
		return failure.Permanent(fmt.Errorf("--fetch-max-bytes %d: want at least 1 MiB", f.kafka.FetchMaxBytes))
	}
	if err := f.log.validate(); err != nil {
		return failure.Permanent(err)
	}
	if f.pushGateway != "" {
		if err := metrics.ValidateGateway(f.pushGateway); err != nil {
			return failure.Permanent(err)
		}
	}
	return f.resolveIndex()
}

// kafkaSecurity reads the pipeline's Kafka TLS and SASL settings from the environment the
// coordinator gives its shards (shardEnv), by the same table as the coordinator's.
func (f *shardFlags) kafkaSecurity() error {
	c := runConfig{kafkaSec: kafkaSecurity{tls: tlsSettings{prefix: "kafka_tls"}}}
	for _, s := range settings {
		v, ok := os.LookupEnv(envName(s.name))
		if !ok || !strings.HasPrefix(s.name, "kafka_") {
			continue
		}
		if err := s.set(&c, v); err != nil {
			return failure.Permanent(fmt.Errorf("%w: %s: %q: %v", coordinator.ErrConfig, envName(s.name), v, err))
		}
	}
	var err error
	f.kafka.TLS, f.kafka.SASL, err = c.kafkaSec.dial()
	return err
}

func (f *shardFlags) resolveIndex() error {
	if f.index >= 0 {
		return nil
	}
	env := os.Getenv("JOB_COMPLETION_INDEX")
	i, err := strconv.Atoi(env)
	if err != nil || i < 0 {
		return failure.Permanent(fmt.Errorf("no shard index: give --index or set JOB_COMPLETION_INDEX (it is %q)", env))
	}
	f.index = i
	return nil
}

func runShard(ctx context.Context, args []string, _ io.Writer) error {
	if err := tamperHook(ctx); err != nil {
		return err
	}
	f, err := parseShardFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	// shard.Run names the pipeline, window and shard in its own lines: runLog, the logger
	// of this command's lines, adds the shard, which they would name twice. A batch's index
	// is not the shard's, so every line names the batch.
	logger := f.log.logger(os.Stderr)
	runLog := logger.With("shard", f.index)
	if _, _, ok := archive.SplitBatchURL(f.plan); ok {
		logger = logger.With("batch", f.plan, "batch_index", f.index)
		runLog = logger
	}
	crashHook()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(f.memMiB) << 20)
	}
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	proc := metrics.NewProcess(time.Now())
	shardMetrics := metrics.NewShard(proc.Registerer())
	receipt, err := archiveShard(ctx, f, proc.Registerer(), logger)
	if receipt != nil {
		shardMetrics.Receipt(receipt)
	}
	pushMetrics(ctx, runLog, f.pushGateway, proc, err, "karch-shard", "pipeline", f.pipeline, "shard", strconv.Itoa(f.index))
	if err != nil {
		runLog.Error("shard failed", "plan", f.plan, "err", err, "retryable", !failure.IsPermanent(err))
		return fmt.Errorf("plan %s: %w", f.plan, err)
	}
	return nil
}

// startCPUProfile profiles the process until stop is called; a file that cannot be written
// is bad input, so permanent.
func startCPUProfile(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("--cpu-profile: %w", err))
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, failure.Permanent(fmt.Errorf("--cpu-profile %s: %w", path, err))
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

func archiveShard(ctx context.Context, f *shardFlags, reg prometheus.Registerer, logger *slog.Logger) (*archive.Receipt, error) {
	bucket, planKey, err := f.store.open(ctx, f.plan)
	if err != nil {
		return nil, err
	}
	index := f.index
	if archive.IsBatchKey(planKey) {
		if planKey, index, err = batchTask(ctx, bucket, planKey, f.index); err != nil {
			return nil, err
		}
	}
	var readers []*shard.KafkaReader
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	return shard.Run(ctx, shard.Spec{PlanKey: planKey, Index: index, Compress: f.compress}, shard.Deps{
		Bucket: blob.WithMetrics(bucket, reg),
		OpenReader: func(brokers []string) shard.RecordReader {
			r := shard.NewKafkaReader(brokers, f.kafka)
			readers = append(readers, r)
			return r
		},
		Logger: logger,
	})
}

// batchTask finds completion index i of a backfill's batch: the key of a window's plan and
// the shard index in it.
func batchTask(ctx context.Context, b blob.Bucket, key string, i int) (string, int, error) {
	data, err := blob.ReadAll(ctx, b, key)
	if blob.IsNotFound(err) {
		return "", 0, failure.Permanent(fmt.Errorf("read batch %s: %w", key, err))
	}
	if err != nil {
		return "", 0, fmt.Errorf("read batch %s: %w", key, err)
	}
	batch, err := archive.DecodeBatch(data)
	if err != nil {
		return "", 0, failure.Permanent(fmt.Errorf("read batch %s: %w", key, err))
	}
	if i >= len(batch.Tasks) {
		return "", 0, failure.Permanent(fmt.Errorf("batch %s: index %d out of range: it has %d tasks", key, i, len(batch.Tasks)))
	}
	return batch.Tasks[i].Plan, batch.Tasks[i].Shard, nil
}

// storeFlags configure the object store. Credentials never come from flags: the AWS default
// chain reads them from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a
// profile or the pod's web identity.
type storeFlags struct{ s3 blob.S3Config }

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.s3.Endpoint, "s3-endpoint", os.Getenv("KARCH_S3_ENDPOINT"), "S3 endpoint URL; empty for AWS (KARCH_S3_ENDPOINT)")
	fs.StringVar(&s.s3.Region, "s3-region", os.Getenv("KARCH_S3_REGION"), "S3 region; empty: the AWS SDK's chain (AWS_REGION, profile, web identity) (KARCH_S3_REGION)")
	fs.BoolVar(&s.s3.PathStyle, "s3-path-style", os.Getenv("KARCH_S3_PATH_STYLE") == "true", "path-style S3 addressing, as MinIO wants (KARCH_S3_PATH_STYLE=true)")
	fs.StringVar(&s.s3.StorageClass, "s3-storage-class", os.Getenv("KARCH_S3_STORAGE_CLASS"), "storage class of every object written (KARCH_S3_STORAGE_CLASS)")
	fs.StringVar(&s.s3.SSE, "s3-sse", os.Getenv("KARCH_S3_SSE"), "server-side encryption: AES256 or aws:kms (KARCH_S3_SSE)")
	fs.StringVar(&s.s3.KMSKeyID, "s3-kms-key-id", os.Getenv("KARCH_S3_KMS_KEY_ID"), "KMS key for aws:kms (KARCH_S3_KMS_KEY_ID)")
	fs.StringVar(&s.s3.Checksum, "s3-checksum", envOr("KARCH_S3_CHECKSUM", "SHA256"), "upload checksum: SHA256, CRC32C, CRC32 or CRC64NVME (KARCH_S3_CHECKSUM)")
	fs.StringVar(&s.s3.LockMode, "s3-object-lock-mode", os.Getenv("KARCH_S3_OBJECT_LOCK_MODE"), "Object Lock retention mode: GOVERNANCE or COMPLIANCE (KARCH_S3_OBJECT_LOCK_MODE)")
	fs.Func("s3-object-lock-retention", "how long each object stays locked: a duration or days (KARCH_S3_OBJECT_LOCK_RETENTION)", func(v string) error {
		d, err := parseRetention(v)
		s.s3.LockRetention = d
		return err
	})
	if v := os.Getenv("KARCH_S3_OBJECT_LOCK_RETENTION"); v != "" {
		s.s3.LockRetention, _ = parseRetention(v) // the coordinator validated it as a setting
	}
	fs.DurationVar(&s.s3.ResponseTimeout, "s3-timeout", envDuration("KARCH_S3_TIMEOUT", 0), "how long an S3 request may wait for the server's answer once sent; 0: 1m (KARCH_S3_TIMEOUT)")
}

// open opens the store that holds url and returns the key of url's object in it. A window's
// plan opens the store at its root, as the coordinator has it, so that the local store's
// metadata of the pieces is where the coordinator's verification looks.
func (s *storeFlags) open(ctx context.Context, url string) (blob.Bucket, string, error) {
	base, key, ok := archive.SplitPlanURL(url)
	if !ok {
		base, key, ok = archive.SplitBatchURL(url)
	}
	if !ok {
		base, key = blob.SplitURL(url)
	}
	b, err := blob.Open(ctx, base, s.s3)
	if err != nil {
		return nil, "", failure.Permanent(fmt.Errorf("open store %s: %w", base, err))
	}
	return b, key, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envDuration reads a duration the coordinator validated as a setting before it passed it on.
func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
