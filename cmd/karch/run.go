package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
	"github.com/karch-archive/karch/metrics"
)

func init() {
	commands["run"] = command{"the coordinator: archive every window that is due, then exit", runRun}
}

const runUsage = `usage: karch run [--config file.yaml] [flags]

Takes the pipeline's lease, archives every window that is due (oldest first), running
its shards as local processes (runner local) or as a Kubernetes Indexed Job (runner kube),
verifies them and commits each window's MANIFEST.json.
Settings come from the YAML file, then KARCH_* variables, then flags. Secrets only from
the environment or files: KARCH_REDIS_PASSWORD (or KARCH_REDIS_PASSWORD_FILE), and the AWS
chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a shared credentials file, a web identity
token file).
Exit codes: 0 done (or nothing due, or the lease is held elsewhere), 1 retryable, 2 a crash (retried), 3 permanent.
`

func runRun(ctx context.Context, args []string, stdout io.Writer) (err error) {
	cli, err := parseCoordinatorFlags("run", runUsage, args)
	if cli == nil {
		return err
	}
	// Every exit path from here pushes the run's exit code and duration, a bad setting too.
	proc := metrics.NewProcess(time.Now())
	defer func() {
		pushMetrics(ctx, cli.logger, cli.cfg.pushGateway, proc, err, "karch-coordinator", "pipeline", cli.cfg.coord.Pipeline)
		if err != nil {
			cli.logger.Error("run failed", "pipeline", cli.cfg.coord.Pipeline, "err", err, "retryable", !failure.IsPermanent(err))
		}
	}()
	if err != nil {
		return err
	}
	deps, closeDeps, err := coordinatorDeps(ctx, cli.cfg, cli.logger)
	if err != nil {
		return err
	}
	defer closeDeps()
	if deps.Runner, err = newRunner(ctx, cli); err != nil {
		return err
	}
	var bar *runBar
	if local, ok := deps.Runner.(*coordinator.LocalRunner); ok && onTerminal() {
		bar = newRunBar()
		local.Progress = bar.shards
	}
	deps.Observer = metrics.NewCoordinator(proc.Registerer())
	deps.Bucket = blob.WithMetrics(deps.Bucket, proc.Registerer())
	closeTable, err := useTable(ctx, cli.cfg, &deps)
	if err != nil {
		return err
	}
	defer closeTable()
	results, err := coordinator.Run(ctx, cli.cfg.coord, deps)
	if bar != nil {
		bar.finish() // cleared before the table is printed
	}
	printResults(stdout, results)
	return err
}

// coordinatorCLI is what the coordinator commands parse from their arguments.
type coordinatorCLI struct {
	cfg        runConfig
	karch      string
	kubeconfig string
	json       bool
	logger     *slog.Logger
}

