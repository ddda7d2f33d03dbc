package main

import (
	"fmt"
	"io"
	"sort"
)

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: karch <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, `
Exit codes: 0 done, 1 retryable (run it again), 2 a crash (retried like 1), 3 permanent
(a setting, a missing topic, refused access, a corrupt object: read the one-line reason).

Run 'karch <command> -h' for a command's flags; docs/settings.md lists every setting.`)
}

// examples are each command's first example, printed under its purpose by its -h.
var examples = map[string]string{
	"run":      "karch run --config karch.yaml",
	"plan":     "karch plan --config karch.yaml",
	"status":   "karch status --config karch.yaml --json",
	"backfill": "karch backfill --config karch.yaml --from 2026-10-01T00:00Z --to 2026-11-01T00:00Z",
	"verify":   "karch verify --config karch.yaml --deep --table",
	"cat":      "karch cat --config karch.yaml --window 2026-11-24T23:00Z --partition 3",
	"restore":  "karch restore --config karch.yaml --window 2026-11-24T23:00Z --to-topic cdr-restored",
	"doctor":   "karch doctor --config karch.yaml",
	"shard":    "karch shard --plan s3://bucket/cdr/dt=2026-11-24/window=2300Z-1h/plan.json --index 0",
}

// commandHelp is the head of a command's -h: its purpose in one line, and an example.
func commandHelp(name string) string {
	return fmt.Sprintf("karch %s: %s\nexample: %s\n\n", name, commands[name].summary, examples[name])
}
