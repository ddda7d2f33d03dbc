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
