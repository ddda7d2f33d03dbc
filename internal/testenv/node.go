package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karch-archive/karch/internal/ociimage"
)

// Node is the local Kubernetes node that `make test` starts beside the control plane
// (tests/services/services.sh): a kubelet with containerd and runc, which runs pods as real
// containers from images imported into it.
type Node struct {
	// Dir is the node's state directory: containerd/containerd.sock, pod-logs/.
	Dir string
	// Ctr is containerd's own client.
	Ctr string
}

// ErrNotRunning is what Kill returns for a container that has no running process.
var ErrNotRunning = errors.New("container not running")

// KubeNode is the local node, failing the test when `make test` has not started it.
func KubeNode(t testing.TB) Node {
	t.Helper()
	n, err := nodeFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nodeFromEnv() (Node, error) {
	n := Node{Dir: os.Getenv("KARCH_TEST_NODE"), Ctr: os.Getenv("KARCH_TEST_CTR")}
	if n.Dir == "" || n.Ctr == "" {
		return n, errors.New("KARCH_TEST_NODE or KARCH_TEST_CTR is not set: this test needs the local Kubernetes node; run it with `make test`, which starts it and sets them")
	}
	if _, err := os.Stat(n.socket()); err != nil {
		return n, fmt.Errorf("KARCH_TEST_NODE: %v: start the node with `make kube-up`", err)
	}
	return n, nil
}

func (n Node) socket() string { return filepath.Join(n.Dir, "containerd", "containerd.sock") }

func (n Node) ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, n.Ctr, append([]string{"--address", n.socket(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Kill sends SIGKILL to a container's process, as the kernel's OOM killer or a crashed node
// would: no grace, no clean-up. id is the container ID of a pod's status
// (containerd://<id>).
func (n Node) Kill(ctx context.Context, id string) error {
	id, ok := strings.CutPrefix(id, "containerd://")
	if !ok || id == "" {
		return ErrNotRunning
	}
	out, err := n.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
	if err != nil && (bytes.Contains(out, []byte("not found")) || bytes.Contains(out, []byte("process already finished"))) {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	return err
}

// PodLog is what a pod's container wrote, every attempt of it in order, read from the
// kubelet's log files without their CRI prefix (time, stream, tag). The node has no address
// the API server could reach outside 127.0.0.1, so `kubectl logs` does not work on it.
func (n Node) PodLog(namespace, pod, uid, container string) ([]byte, error) {
	dir := filepath.Join(n.Dir, "pod-logs", namespace+"_"+pod+"_"+uid, container)
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no log of pod %s/%s container %s in %s", namespace, pod, container, dir)
	}
	slices.Sort(files)
	var out bytes.Buffer
	for _, f := range files {
		if err := appendCRILog(&out, f); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// appendCRILog copies a CRI log file's messages: "<time> <stream> <P|F> <message>", where P
// marks a line the runtime split and F the end of one.
func appendCRILog(out *bytes.Buffer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		fields := strings.SplitN(lines.Text(), " ", 4)
		if len(fields) < 4 {
			continue
		}
		out.WriteString(fields[3])
		if fields[2] == "F" {
			out.WriteByte('\n')
		}
	}
	return lines.Err()
}

// KarchImage builds karch from the checkout as a static binary, with build tags when given,
// puts it in an OCI image named name (as `make image` does) and imports it into the local
// node: how the Kubernetes tests run the code they test, never an image from elsewhere.
func KarchImage(ctx context.Context, name string, tags ...string) error {
	n, err := nodeFromEnv()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "karch-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "karch")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", strings.Join(tags, ","), "-o", bin,
		"github.com/karch-archive/karch/cmd/karch")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build karch for %s: %w\n%s", name, err, out)
	}
	archive := filepath.Join(dir, "image.tar")
	spec := ociimage.Spec{Name: name, Binary: bin, Path: "/karch", User: "65532:65532", CACerts: "/etc/ssl/certs/ca-certificates.crt"}
	if err := ociimage.Write(spec, archive); err != nil {
		return err
	}
	_, err = n.ctr(ctx, "images", "import", archive)
	return err
}
