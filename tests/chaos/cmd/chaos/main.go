// Command chaos is `make chaos`: every chaos scenario with several seeds against the private
// servers, a results table on standard output, and the same as markdown and JSON in -out.
// It exits 0 only if every trial committed every window with no record lost, duplicated or
// mismatched.
//
//	go run ./tests/chaos/cmd/chaos -seeds 1,2,3 -out tests/chaos/results
//	go run ./tests/chaos/cmd/chaos -seeds 7 -run 'kill-shard'   # replay one seed of some scenarios
//	go run ./tests/chaos/cmd/chaos -up                           # start the private servers only
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/karch-archive/karch/tests/chaos"
)

func main() {
	seeds := flag.String("seeds", "1,2,3", "comma-separated seeds; each scenario runs once per seed")
	run := flag.String("run", "", "run only the scenarios whose name matches this regular expression")
	out := flag.String("out", "", "write results.md and results.json here (default: nowhere)")
	logs := flag.String("logs", "", "keep every trial's logs here (default: a temporary directory, removed when all pass)")
	up := flag.Bool("up", false, "only start (or reuse) the private servers, and exit")
	flag.Parse()
	if *up {
		if err := serversUp(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			os.Exit(1)
		}
		return
	}
	if err := chaosRun(*seeds, *run, *out, *logs); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func chaosRun(seedList, pattern, out, logs string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var seeds []uint64
	for _, s := range strings.Split(seedList, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("-seeds: %q: %w", s, err)
		}
		seeds = append(seeds, n)
	}
	match, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	var scenarios []*chaos.Scenario
	for _, sc := range chaos.AllScenarios() {
		if match.MatchString(sc.Name) {
			scenarios = append(scenarios, sc)
		}
	}
	if len(scenarios) == 0 {
		return fmt.Errorf("-run %q matches no scenario", pattern)
	}
	h, cleanup, err := harness(ctx, logs)
	if err != nil {
		return err
	}
	rep := &chaos.Report{Command: "go run ./tests/chaos/cmd/chaos " + strings.Join(os.Args[1:], " "), Started: time.Now()}
	for _, seed := range seeds {
		for _, sc := range scenarios {
			r := h.Run(ctx, sc, seed)
			rep.Add(r)
			fmt.Fprintf(os.Stderr, "chaos: %-34s seed %d: %3d faults, %d runs, %5.1fs: %s\n", sc.Name, seed, r.Faults, r.Runs, r.Seconds, result(r))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Table(os.Stdout)
	if out != "" {
		if err := rep.Write(out, scenarios); err != nil {
			return err
		}
	}
	if !rep.Passed() {
		return fmt.Errorf("%d of %d trials failed; their logs are under %s", rep.Failed, len(rep.Results), h.Dir)
	}
	cleanup()
	return nil
}

// serversUp starts the private servers before `make test` runs its packages: a broker that
// starts while three test binaries and the node share two cores was seen to need over 90 s.
func serversUp() error {
	root, err := chaos.RepoRoot(".")
	if err != nil {
		return err
	}
	return chaos.PrivateServers(root).Up(context.Background())
}

func result(r *chaos.Result) string {
	if r.Passed() {
		return "ok"
	}
	return "FAILED: " + r.Error
}

// harness builds karch, starts the private servers and returns the harness, with a clean-up
// that removes what only a failure would need.
func harness(ctx context.Context, logs string) (*chaos.Harness, func(), error) {
	root, err := chaos.RepoRoot(".")
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "karch-chaos-")
	if err != nil {
		return nil, nil, err
	}
	if logs == "" {
		logs = filepath.Join(tmp, "trials")
	}
	bin := filepath.Join(tmp, "karch")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/karch")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, nil, fmt.Errorf("build karch: %w", err)
	}
	srv := chaos.PrivateServers(root)
	if err := srv.Up(ctx); err != nil {
		return nil, nil, err
	}
	return &chaos.Harness{Servers: srv, Karch: bin, Dir: logs}, func() { os.RemoveAll(tmp) }, nil
}
