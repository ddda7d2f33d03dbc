package chaos

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// waitGone waits until pid no longer exists, or is a zombie that its parent has yet to reap:
// either way it runs no more code.
func waitGone(pid int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, ok := procState(pid); !ok || st == 'Z' {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("process %d still alive 30s after SIGKILL", pid)
}

// procState is the state letter of /proc/<pid>/stat (R, S, T, Z...), false when the process
// is gone.
func procState(pid int) (byte, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses; the last ')' ends it.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 || i+2 >= len(raw) {
		return 0, false
	}
	return raw[i+2], true
}

// parentOf is the parent PID of pid, false when pid is gone.
func parentOf(pid int) (int, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, false
	}
	var state byte
	var ppid int
	if _, err := fmt.Sscanf(string(raw[i+2:]), "%c %d", &state, &ppid); err != nil {
		return 0, false
	}
	return ppid, true
}

// children are the live processes whose parent is pid: a coordinator's shard processes.
func children(pid int) []int {
	entries, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(child); ok && ppid == pid {
			if st, ok := procState(child); ok && st != 'Z' {
				out = append(out, child)
			}
		}
	}
	return out
}

// kill9 kills pid with SIGKILL and waits until it runs no more code; false when it was gone
// already, so that a fault is counted only when it hit a live process.
func kill9(pid int) bool {
	if st, ok := procState(pid); !ok || st == 'Z' {
		return false
	}
	if syscall.Kill(pid, syscall.SIGKILL) != nil {
		return false
	}
	_ = waitGone(pid)
	return true
}
