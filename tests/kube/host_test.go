package kube

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karch-archive/karch/internal/testenv"
)

// TestNodeDownLeavesTheHostAsFound stops the local node as `make services-down` does and
// checks, reading the host itself, that it is as the services script recorded it before the
// node first started: sysctls, iptables rules and chains, network links, mounts, cgroups,
// the directories a kubelet and containerd make, and no process of the node left. Then it
// starts the node again. It is the package's only test that is not parallel, so Go runs it
// before all the others, which run pods.
func TestNodeDownLeavesTheHostAsFound(t *testing.T) {
	node := testenv.KubeNode(t)
	record, err := os.ReadFile(filepath.Join(node.Dir, "host.before"))
	if err != nil {
		t.Fatalf("the record of the host before the node started: %v", err)
	}
	if !hasFact(record, "sysctl ") || !hasFact(record, "mount /proc") {
		t.Fatalf("the record of the host is incomplete:\n%s", record)
	}
	defer func() {
		if out, err := exec.Command(servicesScript, "up", "kube").CombinedOutput(); err != nil {
			t.Errorf("services.sh up kube, after the check: %v\n%s", err, out)
		}
	}()
	out := script(t, "down", "node")
	if !strings.Contains(out, "the host is as the node found it") {
		t.Fatalf("services.sh down node did not confirm the host:\n%s", out)
	}
	now := hostFacts(t)
	for _, kind := range []string{"sysctl ", "iptables ", "ip6tables ", "link ", "mount ", "cgroup ", "path "} {
		want, got := facts(record, kind), facts(now, kind)
		if !slices.Equal(want, got) {
			t.Errorf("%sdiffers from before the node started:\nbefore: %q\nnow:    %q", kind, want, got)
		}
	}
	if pids := processesUnder(t, node.Dir); len(pids) > 0 {
		t.Errorf("processes of the node still run after services.sh down: %v", pids)
	}
}

const servicesScript = "../services/services.sh"

func script(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(servicesScript, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func hasFact(facts []byte, prefix string) bool {
	return bytes.Contains(facts, []byte("\n"+prefix)) || bytes.HasPrefix(facts, []byte(prefix))
}

// facts are the sorted lines of one kind.
func facts(all []byte, kind string) []string {
	var out []string
	for line := range strings.Lines(string(all)) {
		if line = strings.TrimSuffix(line, "\n"); strings.HasPrefix(line, kind) {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

// hostFacts reads what the script's record holds, independently of the script: the same
// facts, in its format.
func hostFacts(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, k := range []string{"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
		"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward"} {
		v, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		b.WriteString("sysctl " + k + "=" + strings.TrimSpace(string(v)) + "\n")
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		out, _ := exec.Command(tool + "-save").Output()
		for _, fact := range iptablesFacts(string(out)) {
			b.WriteString(tool + " " + fact + "\n")
		}
	}
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		b.WriteString("link " + l.Name() + "\n")
	}
	for _, m := range mountTargets(t) {
		b.WriteString("mount " + m + "\n")
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	more, _ := filepath.Glob("/sys/fs/cgroup/kubepods*")
	for _, c := range append(cgroups, more...) {
		b.WriteString("cgroup " + c + "\n")
	}
	for _, p := range []string{"/var/log/containers", "/var/log/pods", "/run/containerd", "/var/run/nri", "/var/lib/kubelet",
		"/var/lib/containerd", "/etc/cni", "/opt/cni", "/var/lib/cni", "/run/netns", "/etc/kubernetes", "/run/runc"} {
		if _, err := os.Lstat(p); err == nil {
			b.WriteString("path " + p + "\n")
		}
	}
	return b.Bytes()
}

// iptablesFacts are the rules and chains of iptables-save's output, each after its table: a
// table that exists with nothing in it, as iptables-nft makes them on first use, is no fact.
func iptablesFacts(save string) []string {
	builtin := map[string]bool{":INPUT": true, ":OUTPUT": true, ":FORWARD": true, ":PREROUTING": true, ":POSTROUTING": true}
	var table string
	var out []string
	for line := range strings.Lines(save) {
		line = strings.TrimSuffix(line, "\n")
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case len(f) == 0 || strings.HasPrefix(line, "#") || line == "COMMIT":
		case strings.HasPrefix(line, ":"):
			if len(f) >= 2 && !(builtin[f[0]] && f[1] == "ACCEPT") {
				out = append(out, table+" "+f[0]+" "+f[1])
			}
		default:
			out = append(out, table+" "+line)
		}
	}
	return out
}

// mountTargets are the mount points of /proc/self/mountinfo, unescaped as findmnt prints them.
func mountTargets(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if fields := strings.Fields(lines.Text()); len(fields) > 4 {
			out = append(out, strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(fields[4]))
		}
	}
	return out
}

// processesUnder lists processes whose command line names dir: the node's kubelet,
// containerd and shims all do.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err == nil && bytes.Contains(cmd, []byte(dir+"/")) {
			out = append(out, filepath.Base(filepath.Dir(p))+": "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return out
}
