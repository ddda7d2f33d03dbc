package audit

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Long commands draw a progress bar when stdout is a terminal, and write no escape code or
// carriage return when it is not.
func TestProgressOnlyOnATerminal(t *testing.T) {
	a := newArchive(t)
	window := t0.Format(time.RFC3339)
	dst := produceHours(t, a.brokers) // any topic with two partitions will do as a target
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--deep"}, "verified "},
		{[]string{"restore", "--window", window, "--to-topic", dst, "--dry-run"}, "records"},
		// karch run with the local runner: a fresh pipeline over the same topic and store.
		{[]string{"run", "--pipeline", a.pipeline + "-again", "--start", window, "--until", t0.Add(3 * time.Hour).Format(time.RFC3339),
			"--lateness", "0s", "--karch", karchBin}, "shards"},
	} {
		screen := a.onTerminal(t, tc.args...)
		if !strings.Contains(screen, tc.want) || !strings.Contains(screen, "\r") {
			t.Errorf("karch %v on a terminal shows no progress bar with %q:\n%q", tc.args, tc.want, screen)
		}
		_, piped := a.karch(t, tc.args...)
		if strings.ContainsAny(piped, "\r\x1b") {
			t.Errorf("karch %v into a pipe draws a bar:\n%q", tc.args, piped)
		}
	}
}

// onTerminal runs karch on the archive under a pseudo-terminal and returns what it drew.
func (a *archived) onTerminal(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(karchBin, a.args(append(args, "--log-level", "error"))...)
	cmd.Env = append(os.Environ(), a.env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen bytes.Buffer
	_, _ = io.Copy(&screen, tty) // ends with EIO once the process has exited
	if err := cmd.Wait(); err != nil {
		t.Fatalf("karch %v on a terminal: %v\n%s", args, err, screen.String())
	}
	return screen.String()
}
