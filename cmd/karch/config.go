package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/coordinator/kube"
	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/metrics"
)

// runConfig is everything the coordinator commands need. Secrets are not in it: the Redis
// password comes from KARCH_REDIS_PASSWORD and S3 credentials from the AWS default chain.
type runConfig struct {
	coord     coordinator.Config
	store     string
	redis     string
	redisUser string
	redisTLS  tlsSettings
	kafkaSec  kafkaSecurity
	s3        blob.S3Config
	runner    string
	kube      kubeSettings
	// pushGateway is where the run's metrics go when it ends; empty: nowhere.
	pushGateway string
	// fetchRateMiB caps each shard's fetched MiB per second; 0: no cap.
	fetchRateMiB int
	// table is the Iceberg table that committed windows join.
	table tableSettings
	// jobMaxIndexes and leaseWait are karch backfill's.
	jobMaxIndexes int
	leaseWait     time.Duration
}

// kubeSettings describe the shard pods of the kube runner.
type kubeSettings struct {
	namespace, image, serviceAccount, secret string
	secretFiles                              []kube.SecretFiles
	cpu, memory                              resource.Quantity
	// tmp is the size of a shard pod's /tmp; zero: shardTmp's default.
	tmp         resource.Quantity
	hostNetwork bool
	// startTimeout is how long a shard pod may stay unstarted before the run fails.
	startTimeout time.Duration
}

// setting is one configuration key, read from a YAML file (name), the environment
// (KARCH_NAME) and a flag (--name with '-' for '_'), in that order of precedence upwards.
type setting struct {
	name string
	// typ and def are the reference's (docs/settings.md): the kind of value, and the
	// default as one would write it ("" when there is none, or it depends on other
	// settings, as usage then says). TestSettingsReference holds def to the code.
	typ, def string
	usage    string
	set      func(c *runConfig, v string) error
}

