package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karch-archive/karch/icetable"
	"github.com/karch-archive/karch/internal/tabletest"
	"github.com/karch-archive/karch/internal/testenv"
)

// withTable gives the pipeline Parquet pieces with typed columns and a table in the test
// catalog of kind, and returns the table's settings.
func (p *runPipeline) withTable(t *testing.T, kind string) icetable.Config {
	t.Helper()
	cfg := tabletest.Config(t, kind, testenv.S3Config(t))
	cfg.Store = envValue(p.env, "KARCH_STORE")
	p.env = append(p.env, "KARCH_FORMATS=jsonl,parquet", "KARCH_VALUE_COLUMNS=n:int64",
		"KARCH_TABLE="+cfg.Table, "KARCH_TABLE_CATALOG="+kind, "KARCH_TABLE_PARTITION=hour")
	cfg.Partition = icetable.Hour
	if kind == icetable.CatalogSQL {
		u, err := url.Parse(cfg.URI)
		if err != nil {
			t.Fatal(err)
		}
		password, _ := u.User.Password()
		u.User = url.User(u.User.Username())
		p.env = append(p.env, "KARCH_TABLE_CATALOG_URI="+u.String(), "KARCH_TABLE_CATALOG_PASSWORD="+password, "KARCH_TABLE_WAREHOUSE="+cfg.Warehouse)
	} else {
		p.env = append(p.env, "KARCH_TABLE_CATALOG_URI="+cfg.URI)
	}
	return cfg
}

