package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

// TestPeerPID: the PID of the process at the other end of a connection, for a child process
// and for this one.
func TestPeerPID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	t.Run("child", func(t *testing.T) {
		// exec keeps the PID: bash becomes sleep, which holds the socket as descriptor 3.
		cmd := startChild(t, fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; exec sleep 30", port))
		conn := accept(t, ln)
		defer conn.Close()
		if pid, err := faults.PeerPID(conn.RemoteAddr().String()); err != nil || pid != cmd.Process.Pid {
			t.Fatalf("PeerPID = %d, %v; want the child's %d", pid, err, cmd.Process.Pid)
		}
	})
	t.Run("self", func(t *testing.T) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conn := accept(t, ln)
		defer conn.Close()
		if pid, err := faults.PeerPID(conn.RemoteAddr().String()); err != nil || pid != os.Getpid() {
			t.Fatalf("PeerPID = %d, %v; want this process, %d", pid, err, os.Getpid())
		}
	})
	t.Run("shared", func(t *testing.T) {
		// Without exec (and with a command after it, lest bash exec the last one itself), bash
		// forks sleep, and both hold the socket.
		startChild(t, fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 30; exit 0", port))
		conn := accept(t, ln)
		defer conn.Close()
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err = faults.PeerPID(conn.RemoteAddr().String()); err != nil {
				break // sleep has started
			}
		}
		if err == nil || !strings.Contains(err.Error(), "several processes") {
			t.Fatalf("PeerPID of a shared socket: %v, want an error naming several processes", err)
		}
	})
	t.Run("port reused", func(t *testing.T) {
		// A child process holds a socket at the same local address as ours, connected to a
		// server of its own: Linux lets connections to different servers share a port.
		mine := dialFrom(t, "127.0.0.1:0", ln.Addr().String())
		defer mine.Close()
		conn := accept(t, ln)
		defer conn.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "FAULTS_HELPER_BIND="+mine.LocalAddr().String())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "connected\n" {
			t.Fatalf("helper: %q, %v", line, err)
		}
		if pid, err := faults.PeerPID(conn.RemoteAddr().String()); err != nil || pid != os.Getpid() {
			t.Fatalf("PeerPID = %d, %v; want this process, %d", pid, err, os.Getpid())
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := faults.PeerPID("127.0.0.1:1"); !errors.Is(err, faults.ErrNoPeer) {
			t.Fatalf("PeerPID of no socket: %v, want ErrNoPeer", err)
		}
	})
}

// TestPeerPIDThroughS3Proxy: a hook finds the process that sent the request, as the chaos
// harness does to kill it at an exact moment.
func TestPeerPIDThroughS3Proxy(t *testing.T) {
	f := newS3Fixture(t, 1)
	pids := make(chan int, 1)
	f.addRule(t, faults.Rule{Action: faults.Hook(faults.BeforeForward, func(_ context.Context, r faults.Request) error {
		pid, err := faults.PeerPID(r.RemoteAddr)
		if err != nil {
			t.Errorf("PeerPID(%s): %v", r.RemoteAddr, err)
		}
		pids <- pid
		return nil
	})})
	cmd := exec.Command("curl", "-s", "-o", "/dev/null", f.proxy.URL()+"/"+f.srv.bucket+"/"+f.key("plan.json"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start curl: %v", err)
	}
	pid := <-pids
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl: %v", err)
	}
	if pid != cmd.Process.Pid {
		t.Fatalf("PeerPID = %d, want curl's %d", pid, cmd.Process.Pid)
	}
}

func startChild(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // to kill the sleep a fork leaves too
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bash: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	return c
}

// TestHelperProcess is the child of the "port reused" case when FAULTS_HELPER_BIND is set:
// it connects from that address to a listener of its own and holds the connection.
func TestHelperProcess(t *testing.T) {
	local := os.Getenv("FAULTS_HELPER_BIND")
	if local == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, local, ln.Addr().String())
	defer c.Close()
	fmt.Println("connected")
	time.Sleep(30 * time.Second)
}

// dialFrom connects from local to remote with SO_REUSEADDR, so that another socket with it
// may share local.
func dialFrom(t *testing.T, local, remote string) net.Conn {
	t.Helper()
	la, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: la, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", remote)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", remote, local, err)
	}
	return c
}
