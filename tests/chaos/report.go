package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a whole chaos run: every trial's result, the totals, and how to reproduce it.
type Report struct {
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Results  []*Result `json:"results"`
	Faults   int       `json:"faults"`
	Records  int64     `json:"records_archived"`
	Restored int64     `json:"records_restored"`
	Lost     int       `json:"lost"`
	Dup      int       `json:"duplicated"`
	Mismatch int       `json:"mismatched"`
	Failed   int       `json:"failed_trials"`
}

// Add counts r into the totals.
func (rep *Report) Add(r *Result) {
	rep.Results = append(rep.Results, r)
	rep.Faults += r.Faults
	rep.Records += r.Records
	rep.Restored += r.Restored
	rep.Lost += r.Lost
	rep.Dup += r.Dup
	rep.Mismatch += r.Mismatch
	if !r.Passed() {
		rep.Failed++
	}
}

// Passed is true when every trial passed.
func (rep *Report) Passed() bool { return rep.Failed == 0 && len(rep.Results) > 0 }

// Table prints the results table, one trial a line, and the totals.
func (rep *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tseed\tfaults\truns\texit codes\trecords\trestored\tlost\tdup\tmismatch\tsecs\tresult\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%.0f\t%s\t\n", r.Scenario, r.Seed, r.Faults, r.Runs,
			codes(r.ExitCodes), r.Records, r.Restored, r.Lost, r.Dup, r.Mismatch, r.Seconds, verdict(r))
	}
	fmt.Fprintf(tw, "total (%d trials)\t\t%d\t\t\t%d\t%d\t%d\t%d\t%d\t%.0f\t%d failed\t\n", len(rep.Results), rep.Faults, rep.Records, rep.Restored, rep.Lost, rep.Dup, rep.Mismatch, rep.Seconds, rep.Failed)
	tw.Flush()
	for _, r := range rep.Results {
		if !r.Passed() {
			fmt.Fprintf(w, "\n%s seed %d FAILED: %s\n  logs: %s\n", r.Scenario, r.Seed, r.Error, r.Logs)
		}
	}
}

func codes(cs []int) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = fmt.Sprint(c)
	}
	return strings.Join(s, ",")
}

func verdict(r *Result) string {
	if r.Passed() {
		return "ok"
	}
	return "FAILED"
}

// Markdown writes the table as a markdown document, with the command that made it.
func (rep *Report) Markdown(w io.Writer, scenarios []*Scenario) {
	fmt.Fprintf(w, "# karch chaos results\n\n")
	fmt.Fprintf(w, "Made by `%s` on %s, in %.0f s. Each line is one scenario run with one seed on a fresh topic and store prefix: faults injected at seeded points, then karch rerun without faults until every window committed (and, in the restore scenarios, until a restore succeeded), then the independent checker (tests/chaos/checker) read every record back by offset, and every restored record by its origin.\n\n",
		rep.Command, rep.Started.UTC().Format(time.RFC3339), rep.Seconds)
	fmt.Fprintf(w, "**%d faults injected over %d trials; %d records archived, %d restored; lost %d, duplicated %d, mismatched %d; %d trials failed.**\n\n",
		rep.Faults, len(rep.Results), rep.Records, rep.Restored, rep.Lost, rep.Dup, rep.Mismatch, rep.Failed)
	fmt.Fprintln(w, "| scenario | seed | faults | runs | exit codes seen | records archived | records restored | lost | duplicated | mismatched | seconds | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %s | %d | %d | %d | %d | %d | %.0f | %s |\n", r.Scenario, r.Seed, r.Faults, r.Runs,
			codes(r.ExitCodes), r.Records, r.Restored, r.Lost, r.Dup, r.Mismatch, r.Seconds, verdict(r))
	}
	fmt.Fprintln(w, "\n## Scenarios\n\n| scenario | what it injects |\n|---|---|")
	for _, sc := range scenarios {
		fmt.Fprintf(w, "| %s | %s |\n", sc.Name, sc.About)
	}
}

// Write stores the report as results.md and results.json in dir.
func (rep *Report) Write(dir string, scenarios []*Scenario) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	rep.Markdown(&md, scenarios)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644)
}
