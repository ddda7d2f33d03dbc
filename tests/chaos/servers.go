// Package chaos runs karch through scenarios of injected faults (processes killed and
// stopped, S3 errors and lost responses, Kafka, Redis and MinIO restarts, cut and slowed
// connections) at seeded random points, and proves with an independent checker
// (tests/chaos/checker) that every record was archived exactly once.
//
// The scenarios kill and restart servers, so they run against a private set of Kafka, Redis
// and MinIO, started by the project's services script with their own ports and state, never
// against the servers the other tests share.
package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Servers is the private set of servers of the chaos scenarios.
type Servers struct {
	// Kafka is the broker's own listener, for producing and checking: no fault proxy.
	Kafka string
	// KafkaProxied is the listener that advertises KafkaProxy: a client that bootstraps at
	// KafkaProxy reaches the broker only through the fault proxy listening there, which
	// forwards to KafkaProxied.
	KafkaProxied, KafkaProxy string
	Redis                    string
	S3                       S3
	// Postgres is the sql catalog of the table scenarios, without its password (pgPassword).
	Postgres string

	root, state string
	env         []string
	// mu keeps kills and starts apart: two starts at once would race for a port.
	mu sync.Mutex
}

// S3 is the private MinIO.
type S3 struct{ Endpoint, Bucket, AccessKey, SecretKey string }

// The private set's ports: apart from those of `make services-up` (19092, 16379, 19000), so
// that the chaos tests run beside the others, and fixed, because the broker advertises the
// Kafka fault proxy's address.
const (
	kafkaPort      = 29092
	kafkaCtlPort   = 29093
	kafkaProxied   = 29094
	kafkaProxyPort = 29095
	redisPort      = 26379
	s3Port         = 29000
	pgPort         = 25432
	pgPassword     = "karch-chaos-pg"
)

// PrivateServers describes the private set of the repository at root. Nothing starts.
func PrivateServers(root string) *Servers {
	cache := os.Getenv("KARCHDEV_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "karch")
	}
	s := &Servers{
		Kafka:        addr(kafkaPort),
		KafkaProxied: addr(kafkaProxied),
		KafkaProxy:   addr(kafkaProxyPort),
		Redis:        addr(redisPort),
		S3:           S3{Endpoint: "http://" + addr(s3Port), Bucket: "karch-chaos", AccessKey: "karchchaos", SecretKey: "karchchaos-secret"},
		Postgres:     "postgres://karch@" + addr(pgPort) + "/karch_iceberg?sslmode=disable",
		root:         root,
		state:        StateDir(cache),
	}
	s.env = []string{
		"KARCHDEV_CACHE=" + cache, "KARCHDEV_STATE=" + s.state,
		"KARCHDEV_KAFKA_PORT=" + strconv.Itoa(kafkaPort), "KARCHDEV_KAFKA_CONTROLLER_PORT=" + strconv.Itoa(kafkaCtlPort),
		"KARCHDEV_KAFKA_PROXIED_PORT=" + strconv.Itoa(kafkaProxied), "KARCHDEV_KAFKA_PROXY_PORT=" + strconv.Itoa(kafkaProxyPort),
		"KARCHDEV_REDIS_PORT=" + strconv.Itoa(redisPort), "KARCHDEV_S3_PORT=" + strconv.Itoa(s3Port),
		"KARCHDEV_PG_PORT=" + strconv.Itoa(pgPort), "KARCHDEV_PG_USER=karch", "KARCHDEV_PG_PASSWORD=" + pgPassword,
		"KARCHDEV_S3_BUCKET=" + s.S3.Bucket, "KARCHDEV_S3_ACCESS_KEY=" + s.S3.AccessKey, "KARCHDEV_S3_SECRET_KEY=" + s.S3.SecretKey,
		// No TLS listeners: make exports the shared servers' TLS ports, which would clash.
		"KARCHDEV_KAFKA_SASL_PORT=", "KARCHDEV_KAFKA_MTLS_PORT=", "KARCHDEV_REDIS_TLS_PORT=",
		// A scenario restarts a server while the other test packages load both cores: a
		// broker started so was seen to need over 90 s, the script's default bound.
		"KARCHDEV_READY_TIMEOUT=" + readyTimeout(),
	}
	return s
}

// StateDir is where the private set keeps its PID files, logs and data; `make
// services-down` stops what it names too.
func StateDir(cache string) string { return filepath.Join(cache, "state-chaos") }

func readyTimeout() string {
	if v := os.Getenv("KARCHDEV_READY_TIMEOUT"); v != "" {
		return v
	}
	return "240"
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// Up starts whatever of the set is not running, and reuses the rest.
func (s *Servers) Up(ctx context.Context) error { return s.script(ctx, "up", "postgres") }

func (s *Servers) script(ctx context.Context, args ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	verb := args[0]
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "tests", "services", "services.sh"), args...)
	cmd.Env = append(os.Environ(), s.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("services.sh %s (private chaos servers): %w\n%s", verb, err, out)
	}
	return nil
}

// Kill sends SIGKILL to one server ("kafka", "redis", "minio" or "postgres") and its process group, as
// a machine losing power would, and waits for it to be gone. It fails if the server is not
// running.
func (s *Servers) Kill(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := os.ReadFile(filepath.Join(s.state, name, "pid"))
	if err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("kill %s: pid file: %w", name, err)
	}
	if st, ok := procState(pid); !ok || st == 'Z' {
		return fmt.Errorf("kill %s: not running", name)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // services.sh starts each server in a session of its own
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return waitGone(pid)
}

// RepoRoot finds the repository's root above dir: the folder holding go.mod.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
