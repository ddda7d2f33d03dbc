package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

// baseFile is a complete configuration; a test case's file lines replace its keys.
var baseFile = map[string]string{"pipeline": "cdr", "brokers": "[base:9092]", "topic": "base-topic", "store": "/tmp/karch"}

// loadWith loads the settings as `karch run` does, from a YAML file of baseFile with file's
// keys replacing its own, the environment env (and no other KARCH_* setting), and args.
func loadWith(t *testing.T, file, env map[string]string, args ...string) (runConfig, error) {
	t.Helper()
	clearSettingsEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	fs := flag.NewFlagSet("karch run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf configFlags
	cf.register(fs)
	if err := fs.Parse(append([]string{"--config", writeConfig(t, file)}, args...)); err != nil {
		return runConfig{}, err
	}
	return cf.load()
}

// writeConfig writes baseFile with file's keys replacing its own, and returns its path.
func writeConfig(t *testing.T, file map[string]string) string {
	t.Helper()
	var b strings.Builder
	for k, v := range baseFile {
		if _, ok := file[k]; !ok {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	for k, v := range file {
		b.WriteString(k + ": " + v + "\n")
	}
	path := filepath.Join(t.TempDir(), "karch.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// clearSettingsEnv unsets every variable a setting reads, for the test's duration.
func clearSettingsEnv(t *testing.T) {
	t.Helper()
	names := []string{"KARCH_CONFIG"}
	for _, s := range settings {
		names = append(names, envName(s.name))
	}
	for _, name := range names {
		if v, ok := os.LookupEnv(name); ok {
			t.Setenv(name, v) // restored when the test ends
			os.Unsetenv(name)
		}
	}
}

func TestSettingsPrecedence(t *testing.T) {
	topic := func(c runConfig) any { return c.coord.Topic }
	window := func(c runConfig) any { return c.coord.Window }
	shards := func(c runConfig) any { return c.coord.Shards }
	brokers := func(c runConfig) any { return c.coord.Brokers }
	until := func(c runConfig) any { return c.coord.Until }
	for _, tc := range []struct {
		name string
		file map[string]string
		env  map[string]string
		args []string
		get  func(runConfig) any
		want any
	}{
		{"string from the file", nil, nil, nil, topic, "base-topic"},
		{"string: env over file", nil, map[string]string{"KARCH_TOPIC": "env-topic"}, nil, topic, "env-topic"},
		{"string: flag over env", nil, map[string]string{"KARCH_TOPIC": "env-topic"}, []string{"--topic", "flag-topic"}, topic, "flag-topic"},
		{"duration default", nil, nil, nil, window, time.Hour},
		{"duration from the file", map[string]string{"window": "2h"}, nil, nil, window, 2 * time.Hour},
		{"duration: env over file", map[string]string{"window": "2h"}, map[string]string{"KARCH_WINDOW": "30m"}, nil, window, 30 * time.Minute},
		{"duration: flag over env", map[string]string{"window": "2h"}, map[string]string{"KARCH_WINDOW": "30m"}, []string{"--window=15m"}, window, 15 * time.Minute},
		{"int default", nil, nil, nil, shards, 4},
		{"int from the file", map[string]string{"shards": "6"}, nil, nil, shards, 6},
		{"int: env over file", map[string]string{"shards": "6"}, map[string]string{"KARCH_SHARDS": "8"}, nil, shards, 8},
		{"int: flag over env", map[string]string{"shards": "6"}, map[string]string{"KARCH_SHARDS": "8"}, []string{"--shards", "10"}, shards, 10},
		{"int: flag over file", map[string]string{"shards": "6"}, nil, []string{"--shards", "10"}, shards, 10},
		{"list from the file", map[string]string{"brokers": "[f1:9092, f2:9092]"}, nil, nil, brokers, []string{"f1:9092", "f2:9092"}},
		{"list as a scalar in the file", map[string]string{"brokers": "f1:9092,f2:9092"}, nil, nil, brokers, []string{"f1:9092", "f2:9092"}},
		{"list: env over file", map[string]string{"brokers": "[f1:9092]"}, map[string]string{"KARCH_BROKERS": "e1:9092, e2:9092"}, nil, brokers, []string{"e1:9092", "e2:9092"}},
		{"list: flag over env", nil, map[string]string{"KARCH_BROKERS": "e1:9092"}, []string{"--brokers", "x:1,y:2"}, brokers, []string{"x:1", "y:2"}},
		{"time: env over file", map[string]string{"until": "2026-11-20T00:00:00Z"}, map[string]string{"KARCH_UNTIL": "2026-11-21T00:00:00Z"}, nil,
			until, time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadWith(t, tc.file, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(c); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// A configuration error is permanent, is a coordinator.ErrConfig, and names what is wrong: the
// unknown key, or the setting whose value is bad, wherever the value came from.
func TestSettingsErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		file map[string]string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown key in the file", map[string]string{"windwo": "1h"}, nil, nil, `unknown key "windwo"`},
		{"bad duration in the file", map[string]string{"window": "lots"}, nil, nil, "window"},
		{"mapping for a string in the file", map[string]string{"topic": "{a: b}"}, nil, nil, "topic"},
		{"nested list in the file", map[string]string{"brokers": "[[a:1]]"}, nil, nil, "brokers"},
		{"bad int in the environment", nil, map[string]string{"KARCH_SHARDS": "many"}, nil, "shards"},
		{"bad time in the environment", nil, map[string]string{"KARCH_UNTIL": "yesterday"}, nil, "until"},
		{"bad duration in a flag", nil, nil, []string{"--lease-ttl", "soon"}, "lease_ttl"},
		{"bad bool in a flag", nil, nil, []string{"--s3-path-style", "maybe"}, "s3_path_style"},
		{"invalid int in a flag", nil, nil, []string{"--parallelism", "0"}, "parallelism"},
		{"invalid duration in the environment", nil, map[string]string{"KARCH_WINDOW": "7m"}, nil, "window"},
		{"empty list in the file", map[string]string{"brokers": "[]"}, nil, nil, "brokers"},
		{"file that is not YAML", map[string]string{"topic": "[unclosed"}, nil, nil, "karch.yaml"},
		{"duplicate key in the file", map[string]string{"topic": "a\ntopic: b"}, nil, nil, `"topic" already defined`},
		{"missing file", nil, nil, []string{"--config", "/nonexistent/karch.yaml"}, "/nonexistent/karch.yaml"},
		{"shard memory a shard refuses", nil, map[string]string{"KARCH_SHARD_MEMORY": "85Mi"}, nil, "shard_memory: 85Mi: want at least 86Mi"},
		{"unknown SASL mechanism", nil, map[string]string{"KARCH_KAFKA_SASL_MECHANISM": "GSSAPI", "KARCH_KAFKA_SASL_USERNAME": "k"}, nil, `kafka_sasl_mechanism: "GSSAPI"`},
		{"SASL without a user", nil, map[string]string{"KARCH_KAFKA_SASL_MECHANISM": "PLAIN"}, nil, "kafka_sasl_mechanism and kafka_sasl_username"},
		{"unknown encryption", nil, nil, []string{"--s3-sse", "rot13"}, `s3_sse: "rot13"`},
		{"KMS key without SSE-KMS", nil, nil, []string{"--s3-kms-key-id", "k"}, "s3_kms_key_id: needs s3_sse aws:kms"},
		{"unknown lock mode", nil, nil, []string{"--s3-object-lock-mode", "WORM", "--s3-object-lock-retention", "1d"}, `s3_object_lock_mode: "WORM"`},
		{"lock mode without retention", nil, nil, []string{"--s3-object-lock-mode", "COMPLIANCE"}, "s3_object_lock_retention"},
		{"retention of no days", nil, map[string]string{"KARCH_S3_OBJECT_LOCK_RETENTION": "0d"}, nil, "s3_object_lock_retention"},
		{"secret files without a directory", nil, map[string]string{"KARCH_SHARD_SECRET_FILES": "karch-s3:/etc/s3"}, nil, "shard_secret_files"},
		{"unknown format", nil, nil, []string{"--formats", "jsonl,avro"}, `formats: "jsonl,avro"`},
		{"unknown column type", nil, nil, []string{"--formats", "jsonl,parquet", "--value-columns", "cell:text"}, `value_columns: "cell:text"`},
		{"duplicate column", map[string]string{"formats": "[jsonl, parquet]", "value_columns": "[cell:string, cell=site.cell:string]"}, nil, nil, "value_columns"},
		{"column named like the envelope", nil, map[string]string{"KARCH_FORMATS": "jsonl,parquet", "KARCH_VALUE_COLUMNS": "offset=call.offset:int64"}, nil, "value_columns"},
		{"empty path step", nil, nil, []string{"--formats", "jsonl,parquet", "--value-columns", "cell=site..id:string"}, "value_columns"},
		{"typed columns without parquet", nil, nil, []string{"--value-columns", "cell:string"}, "value_columns"},
		{"table without parquet", nil, nil, []string{"--table", "lake.calls", "--table-catalog-uri", "http://127.0.0.1:1"}, "table: lake.calls: the table's data files are the Parquet objects"},
		{"table without a namespace", nil, nil, []string{"--formats", "jsonl,parquet", "--table", "calls", "--table-catalog-uri", "http://127.0.0.1:1"}, `table: "calls": want namespace.name`},
		{"unknown catalog", nil, map[string]string{"KARCH_FORMATS": "jsonl,parquet", "KARCH_TABLE": "lake.calls", "KARCH_TABLE_CATALOG": "hive", "KARCH_TABLE_CATALOG_URI": "thrift://x"}, nil, `table_catalog: "hive"`},
		{"table without a catalog", nil, nil, []string{"--formats", "jsonl,parquet", "--table", "lake.calls"}, "table_catalog_uri: required"},
		{"table by week", nil, nil, []string{"--formats", "jsonl,parquet", "--table", "lake.calls", "--table-catalog-uri", "http://127.0.0.1:1", "--table-partition", "week"}, `table_partition: "week"`},
		{"SQL catalog URI that is not PostgreSQL's", nil, nil, []string{"--formats", "jsonl,parquet", "--table", "lake.calls", "--table-catalog", "sql", "--table-catalog-uri", "postgres://u:secret@h:notaport/db"}, "table_catalog_uri: not a PostgreSQL URL"},
		{"topic and topics", nil, map[string]string{"KARCH_TOPICS": "cdr-voice,cdr-sms"}, nil, "topics: set topic or topics, not both"},
		{"topic listed twice", map[string]string{"topic": `""`, "topics": "[cdr-voice, cdr-sms, cdr-voice]"}, nil, nil, `topics: "cdr-voice" is listed twice`},
		{"topic name Kafka refuses", map[string]string{"topic": `""`, "topics": "[cdr/voice]"}, nil, nil, `topics: "cdr/voice" is not a Kafka topic name`},
		{"pattern that does not compile", nil, nil, []string{"--topics-pattern", "cdr-(voice|sms"}, `topics_pattern: "cdr-(voice|sms": error parsing regexp`},
		{"no topic at all", map[string]string{"topic": `""`}, nil, nil, "topics: required: set topic, topics or topics_pattern"},
		{"two secrets in one directory", nil, map[string]string{"KARCH_SHARD_SECRET_FILES": "a=/etc/k,b=/etc/k/"}, nil, "directory /etc/k is given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWith(t, tc.file, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want one naming %s", err, tc.want)
			}
			if !errors.Is(err, coordinator.ErrConfig) || !failure.IsPermanent(err) {
				t.Fatalf("error %v: want a permanent coordinator.ErrConfig", err)
			}
		})
	}
}

// TestMinShardMemoryIsWhatAShardAccepts: the least shard_memory the coordinator takes gives
// its shards the least heap limit they accept, and a MiB less would not.
func TestMinShardMemoryIsWhatAShardAccepts(t *testing.T) {
	if got := memoryLimitEnv(minShardMemory); got != "KARCH_MEMORY_LIMIT_MIB=64" {
		t.Errorf("shard_memory %s gives %s; want KARCH_MEMORY_LIMIT_MIB=64", &minShardMemory, got)
	}
	less := minShardMemory.DeepCopy()
	less.Sub(resource.MustParse("1Mi"))
	if got := memoryLimitEnv(less); got != "KARCH_MEMORY_LIMIT_MIB=63" {
		t.Errorf("shard_memory %s gives %s; want KARCH_MEMORY_LIMIT_MIB=63", &less, got)
	}
}

// TLS files are read when a run connects: each failure names the setting and the path, never
// a key's contents.
func TestTLSSettingsErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  tlsSettings
		want string
	}{
		{"missing CA file", tlsSettings{prefix: "kafka_tls", caFile: filepath.Join(dir, "none.crt")}, "kafka_tls_ca_file: open " + dir},
		{"CA file without a certificate", tlsSettings{prefix: "redis_tls", caFile: notPEM}, "redis_tls_ca_file: " + notPEM + " holds no PEM certificate"},
		{"certificate without its key", tlsSettings{prefix: "kafka_tls", certFile: notPEM}, "kafka_tls_cert_file: a client certificate needs both"},
		{"key pair that does not load", tlsSettings{prefix: "kafka_tls", certFile: notPEM, keyFile: notPEM}, "kafka_tls_cert_file: load " + notPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.tls.config()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, coordinator.ErrConfig) || !failure.IsPermanent(err) {
				t.Fatalf("error %v: want a permanent configuration error with %q", err, tc.want)
			}
		})
	}
	if c, err := (tlsSettings{prefix: "kafka_tls"}).config(); c != nil || err != nil {
		t.Fatalf("no TLS setting: %v, %v; want plaintext", c, err)
	}
}

