// Command karch archives windows of Kafka records to S3-compatible object storage.
//
// main only wires things together: it picks the subcommand, and maps the error that comes
// back to the process exit code of docs/DESIGN.md (0 done, 1 retryable, 3 permanent; 2 is Go's own crash code).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/karch-archive/karch/failure"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"version": {"print karch's version", func(_ context.Context, _ []string, w io.Writer) error {
		_, err := fmt.Fprintln(w, version)
		return err
	}},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "karch: unknown command %q\n", args[0])
		usage(stderr)
		return failure.ExitPermanent
	}
	if err := cmd.run(ctx, args[1:], stdout); err != nil {
		fmt.Fprintf(stderr, "karch %s: %v\n", args[0], err)
		return exitCode(err)
	}
	return 0
}

func exitCode(err error) int { return failure.ExitCode(err) }
