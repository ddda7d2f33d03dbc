package coordinator

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Every accepted pipeline name is a valid Kubernetes label value and DNS label (Job names are
// built from it, shortened by kube.JobName when long); the rest are refused before anything
// is written.
func TestPipelineNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"cdr", true},
		{"cdr-eu-1", true},
		{"7", true},
		{strings.Repeat("p", 41), true},
		{"cdr-", false},
		{"-cdr", false},
		{"Cdr", false},
		{"cdr_eu", false},
		{"cdr.eu", false},
		{"", false},
		{strings.Repeat("p", 42), false},
	} {
		c := DefaultConfig()
		c.Pipeline, c.Brokers, c.Topic = tc.name, []string{"b:9092"}, "t"
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "pipeline"))) {
			t.Errorf("pipeline %q: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok {
			if errs := validation.IsValidLabelValue(tc.name); len(errs) > 0 {
				t.Errorf("accepted %q is not a label value: %v", tc.name, errs)
			}
			if errs := validation.IsDNS1123Label(tc.name); len(errs) > 0 {
				t.Errorf("accepted %q makes no DNS label: %v", tc.name, errs)
			}
		}
	}
}
