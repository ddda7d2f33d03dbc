// Package alerts tests the alerts of deploy/base/prometheusrule.yaml with promtool's rule unit
// tests, against synthetic series: what each alert fires on, and what it must not.
//
// promtool is built by tests/services/services.sh (`make services-up`, `make test`) and found
// through KARCH_TEST_PROMTOOL. Without it the tests fail: a skip would pass alerts nobody
// evaluated.
package alerts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	ruleFile  = "../../deploy/base/prometheusrule.yaml"
	configMap = "../../deploy/base/configmap.yaml"
	testFile  = "testdata/rules_test.yaml"
	// rulesName is what testFile's rule_files names.
	rulesName = "karch.rules.yaml"
	// margin is KarchArchiveBehind's allowance on top of window and lateness: the CronJob's
	// offset past lateness plus a run's deadline (see the rule's comment).
	margin = time.Hour
)

func TestRules(t *testing.T) {
	promtool := promtoolPath(t)
	dir := t.TempDir()
	writeRules(t, filepath.Join(dir, rulesName))
	test := filepath.Join(dir, filepath.Base(testFile))
	copyFile(t, testFile, test)
	runPromtool(t, promtool, test)
}

// TestEveryAlertHasCases asks testFile for a case where each alert fires and one where it
// stays silent, so that a new alert does not go untested.
func TestEveryAlertHasCases(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, testFile, &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fires[a.Alertname] = fires[a.Alertname] || len(a.ExpAlerts) > 0
			silent[a.Alertname] = silent[a.Alertname] || len(a.ExpAlerts) == 0
		}
	}
	for _, name := range alertNames(t) {
		if !fires[name] || !silent[name] {
			t.Errorf("alert %s: %s wants a case where it fires (%v) and one where it is silent (%v)", name, testFile, fires[name], silent[name])
		}
	}
}

// TestArchiveBehindFollowsPipeline checks KarchArchiveBehind's threshold against the
// pipeline's KARCH_WINDOW and KARCH_LATENESS in configMap: a head just inside window +
// lateness + margin stays silent, one just outside fires.
func TestArchiveBehindFollowsPipeline(t *testing.T) {
	promtool := promtoolPath(t)
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	readYAML(t, configMap, &cm)
	limit := duration(t, cm.Data, "KARCH_WINDOW") + duration(t, cm.Data, "KARCH_LATENESS") + margin
	dir := t.TempDir()
	writeRules(t, filepath.Join(dir, rulesName))
	test := filepath.Join(dir, "boundary_test.yaml")
	if err := os.WriteFile(test, []byte(boundaryTest(limit)), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, promtool, test)
}

// boundaryTest is a rule test of two heads that stay a constant age behind, a minute either
// side of limit, evaluated long after any `for:` has run out.
func boundaryTest(limit time.Duration) string {
	minutes := int(limit / time.Minute)
	series := func(pipeline string, age int) string {
		// The head is 60 s later each minute: -age*60 at 0, so always age minutes behind.
		return fmt.Sprintf("      - series: 'karch_last_committed_window_end_timestamp_seconds{job=%q,pipeline=%q}'\n"+
			"        values: '%d+60x%d'\n", "karch-coordinator", pipeline, -age*60, 3*minutes)
	}
	return "rule_files: [" + rulesName + "]\nevaluation_interval: 1m\ntests:\n" +
		"  - interval: 1m\n    input_series:\n" +
		series("inside", minutes-1) + series("outside", minutes+1) +
		"    promql_expr_test:\n" +
		fmt.Sprintf("      - eval_time: %dm\n", 3*minutes) +
		"        expr: count by (pipeline) (ALERTS{alertname=\"KarchArchiveBehind\", alertstate=\"firing\"})\n" +
		"        exp_samples:\n          - labels: '{pipeline=\"outside\"}'\n            value: 1\n"
}

// promtoolPath finds promtool through KARCH_TEST_PROMTOOL, or fails saying how to build it.
func promtoolPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("KARCH_TEST_PROMTOOL")
	if path == "" {
		t.Fatal("KARCH_TEST_PROMTOOL is not set: run this test with `make test`, which builds promtool and sets it")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("KARCH_TEST_PROMTOOL: %v: build promtool with `make services-up` or run `make test`", err)
	}
	return path
}

// writeRules writes the PrometheusRule's spec.groups, which is a Prometheus rule file, to path.
func writeRules(t *testing.T, path string) {
	t.Helper()
	var rule struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups yaml.Node `yaml:"groups"`
		} `yaml:"spec"`
	}
	readYAML(t, ruleFile, &rule)
	if rule.Kind != "PrometheusRule" || rule.Spec.Groups.Kind != yaml.SequenceNode {
		t.Fatalf("%s: want a PrometheusRule with spec.groups, got kind %q", ruleFile, rule.Kind)
	}
	b, err := yaml.Marshal(map[string]*yaml.Node{"groups": &rule.Spec.Groups})
	if err != nil {
		t.Fatalf("encode rule groups: %v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func alertNames(t *testing.T) []string {
	t.Helper()
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	readYAML(t, ruleFile, &rule)
	var names []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s: no alerts", ruleFile)
	}
	return names
}

func runPromtool(t *testing.T, promtool, test string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), promtool, "test", "rules", test).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", filepath.Base(test), err, out)
	}
	t.Logf("promtool test rules %s:\n%s", filepath.Base(test), strings.TrimSpace(string(out)))
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

func duration(t *testing.T, data map[string]string, key string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(data[key])
	if err != nil {
		t.Fatalf("%s: %s: %v", configMap, key, err)
	}
	return d
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