var settings = []setting{
	{"pipeline", "string", "", "pipeline name: lower-case letters, digits and '-'", func(c *runConfig, v string) error { c.coord.Pipeline = v; return nil }},
	{"brokers", "list", "", "Kafka bootstrap addresses, comma-separated", func(c *runConfig, v string) error { c.coord.Brokers = splitList(v); return nil }},
	{"topic", "string", "", "the one Kafka topic to archive (or topics, or topics_pattern)", func(c *runConfig, v string) error { c.coord.Topic = v; return nil }},
	{"topics", "list", "", "Kafka topics to archive in one pipeline; a topic deleted later ends, one created again under its name is a new topic", func(c *runConfig, v string) error {
		c.coord.Topics = splitList(v)
		return nil
	}},
	{"topics_pattern", "string", "", "RE2 pattern matched against the whole name of every topic at each window's planning; internal topics (__consumer_offsets) only if named in topics", stringSetting(func(c *runConfig) *string { return &c.coord.TopicsPattern })},
	{"kafka_tls", "bool", "false", "speak TLS to Kafka, trusting the system's CAs unless kafka_tls_ca_file names a bundle (implied by the file settings below)", boolSetting(func(c *runConfig) *bool { return &c.kafkaSec.tls.enabled })},
	{"kafka_tls_ca_file", "path", "", "PEM file of the CAs that sign the brokers' certificates", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.tls.caFile })},
	{"kafka_tls_cert_file", "path", "", "PEM client certificate, for brokers that require one (mTLS)", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.tls.certFile })},
	{"kafka_tls_key_file", "path", "", "PEM private key of kafka_tls_cert_file", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.tls.keyFile })},
	{"kafka_tls_server_name", "string", "", "name the brokers' certificates must carry (default: the host of each address)", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.tls.serverName })},
	{"kafka_sasl_mechanism", "string", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs kafka_tls); empty: none", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.saslMechanism })},
	{"kafka_sasl_username", "string", "", "SASL user; its password only from KARCH_KAFKA_SASL_PASSWORD or the file KARCH_KAFKA_SASL_PASSWORD_FILE names", stringSetting(func(c *runConfig) *string { return &c.kafkaSec.saslUser })},
	{"window", "duration", "1h", "window length; divides a day (1h, 15m, 24h)", durationSetting(func(c *runConfig) *time.Duration { return &c.coord.Window })},
	{"lateness", "duration", "5m", "wait this long after a window ends before archiving it", durationSetting(func(c *runConfig) *time.Duration { return &c.coord.Lateness })},
	{"start", "time", "", "where a new pipeline begins, RFC3339 (default: the newest due window)", func(c *runConfig, v string) error {
		t, err := time.Parse(time.RFC3339, v)
		c.coord.Start = t
		return err
	}},
	{"until", "time", "", "archive no window that ends after this time, RFC3339 (default: none)", func(c *runConfig, v string) error {
		t, err := time.Parse(time.RFC3339, v)
		c.coord.Until = t
		return err
	}},
	{"accept_data_loss", "time", "", "start of the one window that may skip records retention deleted before they were archived, RFC3339; its manifest records the gap", func(c *runConfig, v string) error {
		t, err := time.Parse(time.RFC3339, v)
		c.coord.AcceptDataLoss = t
		return err
	}},
	{"max_windows", "int", "24", "most windows one run catches up", intSetting(func(c *runConfig) *int { return &c.coord.MaxWindows })},
	{"shards", "int", "4", "most shards per window", intSetting(func(c *runConfig) *int { return &c.coord.Shards })},
	{"piece_records", "int", "1000000", "most offsets per piece", func(c *runConfig, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		c.coord.PieceRecords = n
		return err
	}},
	{"formats", "list", "", "formats each piece is stored in: jsonl, or jsonl,parquet (a typed, columnar copy in the same commit)", func(c *runConfig, v string) error {
		c.coord.Formats = splitList(v)
		return archive.CheckFormats(c.coord.Formats)
	}},
	{"value_columns", "list", "", "typed Parquet columns from each record's JSON value, comma-separated name:type or name=path.to.field:type; types string, int64, double, bool, timestamp, date", func(c *runConfig, v string) error {
		cols, err := archive.ParseValueColumns(splitList(v))
		c.coord.ValueColumns = cols
		return err
	}},
	{"table", "string", "", "Iceberg table that each committed window's Parquet objects join, as namespace.name (needs formats with parquet); empty: none", stringSetting(func(c *runConfig) *string { return &c.table.name })},
	{"table_catalog", "string", "rest", "catalog of the table: rest (the Iceberg REST protocol: Polaris, Nessie, Lakekeeper, Unity, Glue, S3 Tables) or sql (PostgreSQL)", stringSetting(func(c *runConfig) *string { return &c.table.catalog })},
	{"table_catalog_uri", "url", "", "REST catalog URL, or the PostgreSQL URL of the sql catalog without its password (KARCH_TABLE_CATALOG_PASSWORD); a REST catalog's OAuth2 client_id:secret comes from KARCH_TABLE_CATALOG_CREDENTIAL, a bearer token from KARCH_TABLE_CATALOG_TOKEN", stringSetting(func(c *runConfig) *string { return &c.table.uri })},
	{"table_warehouse", "string", "", "warehouse of the table: the REST catalog's warehouse name or location, or where the sql catalog keeps table metadata (default: <store>/_iceberg)", stringSetting(func(c *runConfig) *string { return &c.table.warehouse })},
	{"table_partition", "string", "day", "partitioning of the table by timestamp, beside partition: day or hour", stringSetting(func(c *runConfig) *string { return &c.table.partition })},
	{"parallelism", "int", "2", "shards run at once", intSetting(func(c *runConfig) *int { return &c.coord.Parallelism })},
	{"retries", "int", "2", "retries of a shard that fails retryably", intSetting(func(c *runConfig) *int { return &c.coord.Retries })},
	{"fetch_rate_mib", "int", "0", "most MiB per second each shard fetches from Kafka; 0: no cap (a backfill fetches at most parallelism times this)", intSetting(func(c *runConfig) *int { return &c.fetchRateMiB })},
	{"runner", "string", "local", "where shards run: local (processes) or kube (an Indexed Job)", func(c *runConfig, v string) error {
		if v != "local" && v != "kube" {
			return errors.New("want local or kube")
		}
		c.runner = v
		return nil
	}},
	{"kube_namespace", "string", "", "namespace of the shard Jobs (default: the pod's own)", func(c *runConfig, v string) error { c.kube.namespace = v; return nil }},
	{"shard_image", "string", "", "container image of the shards (runner kube; default: the coordinator's own)", func(c *runConfig, v string) error { c.kube.image = v; return nil }},
	{"shard_service_account", "string", "karch-shard", "ServiceAccount of the shard pods", func(c *runConfig, v string) error { c.kube.serviceAccount = v; return nil }},
	{"shard_secret", "string", "", "Secret whose keys become the shards' environment (S3 credentials)", func(c *runConfig, v string) error { c.kube.secret = v; return nil }},
	{"shard_secret_files", "list", "", "Secrets mounted read-only in every shard pod, as SECRET=/dir[,SECRET=/dir]: certificates and password files, where the coordinator mounts them too", func(c *runConfig, v string) error {
		files, err := parseSecretFiles(v)
		c.kube.secretFiles = files
		return err
	}},
	{"shard_cpu", "quantity", "1", "CPU request of a shard pod", quantitySetting(func(c *runConfig) *resource.Quantity { return &c.kube.cpu })},
	{"shard_memory", "quantity", "256Mi", "memory request and limit of a shard pod", quantitySetting(func(c *runConfig) *resource.Quantity { return &c.kube.memory })},
	{"shard_tmp", "quantity", "", "size of a shard pod's /tmp; with parquet it must hold the largest Parquet piece, which a shard copies there to adopt or derive it (default 64Mi, 2Gi with parquet)", quantitySetting(func(c *runConfig) *resource.Quantity { return &c.kube.tmp })},
	{"shard_host_network", "bool", "false", "shard pods use the node's network namespace (true where Kafka, Redis or S3 are reachable only from the node, as on karch's test node)", func(c *runConfig, v string) error {
		b, err := strconv.ParseBool(v)
		c.kube.hostNetwork = b
		return err
	}},
	{"shard_start_timeout", "duration", "10m", "how long a shard pod may stay unstarted (image pull, missing Secret, unschedulable, quota) before the run fails naming it", func(c *runConfig, v string) error {
		d, err := time.ParseDuration(v)
		c.kube.startTimeout = d
		return err
	}},
	{"job_max_indexes", "int", "10000", "backfill: most completion indexes (shards) of one Job; a larger backfill runs as several Jobs in turn", intSetting(func(c *runConfig) *int { return &c.jobMaxIndexes })},
	{"lease_wait", "duration", "10m", "backfill: how long to wait while a scheduled run holds the pipeline's lease", durationSetting(func(c *runConfig) *time.Duration { return &c.leaseWait })},
	{"push_gateway", "url", "", "Prometheus Pushgateway URL that the coordinator and its shards push metrics to when they end; empty: none", func(c *runConfig, v string) error { c.pushGateway = v; return nil }},
	{"lease_ttl", "duration", "30s", "lease time-to-live", durationSetting(func(c *runConfig) *time.Duration { return &c.coord.LeaseTTL })},
	{"store", "url", "", "destination: s3://bucket/prefix, file:///dir or a directory", func(c *runConfig, v string) error { c.store = v; return nil }},
	{"redis", "string", "", "Redis address for the lease (host:port); empty: an in-process lease", func(c *runConfig, v string) error { c.redis = v; return nil }},
	{"redis_username", "string", "", "Redis ACL user; its password only from KARCH_REDIS_PASSWORD or the file KARCH_REDIS_PASSWORD_FILE names", func(c *runConfig, v string) error { c.redisUser = v; return nil }},
	{"redis_tls", "bool", "false", "speak TLS to Redis, trusting the system's CAs unless redis_tls_ca_file names a bundle (implied by the file settings below)", boolSetting(func(c *runConfig) *bool { return &c.redisTLS.enabled })},
	{"redis_tls_ca_file", "path", "", "PEM file of the CAs that sign the Redis server's certificate", stringSetting(func(c *runConfig) *string { return &c.redisTLS.caFile })},
	{"redis_tls_cert_file", "path", "", "PEM client certificate, for a Redis that requires one (mTLS)", stringSetting(func(c *runConfig) *string { return &c.redisTLS.certFile })},
	{"redis_tls_key_file", "path", "", "PEM private key of redis_tls_cert_file", stringSetting(func(c *runConfig) *string { return &c.redisTLS.keyFile })},
	{"redis_tls_server_name", "string", "", "name the Redis server's certificate must carry (default: the host of redis)", stringSetting(func(c *runConfig) *string { return &c.redisTLS.serverName })},
	{"s3_endpoint", "url", "", "S3 endpoint URL; empty for AWS", func(c *runConfig, v string) error { c.s3.Endpoint = v; return nil }},
	{"s3_region", "string", "", "S3 region (default: the AWS SDK's chain: AWS_REGION, profile, web identity)", func(c *runConfig, v string) error { c.s3.Region = v; return nil }},
	{"s3_timeout", "duration", "", "how long an S3 request may wait for the server's answer once sent, before it is retried (default 1m)", durationSetting(func(c *runConfig) *time.Duration { return &c.s3.ResponseTimeout })},
	{"s3_path_style", "bool", "false", "path-style S3 addressing (true for MinIO)", func(c *runConfig, v string) error {
		b, err := strconv.ParseBool(v)
		c.s3.PathStyle = b
		return err
	}},
	{"s3_sse", "string", "", "server-side encryption of every object karch writes: AES256 (SSE-S3) or aws:kms (SSE-KMS); empty: the bucket's default", stringSetting(func(c *runConfig) *string { return &c.s3.SSE })},
	{"s3_kms_key_id", "string", "", "KMS key of s3_sse aws:kms (empty: the account's default key)", stringSetting(func(c *runConfig) *string { return &c.s3.KMSKeyID })},
	{"s3_storage_class", "string", "", "storage class of every object karch writes (STANDARD_IA, GLACIER_IR, ...); empty: the bucket's default", stringSetting(func(c *runConfig) *string { return &c.s3.StorageClass })},
	{"s3_checksum", "string", "", "integrity checksum the store verifies every upload with: SHA256 (default), CRC32C, CRC32 or CRC64NVME", stringSetting(func(c *runConfig) *string { return &c.s3.Checksum })},
	{"s3_object_lock_mode", "string", "", "Object Lock retention of every object karch writes, on a bucket created with Object Lock: GOVERNANCE or COMPLIANCE; empty: the bucket's default", stringSetting(func(c *runConfig) *string { return &c.s3.LockMode })},
	{"s3_object_lock_retention", "duration", "", "how long each object stays locked from its write: a Go duration or days (2555d)", func(c *runConfig, v string) error {
		d, err := parseRetention(v)
		c.s3.LockRetention = d
		return err
	}},
}

