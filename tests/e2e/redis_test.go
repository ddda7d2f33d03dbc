package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karch-archive/karch/internal/testenv"
)

// The lease as that user, its password read from a file as a mounted Secret gives it: a
// missing file, a password given twice and a wrong password each stop the run with exit 3
// and the reason, before any window; the right one archives every record, and the password
// is in no output.
func TestRunRedisPasswordFile(t *testing.T) {
	p := newRunPipeline(t, 2, 1000)
	user, password := testenv.RedisUser(t, append([]string{"~karch:*"}, testenv.LeaseCommands...)...)
	dir := t.TempDir()
	good, wrong := filepath.Join(dir, "password"), filepath.Join(dir, "wrong")
	if err := os.WriteFile(good, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte(password+"-not\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := append(p.env, "KARCH_REDIS_USERNAME="+user)
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"missing file", []string{"KARCH_REDIS_PASSWORD_FILE=" + filepath.Join(dir, "none")}, "KARCH_REDIS_PASSWORD_FILE"},
		{"given twice", []string{"KARCH_REDIS_PASSWORD_FILE=" + good, "KARCH_REDIS_PASSWORD=" + password}, "both set"},
		{"wrong password", []string{"KARCH_REDIS_PASSWORD_FILE=" + wrong}, "WRONGPASS"},
	} {
		p.env = append(append([]string(nil), base...), tc.env...)
		cmd, out := p.run(t)
		if code, line := exitCode(t, cmd), lastLine(out.String()); code != 3 || !strings.Contains(line, tc.want) || strings.Contains(out.String(), password) {
			t.Fatalf("%s: exit %d, last line %q; want 3 with %q and no password:\n%s", tc.name, code, line, tc.want, out)
		}
	}
	if objs := p.objects(t); len(objs) != 0 {
		t.Fatalf("refused runs wrote %d objects", len(objs))
	}
	p.env = append(append([]string(nil), base...), "KARCH_REDIS_PASSWORD_FILE="+good)
	cmd, out := p.run(t)
	if code := exitCode(t, cmd); code != 0 || strings.Contains(out.String(), password) {
		t.Fatalf("exit %d (want 0, and no password in the output):\n%s", code, out)
	}
	p.assertCommitted(t)
}
