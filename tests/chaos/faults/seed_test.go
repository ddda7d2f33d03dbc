package faults_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

// TestS3ProxySeeded: a rule with probability 0.3 fires on the same requests for the same
// seed, and on others for another seed.
func TestS3ProxySeeded(t *testing.T) {
	a, b, other := fired(t, 42), fired(t, 42), fired(t, 43)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 42 fired on %v, then on %v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 42 and 43 both fired on %v", a)
	}
	if len(a) < 4 || len(a) > 20 {
		t.Errorf("fired on %d of 40 requests at probability 0.3", len(a))
	}
	t.Logf("seed 42 fired on requests %v", a)
}

// fired sends 40 HEAD requests, one after the other, through a proxy seeded with seed and a
// rule of probability 0.3, and returns the numbers of those the rule fired on.
func fired(t *testing.T, seed uint64) []int {
	f := newS3Fixture(t, seed)
	f.addRule(t, faults.Rule{Ops: []faults.Op{faults.OpHeadObject}, Probability: 0.3, Action: faults.Status500})
	c := f.through(1)
	key := f.key("plan.json")
	var out []int
	for i := range 40 {
		_, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &f.srv.bucket, Key: &key})
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == 500 {
			out = append(out, i)
		}
	}
	if n := len(f.proxy.Events()); n != len(out) {
		t.Errorf("%d events for %d faults", n, len(out))
	}
	return out
}