func durationSetting(field func(*runConfig) *time.Duration) func(*runConfig, string) error {
	return func(c *runConfig, v string) error {
		d, err := time.ParseDuration(v)
		*field(c) = d
		return err
	}
}

func boolSetting(field func(*runConfig) *bool) func(*runConfig, string) error {
	return func(c *runConfig, v string) error {
		b, err := strconv.ParseBool(v)
		*field(c) = b
		return err
	}
}

func stringSetting(field func(*runConfig) *string) func(*runConfig, string) error {
	return func(c *runConfig, v string) error {
		*field(c) = v
		return nil
	}
}

func quantitySetting(field func(*runConfig) *resource.Quantity) func(*runConfig, string) error {
	return func(c *runConfig, v string) error {
		q, err := resource.ParseQuantity(v)
		*field(c) = q
		return err
	}
}

func intSetting(field func(*runConfig) *int) func(*runConfig, string) error {
	return func(c *runConfig, v string) error {
		n, err := strconv.Atoi(v)
		*field(c) = n
		return err
	}
}

// parseRetention reads a Go duration, or a whole number of days ("2555d"): retention periods
// are set in days, and 61,320h says seven years less plainly.
func parseRetention(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 {
			return 0, errors.New("want a whole number of days, at least 1, or a duration")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// parseSecretFiles reads SECRET=/dir pairs: a Secret's name, and the absolute directory its
// keys become files in. Two Secrets in one directory would hide each other's files.
func parseSecretFiles(v string) ([]kube.SecretFiles, error) {
	var out []kube.SecretFiles
	dirs := map[string]bool{}
	for _, item := range splitList(v) {
		name, dir, ok := strings.Cut(item, "=")
		switch {
		case !ok || name == "" || !path.IsAbs(dir):
			return nil, fmt.Errorf("%q: want SECRET=/absolute/dir", item)
		case dirs[path.Clean(dir)]:
			return nil, fmt.Errorf("%q: directory %s is given twice", item, path.Clean(dir))
		}
		dirs[path.Clean(dir)] = true
		out = append(out, kube.SecretFiles{Secret: name, Dir: path.Clean(dir)})
	}
	return out, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func envName(name string) string  { return "KARCH_" + strings.ToUpper(name) }
func flagName(name string) string { return strings.ReplaceAll(name, "_", "-") }

// configFlags registers --config and one flag per setting on fs; load then layers defaults,
// file, environment and the flags that were given.
type configFlags struct {
	file  string
	given map[string]string
}

func (cf *configFlags) register(fs *flag.FlagSet) {
	cf.given = map[string]string{}
	fs.StringVar(&cf.file, "config", os.Getenv("KARCH_CONFIG"), "YAML configuration file; unknown keys are errors (KARCH_CONFIG)")
	for _, s := range settings {
		if fs.Lookup(flagName(s.name)) != nil {
			continue // the command's own flag of that name wins; the setting stays in file and env
		}
		fs.Func(flagName(s.name), s.usage+" ("+envName(s.name)+")", func(v string) error {
			cf.given[s.name] = v
			return nil
		})
	}
}

// defaultConfig is every setting at its default (docs/settings.md).
func defaultConfig() runConfig {
	return runConfig{coord: coordinator.DefaultConfig(), runner: "local", redisTLS: tlsSettings{prefix: "redis_tls"},
		kafkaSec: kafkaSecurity{tls: tlsSettings{prefix: "kafka_tls"}}, table: tableSettings{catalog: icetable.CatalogREST, partition: icetable.Day},
		jobMaxIndexes: coordinator.DefaultMaxIndexes, leaseWait: 10 * time.Minute,
		kube: kubeSettings{serviceAccount: "karch-shard", cpu: resource.MustParse("1"), memory: resource.MustParse("256Mi"), startTimeout: 10 * time.Minute}}
}

func (cf *configFlags) load() (runConfig, error) {
	c := defaultConfig()
	if err := checkEnviron(os.Environ()); err != nil {
		return c, err
	}
	layers := []map[string]string{nil, envValues(), cf.given}
	if cf.file != "" {
		fileValues, err := readConfigFile(cf.file)
		if err != nil {
			return c, failure.Permanent(err)
		}
		layers[0] = fileValues
	}
	for _, layer := range layers {
		for _, s := range settings {
			if v, ok := layer[s.name]; ok {
				if err := s.set(&c, v); err != nil {
					return c, failure.Permanent(fmt.Errorf("%w: %s: %q: %v", coordinator.ErrConfig, s.name, v, err))
				}
			}
		}
	}
	return c, c.validate()
}

// minShardMemory is the least shard_memory whose three quarters (memoryLimitEnv) is the 64 MiB
// of heap a shard needs.
var minShardMemory = resource.MustParse("86Mi")

func (c runConfig) validate() error {
	if err := c.coord.Validate(); err != nil {
		return failure.Permanent(err)
	}
	if c.store == "" {
		return failure.Permanent(fmt.Errorf("%w: store: required (s3://bucket/prefix, file:///dir or a directory)", coordinator.ErrConfig))
	}
	if c.kube.startTimeout < 10*time.Second {
		return failure.Permanent(fmt.Errorf("%w: shard_start_timeout: %s: want at least 10s", coordinator.ErrConfig, c.kube.startTimeout))
	}
	if c.kube.memory.Cmp(minShardMemory) < 0 {
		// A shard limits its Go heap to three quarters of its pod's memory and refuses less
		// than 64 MiB of heap: refused here, the run names the setting instead of launching
		// a Job whose every shard exits 3.
		return failure.Permanent(fmt.Errorf("%w: shard_memory: %s: want at least %s", coordinator.ErrConfig, &c.kube.memory, &minShardMemory))
	}
	if c.runner == "kube" && c.kube.image == "" && os.Getenv(envPodName) == "" {
		return failure.Permanent(fmt.Errorf("%w: shard_image: required with runner kube outside a pod (in one, the coordinator's own image is the default)", coordinator.ErrConfig))
	}
	if err := c.kafkaSec.validate(); err != nil {
		return err
	}
	if err := c.validateS3(); err != nil {
		return err
	}
	if c.leaseWait < 0 {
		return failure.Permanent(fmt.Errorf("%w: lease_wait: %s: want 0 or more", coordinator.ErrConfig, c.leaseWait))
	}
	if c.fetchRateMiB < 0 {
		return failure.Permanent(fmt.Errorf("%w: fetch_rate_mib: %d: want 0 (no cap) or more", coordinator.ErrConfig, c.fetchRateMiB))
	}
	if err := c.validateTable(); err != nil {
		return err
	}
	if c.pushGateway != "" {
		if err := metrics.ValidateGateway(c.pushGateway); err != nil {
			return failure.Permanent(fmt.Errorf("%w: push_gateway: %w", coordinator.ErrConfig, err))
		}
	}
	return nil
}

// validateTable checks the table settings without reading the catalog's secrets.
func (c runConfig) validateTable() error {
	if !c.table.on() {
		return nil
	}
	if !slices.Contains(c.coord.Formats, archive.FormatParquet) {
		return failure.Permanent(fmt.Errorf("%w: table: %s: the table's data files are the Parquet objects; set formats to jsonl,parquet", coordinator.ErrConfig, c.table.name))
	}
	if u, err := url.Parse(c.table.uri); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			// The URL is a setting, and settings travel in ConfigMaps, Job specs and logs.
			return failure.Permanent(fmt.Errorf("%w: table_catalog_uri: a password in the URL is not allowed: set KARCH_TABLE_CATALOG_PASSWORD", coordinator.ErrConfig))
		}
	}
	if err := c.tableBase().Check(); err != nil {
		return failure.Permanent(fmt.Errorf("%w: %w", coordinator.ErrConfig, err))
	}
	return nil
}

// validateS3 checks the settings that apply to every object karch writes, naming the setting.
func (c runConfig) validateS3() error {
	if err := c.s3.ValidateWrites(); err != nil {
		return failure.Permanent(fmt.Errorf("%w: %w", coordinator.ErrConfig, err))
	}
	return nil
}

func envValues() map[string]string {
	out := map[string]string{}
	for _, s := range settings {
		if v, ok := os.LookupEnv(envName(s.name)); ok {
			out[s.name] = v
		}
	}
	return out
}

// readConfigFile reads a YAML mapping of setting names to scalars (brokers may be a list).
// A key that names no setting is an error: a typo must not pass for a default.
func readConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read config file: %w", coordinator.ErrConfig, err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: config file %s: %w", coordinator.ErrConfig, path, err)
	}
	out := map[string]string{}
	for key, node := range raw {
		if !known(key) {
			return nil, fmt.Errorf("%w: config file %s, line %d: unknown key %q", coordinator.ErrConfig, path, node.Line, key)
		}
		v, err := scalarOrList(node)
		if err != nil {
			return nil, fmt.Errorf("%w: config file %s: %s: %v", coordinator.ErrConfig, path, key, err)
		}
		out[key] = v
	}
	return out, nil
}

func known(key string) bool {
	for _, s := range settings {
		if s.name == key {
			return true
		}
	}
	return false
}

func scalarOrList(n yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		items := make([]string, len(n.Content))
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", errors.New("a list of plain values is expected")
			}
			items[i] = c.Value
		}
		return strings.Join(items, ","), nil
	default:
		return "", fmt.Errorf("line %d: a value or a list is expected", n.Line)
	}
}
