package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// table is the trial's Iceberg table, one of its own in the catalog's chaos namespace.
func (t *Trial) table() string { return "chaos.t_" + strings.ReplaceAll(t.pipeline, "-", "_") }

// tableCheck is what `karch verify --table --json` says of the table.
type tableCheck struct {
	Table *struct {
		Records  int64             `json:"records"`
		Lagging  []json.RawMessage `json:"lagging"`
		Problems []string          `json:"problems"`
	} `json:"table"`
}

// checkTable has karch verify the archive deeply and the table against it. A committed
// window the table lacks is the next run's to append, so a coordinator runs while any lags,
// at most cleanRuns times; then the table must hold every record the checker read.
func (t *Trial) checkTable(res *Result) error {
	for range cleanRuns {
		code, out, err := t.output("verify", "--deep", "--table", "--json")
		if err != nil {
			return err
		}
		var c tableCheck
		if jerr := json.Unmarshal(out, &c); jerr != nil || c.Table == nil {
			return fmt.Errorf("karch verify --table: exit %d, no table in its report: %s", code, out)
		}
		if code != 0 || len(c.Table.Problems) > 0 {
			return fmt.Errorf("karch verify --table: exit %d: %s", code, strings.Join(c.Table.Problems, "; "))
		}
		if len(c.Table.Lagging) == 0 {
			if c.Table.Records != res.Records {
				return fmt.Errorf("the table holds %d records, the archive %d", c.Table.Records, res.Records)
			}
			return nil
		}
		t.awaitLease() // a killed coordinator's, which the next would find held
		r, err := t.Start()
		if err != nil {
			return err
		}
		if err := t.Wait(r); err != nil {
			return err
		}
	}
	return fmt.Errorf("wedged: %d runs without faults left committed windows out of the table", cleanRuns)
}

// output runs karch with args and the trial's settings, and returns its exit code and
// standard output; its standard error goes to the trial's folder.
func (t *Trial) output(args ...string) (int, []byte, error) {
	errLog, err := os.Create(fmt.Sprintf("%s/%s.log", t.dir, args[0]))
	if err != nil {
		return 0, nil, err
	}
	defer errLog.Close()
	cmd := exec.CommandContext(t.ctx, t.karch, args...)
	cmd.Env = append(os.Environ(), t.Env()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, errLog
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.Bytes(), nil
	}
	return 0, out.Bytes(), err
}
