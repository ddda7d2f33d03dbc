package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/internal/testenv"
)

// lockArgs write every object with an Object Lock retention, so that the policy's
// s3:PutObjectRetention is needed too.
var lockArgs = []string{"--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-retention", "1h"}

// TestRunWithLeastPrivilegePolicy: with deploy/s3-policy.json, its bucket and prefix made the
// test's, as the only rights of its credentials (an STS session whose policy it is), karch run
// archives every record into a locked bucket and karch verify passes. Without one of the
// actions the success path uses, the run stops with exit 3 and names the action and the key.
func TestRunWithLeastPrivilegePolicy(t *testing.T) {
	p := newRunPipeline(t, 2, 500)
	cfg := testenv.LockedS3Config(t)
	var err error
	if p.bucket, err = blob.NewS3(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "KARCH_STORE=s3://"+cfg.Bucket+"/"+cfg.Prefix)
	policy := deployedPolicy(t, cfg.Bucket, cfg.Prefix)
	base := p.env
	as := func(policy string) {
		c := testenv.S3Session(t, policy)
		p.env = append(append([]string(nil), base...), "AWS_ACCESS_KEY_ID="+c.AccessKeyID,
			"AWS_SECRET_ACCESS_KEY="+c.SecretAccessKey, "AWS_SESSION_TOKEN="+c.SessionToken)
	}
	for _, tc := range []struct{ action, want string }{
		{"s3:ListBucket", "allow s3:ListBucket on arn:aws:s3:::" + cfg.Bucket + " with prefix " + cfg.Prefix + "/" + p.name},
		{"s3:PutObject", "allow s3:PutObject and s3:PutObjectRetention on arn:aws:s3:::" + cfg.Bucket + "/" + cfg.Prefix + "/"},
		{"s3:PutObjectRetention", "allow s3:PutObject and s3:PutObjectRetention on arn:aws:s3:::" + cfg.Bucket + "/" + cfg.Prefix + "/"},
		{"s3:GetObject", "allow s3:GetObject on arn:aws:s3:::" + cfg.Bucket + "/" + cfg.Prefix + "/"},
	} {
		as(withoutAction(t, policy, tc.action))
		cmd, out := p.run(t, lockArgs...)
		if code, line := exitCode(t, cmd), lastLine(out.String()); code != 3 || !strings.Contains(line, tc.want) {
			t.Fatalf("without %s: exit %d, last line %q; want 3 naming %q:\n%s", tc.action, code, line, tc.want, out)
		}
	}
	as(policy)
	cmd, out := p.run(t, lockArgs...)
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("with the policy: exit %d, want 0:\n%s", code, out)
	}
	p.assertCommitted(t)
	cmd, out = p.command(t, "verify")
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("karch verify with the policy: exit %d, want 0:\n%s", code, out)
	}
}

// deployedPolicy is deploy/s3-policy.json for bucket and prefix instead of its example's
// karch-archive and cdr.
func deployedPolicy(t *testing.T, bucket, prefix string) string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/s3-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("arn:aws:s3:::karch-archive/cdr/*", "arn:aws:s3:::"+bucket+"/"+prefix+"/*",
		"arn:aws:s3:::karch-archive", "arn:aws:s3:::"+bucket, `"cdr/*"`, `"`+prefix+`/*"`).Replace(string(data))
}

// withoutAction removes one action from every statement of an IAM policy document.
func withoutAction(t *testing.T, policy, action string) string {
	t.Helper()
	var doc struct {
		Version   string
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(policy), &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, st := range doc.Statement {
		var kept []any
		for _, a := range st["Action"].([]any) {
			if a == action {
				found = true
				continue
			}
			kept = append(kept, a)
		}
		st["Action"] = kept
	}
	doc.Statement = slices.DeleteFunc(doc.Statement, func(st map[string]any) bool { return len(st["Action"].([]any)) == 0 })
	if !found {
		t.Fatalf("the policy grants no %s", action)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
