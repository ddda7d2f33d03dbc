package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// coordinator is one karch process of a trial (`karch run`, `karch backfill` or `karch
// restore`), and the shard processes it starts.
type coordinator struct {
	args []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	code int
}

// startCoordinator starts karch with args and env, its output and its shards' in the file log.
// A file, not a pipe: shards may outlive a killed coordinator, and a pipe would hold its Wait
// until they end. The process gets a process group of its own, so that its shards can be
// killed with it at the trial's end.
func startCoordinator(karch string, args []string, log string, env []string) (*coordinator, error) {
	out, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	c := &coordinator{args: args, cmd: exec.Command(karch, args...), log: log, done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start karch %s: %w", args[0], err)
	}
	go func() {
		defer close(c.done)
		err := c.cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit) && exit.ExitCode() >= 0:
			c.code = exit.ExitCode()
		case errors.As(err, &exit):
			c.code = 128 + int(exit.Sys().(syscall.WaitStatus).Signal()) // as a pod reports a killed container
		default:
			c.code = -1
		}
	}()
	return c, nil
}

func (c *coordinator) pid() int { return c.cmd.Process.Pid }

// output is what the coordinator and its shards have written so far.
func (c *coordinator) output() string {
	raw, err := os.ReadFile(c.log)
	if err != nil {
		return err.Error()
	}
	return string(raw)
}

// wait waits for the coordinator to exit, at most d; false if it is still running.
func (c *coordinator) wait(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (c *coordinator) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// killGroup kills the coordinator and every shard it started, including those that outlived
// it, so that nothing of a trial runs into the next.
func (c *coordinator) killGroup() {
	_ = syscall.Kill(-c.pid(), syscall.SIGCONT) // a stopped process dies only once continued
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	<-c.done
}
