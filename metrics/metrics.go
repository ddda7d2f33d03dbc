// Package metrics gives a karch process its Prometheus metrics and pushes them to a
// Pushgateway when the process ends: a coordinator or a shard is a batch process, gone before
// a scrape would find it.
//
// Metrics carry no pipeline or shard label; the push's grouping key adds them, as the
// Pushgateway wants.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/coordinator"
)

// Process holds the metrics of one karch process.
type Process struct {
	reg      *prometheus.Registry
	started  time.Time
	exitCode prometheus.Gauge
	duration prometheus.Gauge
	finished prometheus.Gauge
}

// NewProcess starts the clock of a process's run.
func NewProcess(now time.Time) *Process {
	p := &Process{
		reg:     prometheus.NewRegistry(),
		started: now,
		exitCode: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "karch_exit_code", Help: "Exit code of the last run: 0 done, 1 retryable failure, 2 crash, 3 permanent failure; -1 while it runs (a backfill pushes its progress as it goes).",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "karch_run_duration_seconds", Help: "How long the last run took.",
		}),
		finished: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "karch_run_finished_timestamp_seconds", Help: "When the last run ended (Unix time).",
		}),
	}
	p.exitCode.Set(-1)
	p.reg.MustRegister(p.exitCode, p.duration, p.finished)
	return p
}

// Registerer is where the process's other metrics go.
func (p *Process) Registerer() prometheus.Registerer { return p.reg }

// Gatherer reads every metric of the process.
func (p *Process) Gatherer() prometheus.Gatherer { return p.reg }

// Finish records how the run ended.
func (p *Process) Finish(now time.Time, exitCode int) {
	p.exitCode.Set(float64(exitCode))
	p.duration.Set(now.Sub(p.started).Seconds())
	p.finished.Set(float64(now.UnixMilli()) / 1e3)
}

// Push sends the process's metrics to the Pushgateway at gateway, under job and the grouping
// labels (name, value pairs). It replaces the group (PUT): what the gateway holds is what the
// last run reported, so a run that failed early never leaves an earlier run's exit code 0
// standing.
func (p *Process) Push(ctx context.Context, gateway, job string, grouping ...string) error {
	if err := ValidateGateway(gateway); err != nil {
		return err
	}
	pusher := push.New(gateway, job).Gatherer(p.reg).Client(&http.Client{Timeout: 10 * time.Second})
	for i := 0; i+1 < len(grouping); i += 2 {
		pusher = pusher.Grouping(grouping[i], grouping[i+1])
	}
	if err := pusher.PushContext(ctx); err != nil {
		return fmt.Errorf("push metrics: %w", err)
	}
	return nil
}

// ValidateGateway checks a Pushgateway URL. It refuses credentials in the URL: the URL is a
// setting that travels in ConfigMaps, Job specs and logs, where no secret may go.
func ValidateGateway(gateway string) error {
	u, err := url.Parse(gateway)
	if err != nil {
		return errors.New("push gateway: not a URL") // url's error would repeat any password
	}
	if u.User != nil {
		return fmt.Errorf("push gateway %s: credentials in the URL are not allowed", u.Redacted())
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("push gateway %q: want http://host:port or https://host:port", gateway)
	}
	return nil
}

// Coordinator turns what a coordinator run learns into metrics.
type Coordinator struct {
	// head is a vector without labels so that it is exported only once a head is known: a
	// zero would read as a pipeline stale since 1970.
	head, table                      *prometheus.GaugeVec
	windows, records, rawBytes, size prometheus.Gauge
}

var _ coordinator.Observer = (*Coordinator)(nil)

// NewCoordinator registers the coordinator's metrics with reg.
func NewCoordinator(reg prometheus.Registerer) *Coordinator {
	c := &Coordinator{
		head: unsetGauge("karch_last_committed_window_end_timestamp_seconds",
			"End of the newest window with a committed manifest (Unix time): everything before it is archived."),
		table: unsetGauge("karch_table_last_window_end_timestamp_seconds",
			"End of the newest window in the pipeline's Iceberg table (Unix time); behind karch_last_committed_window_end_timestamp_seconds while the table lags the archive."),
		windows:  gauge("karch_run_committed_windows", "Windows whose manifest the last run committed."),
		records:  gauge("karch_run_committed_records", "Records in the windows the last run committed."),
		rawBytes: gauge("karch_run_committed_raw_bytes", "Uncompressed JSON Lines bytes in the windows the last run committed."),
		size:     gauge("karch_run_committed_stored_bytes", "Stored (compressed) bytes in the windows the last run committed."),
	}
	reg.MustRegister(c.head, c.table, c.windows, c.records, c.rawBytes, c.size)
	return c
}