// SASL sends a password: never without TLS (refused with the settings, before any
// connection), and never without one.
func TestSASLNeedsTLSAndAPassword(t *testing.T) {
	t.Setenv("KARCH_KAFKA_SASL_PASSWORD", "")
	k := kafkaSecurity{tls: tlsSettings{prefix: "kafka_tls", enabled: true}, saslMechanism: "SCRAM-SHA-256", saslUser: "karch"}
	if _, _, err := k.dial(); err == nil || !strings.Contains(err.Error(), "has no password") {
		t.Fatalf("no password: %v", err)
	}
	t.Setenv("KARCH_KAFKA_SASL_PASSWORD", "secret-value")
	k.tls.enabled = false
	if err := k.validate(); err == nil || !strings.Contains(err.Error(), "needs kafka_tls") {
		t.Fatalf("SASL without TLS, before any connection: %v", err)
	}
	k.tls.enabled = true
	if tlsConfig, mech, err := k.dial(); err != nil || tlsConfig == nil || mech.Name() != "SCRAM-SHA-256" {
		t.Fatalf("SASL over TLS: %v, %v, %v", tlsConfig, mech, err)
	}
}

// A catalog URL that does not parse is refused without quoting the password it carries.
func TestTableCatalogURIKeepsItsPasswordOut(t *testing.T) {
	_, err := loadWith(t, nil, nil, "--formats", "jsonl,parquet", "--table", "lake.calls", "--table-catalog", "sql",
		"--table-catalog-uri", "postgres://u:s3cr3t-pw@h:notaport/db")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error %v: want one without the password", err)
	}
	_, err = loadWith(t, nil, nil, "--formats", "jsonl,parquet", "--table", "lake.calls", "--table-catalog", "sql",
		"--table-catalog-uri", "postgres://u:s3cr3t-pw@127.0.0.1:5432/db")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") || !strings.Contains(err.Error(), "KARCH_TABLE_CATALOG_PASSWORD") {
		t.Fatalf("a password in table_catalog_uri: %v, want it refused, naming KARCH_TABLE_CATALOG_PASSWORD", err)
	}
}