// parseCoordinatorFlags parses the flags that run, plan, status and the audit commands share;
// extra registers a command's own. It returns nil and no error after --help. A configuration
// that does not validate comes back with its error and, when its Pushgateway URL is usable,
// with what was loaded, so that run can still report the failure.
func parseCoordinatorFlags(name, usage string, args []string, extra ...func(*flag.FlagSet)) (*coordinatorCLI, error) {
	fs := flag.NewFlagSet("karch "+name, flag.ContinueOnError)
	var cf configFlags
	var lf logFlags
	cli := &coordinatorCLI{}
	for _, register := range extra {
		register(fs)
	}
	cf.register(fs)
	lf.register(fs)
	self, _ := os.Executable()
	fs.StringVar(&cli.karch, "karch", envOr("KARCH_BINARY", self), "karch binary the local runner starts shards with (KARCH_BINARY)")
	fs.StringVar(&cli.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the kube runner; empty: in-cluster config (KUBECONFIG)")
	fs.BoolVar(&cli.json, "json", false, "print JSON instead of a table (plan, status)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), commandHelp(name)+usage+"\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, failure.Permanent(err)
	}
	cfg, err := cf.load()
	if err == nil {
		err = lf.validate()
	}
	if err != nil {
		if cfg.pushGateway == "" || metrics.ValidateGateway(cfg.pushGateway) != nil {
			return nil, failure.Permanent(err)
		}
		cli.cfg, cli.logger = cfg, (&logFlags{level: "info"}).logger(os.Stderr)
		return cli, failure.Permanent(err)
	}
	cli.cfg, cli.logger = cfg, lf.logger(os.Stderr)
	return cli, nil
}

// coordinatorDeps opens what every coordinator command needs; only run adds a Runner.
func coordinatorDeps(ctx context.Context, cfg runConfig, logger *slog.Logger) (coordinator.Deps, func(), error) {
	bucket, err := blob.Open(ctx, cfg.store, cfg.s3)
	if err != nil {
		return coordinator.Deps{}, nil, failure.Permanent(fmt.Errorf("open store %s: %w", cfg.store, err))
	}
	conn, err := cfg.kafkaConn()
	if err != nil {
		return coordinator.Deps{}, nil, err
	}
	franz, err := cfg.kafkaSec.franzOpts()
	if err != nil {
		return coordinator.Deps{}, nil, err
	}
	locker, closeDeps, err := redisLocker(cfg, logger)
	if err != nil {
		return coordinator.Deps{}, nil, err
	}
	if locker == nil {
		locker = lock.NewLocal()
	}
	offsets := coordinator.NewKafkaOffsets(cfg.coord.Brokers, conn, franz...)
	return coordinator.Deps{
		Bucket: bucket, StoreURL: cfg.store, Locker: locker, Offsets: offsets,
		Logger: logger, Now: time.Now, Version: version,
	}, func() { offsets.Close(); closeDeps() }, nil
}

// redisLocker is the pipeline's Redis as a Locker, and what closes it; nil without redis.
func redisLocker(cfg runConfig, logger *slog.Logger) (lock.Locker, func(), error) {
	if cfg.redis == "" {
		return nil, func() {}, nil
	}
	password, err := redisPassword.read()
	if err != nil {
		return nil, nil, err
	}
	tlsConfig, err := cfg.redisTLS.config()
	if err != nil {
		return nil, nil, err
	}
	client := redis.NewClient(&redis.Options{Addr: cfg.redis, Username: cfg.redisUser, Password: password, TLSConfig: tlsConfig})
	locker, err := lock.NewRedis(client, cfg.coord.LeaseTTL, logger)
	if err != nil {
		client.Close()
		return nil, nil, failure.Permanent(err)
	}
	return locker, func() { client.Close() }, nil
}

// newRunner returns the runner the configuration names: shards as local processes, or as an
// Indexed Job.
func newRunner(ctx context.Context, cli *coordinatorCLI) (coordinator.Runner, error) {
	cfg := cli.cfg
	if cfg.runner == "kube" {
		return newKubeRunner(ctx, cfg, cli.kubeconfig, cli.logger)
	}
	return &coordinator.LocalRunner{Karch: cli.karch, Parallelism: cfg.coord.Parallelism, Retries: cfg.coord.Retries,
		Env: shardEnv(cfg), Logger: cli.logger}, nil
}

// secretPathEnv are the variables that name files holding a shard's credentials or trust
// (the AWS SDK reads AWS_CA_BUNDLE for an endpoint with a private CA): paths, not secrets,
// passed on so that shards read the same files where the Secrets are mounted for them too
// (shard_secret_files).
var secretPathEnv = []string{"KARCH_KAFKA_SASL_PASSWORD_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CA_BUNDLE"}

// shardEnv passes the store and metrics settings on to shard processes; credentials travel in
// the environment the shards inherit or in mounted files, never on their command line.
func shardEnv(cfg runConfig) []string {
	var paths []string
	for _, name := range secretPathEnv {
		if v := os.Getenv(name); v != "" {
			paths = append(paths, name+"="+v)
		}
	}
	return append(append([]string{"KARCH_S3_ENDPOINT=" + cfg.s3.Endpoint, "KARCH_S3_REGION=" + cfg.s3.Region,
		"KARCH_S3_SSE=" + cfg.s3.SSE, "KARCH_S3_KMS_KEY_ID=" + cfg.s3.KMSKeyID, "KARCH_S3_STORAGE_CLASS=" + cfg.s3.StorageClass,
		"KARCH_S3_CHECKSUM=" + cfg.s3.Checksum, "KARCH_S3_OBJECT_LOCK_MODE=" + cfg.s3.LockMode,
		"KARCH_S3_OBJECT_LOCK_RETENTION=" + cfg.s3.LockRetention.String(),
		"KARCH_S3_PATH_STYLE=" + strconv.FormatBool(cfg.s3.PathStyle), "KARCH_S3_TIMEOUT=" + cfg.s3.ResponseTimeout.String(),
		"KARCH_PIPELINE=" + cfg.coord.Pipeline, "KARCH_PUSH_GATEWAY=" + cfg.pushGateway,
		"KARCH_FETCH_RATE_MIB=" + strconv.Itoa(cfg.fetchRateMiB)}, append(cfg.kafkaSec.env(), paths...)...), testEnv()...)
}

func printResults(w io.Writer, results []coordinator.WindowResult) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window\trecords\tMB in\tMB stored\tratio\tseconds\tcommitted by\t")
	for _, r := range results {
		ratio := 0.0
		if r.RawBytes > 0 {
			ratio = float64(r.Bytes) / float64(r.RawBytes)
		}
		by := "this run"
		if !r.Committed {
			by = "earlier run"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.3f\t%.1f\t%s\t\n", r.Window.Start.Format("2006-01-02 15:04Z"), r.Records,
			float64(r.RawBytes)/1e6, float64(r.Bytes)/1e6, ratio, r.Duration.Seconds(), by)
	}
	tw.Flush()
}