// Head implements coordinator.Observer.
func (c *Coordinator) Head(w archive.Window) {
	c.head.WithLabelValues().Set(float64(w.End.Unix()))
}

// Table implements coordinator.Observer.
func (c *Coordinator) Table(w archive.Window) {
	c.table.WithLabelValues().Set(float64(w.End.Unix()))
}

// Window implements coordinator.Observer. A window another run had committed counts
// nowhere: these gauges say what this run archived.
func (c *Coordinator) Window(r coordinator.WindowResult) {
	if !r.Committed {
		return
	}
	c.windows.Inc()
	c.records.Add(float64(r.Records))
	c.rawBytes.Add(float64(r.RawBytes))
	c.size.Add(float64(r.Bytes))
}

// Backfill is a backfill's progress, set as it goes and pushed while it runs: a backfill
// lasts hours, and a push only at its end would leave it dark until then.
type Backfill struct {
	windows, committed, records, rawBytes prometheus.Gauge
}

// NewBackfill registers the backfill's metrics with reg.
func NewBackfill(reg prometheus.Registerer) *Backfill {
	b := &Backfill{
		windows:   gauge("karch_backfill_windows", "Windows in the backfill's range."),
		committed: gauge("karch_backfill_committed_windows", "Windows of the range committed so far, by this run or an earlier one."),
		records:   gauge("karch_backfill_committed_records", "Records in the range's committed windows."),
		rawBytes:  gauge("karch_backfill_committed_raw_bytes", "Uncompressed JSON Lines bytes in the range's committed windows."),
	}
	reg.MustRegister(b.windows, b.committed, b.records, b.rawBytes)
	return b
}

// Progress records where the backfill stands.
func (b *Backfill) Progress(p coordinator.BackfillProgress) {
	b.windows.Set(float64(p.Windows))
	b.committed.Set(float64(p.Committed))
	b.records.Set(float64(p.Records))
	b.rawBytes.Set(float64(p.RawBytes))
}

// Shard turns a shard's receipt into metrics. Its gauges are vectors without labels, exported
// only once a receipt is known: a shard that fails pushes none, so the Pushgateway keeps the
// last receipt's values rather than zeros.
type Shard struct {
	pieces, records, rawBytes, size *prometheus.GaugeVec
}

// NewShard registers the shard's metrics with reg; call it once per registry.
func NewShard(reg prometheus.Registerer) *Shard {
	s := &Shard{
		pieces:   unsetGauge("karch_shard_pieces", "Pieces in the shard's receipt."),
		records:  unsetGauge("karch_shard_records", "Records in the shard's receipt."),
		rawBytes: unsetGauge("karch_shard_raw_bytes", "Uncompressed JSON Lines bytes in the shard's receipt."),
		size:     unsetGauge("karch_shard_stored_bytes", "Stored (compressed) bytes in the shard's receipt."),
	}
	reg.MustRegister(s.pieces, s.records, s.rawBytes, s.size)
	return s
}

// Receipt records the shard's receipt; a later receipt replaces an earlier one.
func (s *Shard) Receipt(r *archive.Receipt) {
	s.pieces.WithLabelValues().Set(float64(len(r.Pieces)))
	s.records.WithLabelValues().Set(float64(r.Records))
	s.rawBytes.WithLabelValues().Set(float64(r.RawBytes))
	s.size.WithLabelValues().Set(float64(r.Bytes))
}

// unsetGauge is a gauge that is exported only once it is set.
func unsetGauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, nil)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

// Audit is what karch verify pushes: the newest window it verified and the problems it
// found, so that a failed audit alerts like a failed run.
type Audit struct {
	newest   *prometheus.GaugeVec
	problems prometheus.Gauge
	windows  prometheus.Gauge
}

// NewAudit builds the audit's metrics on reg.
func NewAudit(reg prometheus.Registerer) *Audit {
	a := &Audit{
		newest: unsetGauge("karch_verify_newest_window_end_timestamp_seconds",
			"End of the newest committed window the last verify checked (Unix time)."),
		problems: gauge("karch_verify_problems", "Problems the last verify found: missing, corrupt or mismatched objects, holes in the chain."),
		windows:  gauge("karch_verify_windows", "Committed windows the last verify checked."),
	}
	reg.MustRegister(a.newest, a.problems, a.windows)
	return a
}

// Verified records a verify's outcome.
func (a *Audit) Verified(windows, problems int, newest archive.Window) {
	a.windows.Set(float64(windows))
	a.problems.Set(float64(problems))
	if windows > 0 {
		a.newest.WithLabelValues().Set(float64(newest.End.Unix()))
	}
}
