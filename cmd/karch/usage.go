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
	fmt.Fprintln(w, "\nRun 'karch <command> -h' for a command's flags.")
}