func envValue(env []string, name string) string {
	for _, kv := range slices.Backward(env) {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// assertTable checks that the table holds the pipeline's windows, one snapshot each in
// window order, and, read by iceberg-go, every offset of every partition exactly once.
func (p *runPipeline) assertTable(t *testing.T, cfg icetable.Config) {
	t.Helper()
	tbl := tabletest.Load(t, cfg)
	var want []time.Time
	for w := range runWindows {
		want = append(want, p.start.Add(time.Duration(w)*time.Hour))
	}
	if got := tabletest.Windows(t, tbl); !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("the table's snapshots name the windows %v, want %v, once each, in order", got, want)
	}
	offsets := tabletest.Offsets(t, tbl)
	for part, end := range p.ends {
		got := offsets[int32(part)]
		if int64(len(got)) != end {
			t.Fatalf("partition %d: the table holds %d records, Kafka %d", part, len(got), end)
		}
		for i, o := range got {
			if o != int64(i) {
				t.Fatalf("partition %d: the table's record %d has offset %d: an offset missing or twice", part, i, o)
			}
		}
	}
}

// A run with a table, then a run killed when its catalog commit was answered, then a run
// killed before its catalog commit: each window is committed first, and enters the table
// once, in window order, on the run or on the next.
func TestRunJoinsTheTable(t *testing.T) {
	p := newRunPipeline(t, 2, 3000)
	cfg := p.withTable(t, icetable.CatalogSQL)
	p.env = append(p.env, "KARCH_UNTIL="+p.start.Add(time.Hour).Format(time.RFC3339))
	if code, out := p.backfill(t, 0, 1); code != 0 {
		t.Fatalf("backfill of window 0: exit %d:\n%s", code, out)
	}
	p.env = append(p.env, "KARCH_UNTIL="+p.start.Add(runWindows*time.Hour).Format(time.RFC3339))
	cmd, out := p.run(t)
	if code := codeOf(t, cmd, cmd.Run()); code != 0 {
		t.Fatalf("run: exit %d:\n%s", code, out)
	}
	p.assertCommitted(t)
	p.assertTable(t, cfg)
	cmd, out = p.command(t, "verify", "--table")
	if code := codeOf(t, cmd, cmd.Run()); code != 0 || !strings.Contains(out.String(), "0 not in it yet, 0 problems") {
		t.Fatalf("verify --table once caught up: exit %d:\n%s", code, out)
	}
}

// catalogProxy stands in front of the test REST catalog. It holds the first commit that adds
// a snapshot to a table (POST .../tables/<name> with add-snapshot) and says so on held; with
// forward, it sends the commit on to the catalog first and holds the catalog's answer.
type catalogProxy struct {
	*httptest.Server
	held    chan struct{}
	forward bool
	once    sync.Once
}

var tableCommit = regexp.MustCompile(`/v1/namespaces/[^/]+/tables/[^/]+$`)

func newCatalogProxy(t *testing.T, forward bool) *catalogProxy {
	t.Helper()
	target, err := url.Parse(testenv.IcebergREST(t))
	if err != nil {
		t.Fatal(err)
	}
	c, stop := &catalogProxy{held: make(chan struct{}), forward: forward}, make(chan struct{})
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		var body []byte
		if r.Method == http.MethodPost && tableCommit.MatchString(r.URL.Path) {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"add-snapshot"`)) {
				c.once.Do(func() { first = true })
			}
		}
		if !first {
			proxy.ServeHTTP(w, r)
			return
		}
		if c.forward {
			// The catalog applies the commit; its answer never reaches the coordinator.
			req, _ := http.NewRequest(r.Method, target.String()+r.URL.Path, bytes.NewReader(body))
			req.Header = r.Header.Clone()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		close(c.held)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() {
		close(stop)
		c.Close()
	})
	return c
}

// The coordinator killed, with its shards, after window 0's manifest and before its snapshot
// (the commit never reached the catalog), or during it (the catalog applied it and the
// answer was lost): the next run appends what the table lacks, never a window twice.
func TestRunKilledAroundTheTableCommit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forward bool
	}{{"before the commit", false}, {"answer lost", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRunPipeline(t, 2, 2000)
			p.env = append(p.env, "KARCH_LEASE_TTL=2s")
			cfg := p.withTable(t, icetable.CatalogREST)
			proxy := newCatalogProxy(t, tc.forward)
			cmd, out := p.run(t)
			cmd.Env = append(cmd.Env, "KARCH_TABLE_CATALOG_URI="+proxy.URL)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan int, 1)
			go func() { exited <- waitExit(t, cmd) }()
			select {
			case <-proxy.held:
			case code := <-exited:
				t.Fatalf("run exited %d before its first table commit:\n%s", code, out)
			case <-time.After(3 * time.Minute):
				t.Fatalf("no table commit within 3 minutes:\n%s", out)
			}
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-exited
			if !exists(p.bucket, p.dir(p.start)+"MANIFEST.json") {
				t.Fatal("window 0 has no manifest: the kill came before the commit order's first step")
			}
			if n := len(tabletest.Windows(t, tabletest.Load(t, cfg))); tc.forward != (n == 1) {
				t.Fatalf("after the kill the table holds %d windows; the catalog applied the commit: %v", n, tc.forward)
			}
			p.waitLeaseExpired(t)
			cmd, out = p.run(t)
			if code := codeOf(t, cmd, cmd.Run()); code != 0 {
				t.Fatalf("rerun: exit %d:\n%s", code, out)
			}
			p.assertCommitted(t)
			p.assertTable(t, cfg)
			cmd, out = p.command(t, "verify", "--table")
			if code := codeOf(t, cmd, cmd.Run()); code != 0 || !strings.Contains(out.String(), "0 not in it yet, 0 problems") {
				t.Fatalf("verify --table after the kill and the rerun: exit %d:\n%s", code, out)
			}
		})
	}
}

// A catalog that is down fails the run retryably (exit 1) after every window is committed;
// the next run, with the catalog back, appends them all, in order.
func TestRunWithTheCatalogDown(t *testing.T) {
	p := newRunPipeline(t, 2, 2000)
	cfg := p.withTable(t, icetable.CatalogREST)
	cmd, out := p.run(t)
	cmd.Env = append(cmd.Env, "KARCH_TABLE_CATALOG_URI=http://127.0.0.1:1")
	if code := codeOf(t, cmd, cmd.Run()); code != 1 || !strings.Contains(out.String(), "not yet in the table") {
		t.Fatalf("run with the catalog down: exit %d, want 1 saying the window is not yet in the table:\n%s", code, out)
	}
	p.assertCommitted(t)
	cmd, out = p.command(t, "verify", "--table")
	if code := codeOf(t, cmd, cmd.Run()); code != 0 || strings.Count(out.String(), "committed, not in the table yet") != runWindows {
		t.Fatalf("verify --table of a table that lags: exit %d, want 0 listing the %d windows not in it yet:\n%s", code, runWindows, out)
	}
	cmd, out = p.run(t)
	if code := codeOf(t, cmd, cmd.Run()); code != 0 {
		t.Fatalf("run with the catalog back: exit %d:\n%s", code, out)
	}
	p.assertTable(t, cfg)
	cmd, out = p.command(t, "verify", "--table")
	if code := codeOf(t, cmd, cmd.Run()); code != 0 || !strings.Contains(out.String(), "0 not in it yet, 0 problems") {
		t.Fatalf("verify --table once caught up: exit %d:\n%s", code, out)
	}
}

// karch doctor with a table: its catalog answering is one more check, and a catalog that
// does not answer fails it with a fix, exit 3, while the other checks still run.
func TestDoctorChecksTheTable(t *testing.T) {
	p := newRunPipeline(t, 1, 100)
	p.withTable(t, icetable.CatalogREST)
	cmd, out := p.command(t, "doctor")
	if code := exitCode(t, cmd); code != 0 || !strings.Contains(out.String(), "ok    table: the catalog answers and the table loads: rest catalog") ||
		!strings.Contains(out.String(), "does not exist yet") {
		t.Fatalf("doctor with a table: exit %d, want 0 with the table's check passed:\n%s", code, out)
	}
	cmd, out = p.command(t, "doctor", "--table-catalog-uri", "http://127.0.0.1:1")
	if code := exitCode(t, cmd); code != 3 || !strings.Contains(out.String(), "FAIL  table: the catalog answers") ||
		!strings.Contains(out.String(), "fix: check table_catalog_uri") || !strings.Contains(out.String(), "ok    store: a second create of one key is refused") {
		t.Fatalf("doctor with the catalog down: exit %d, want 3, the table's check failed with a fix, the others run:\n%s", code, out)
	}
}

// A SQL catalog that refuses the password is permanent (exit 3) once the windows are
// committed, and neither the output nor any stored object holds the password tried.
func TestTableWrongPasswordIsPermanentAndSecret(t *testing.T) {
	p := newRunPipeline(t, 1, 300)
	p.withTable(t, icetable.CatalogSQL)
	const wrong = "not-the-pg-secret-42"
	p.env = append(p.env, "KARCH_TABLE_CATALOG_PASSWORD="+wrong)
	cmd, out := p.run(t)
	if code := codeOf(t, cmd, cmd.Run()); code != 3 || !strings.Contains(out.String(), "not yet in the table") {
		t.Fatalf("run with a wrong catalog password: exit %d, want 3 saying the window is not yet in the table:\n%s", code, out)
	}
	p.assertCommitted(t)
	p.assertNoSecret(t, out.String(), wrong)
}
