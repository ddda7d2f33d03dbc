package checker

import (
	"fmt"
	"strings"
)

// shown is how many refs or problems of each kind String lists.
const shown = 10

// String summarises the report: the counts, then the first refs of each kind and the
// first problems.
func (r *Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "%s: %d committed windows, %d archived records, %d records in Kafka; %d lost, %d duplicated, %d mismatched, %d problems",
		verdict, r.Windows, r.Records, r.Held, len(r.Lost), len(r.Duplicated), len(r.Mismatched), len(r.Problems))
	for _, kind := range []struct {
		name string
		refs []Ref
	}{{"lost", r.Lost}, {"duplicated", r.Duplicated}, {"mismatched", r.Mismatched}} {
		lines := make([]string, len(kind.refs))
		for i, ref := range kind.refs {
			lines[i] = ref.String()
		}
		list(&b, kind.name, lines)
	}
	list(&b, "problems", r.Problems)
	return b.String()
}

func list(b *strings.Builder, name string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s:", name)
	for _, l := range lines[:min(len(lines), shown)] {
		fmt.Fprintf(b, "\n  %s", l)
	}
	if len(lines) > shown {
		fmt.Fprintf(b, "\n  ... and %d more", len(lines)-shown)
	}
}
