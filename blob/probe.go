package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/karch-archive/karch/failure"
)

// ErrIgnoresConditional is a store that let a second conditional create of one key replace
// the first: with it, nothing stops two coordinators from committing one window twice.
var ErrIgnoresConditional = errors.New("the store ignores If-None-Match: a second create of the same key was not refused, so karch's exactly-once commit has no fence")

// ProbeConditionalCreate creates key with size bytes, conditionally, then tries again: the
// store must refuse the second create. A size over one part goes through a multipart upload,
// whose completion must honour the condition too. key must be new; the probe leaves it.
func ProbeConditionalCreate(ctx context.Context, b Bucket, key string, size int) error {
	data := bytes.Repeat([]byte("karch conditional-create probe\n"), size/31+1)[:size]
	_, err := b.Put(ctx, key, bytes.NewReader(data), PutOptions{IfAbsent: true})
	if err != nil && !IsExists(err) { // exists: a retry of this very create met its first try
		return fmt.Errorf("probe %s: first create: %w", key, err)
	}
	_, err = b.Put(ctx, key, bytes.NewReader(data), PutOptions{IfAbsent: true})
	switch {
	case IsExists(err):
		return nil
	case err == nil:
		return failure.Permanent(fmt.Errorf("probe %s: %w", key, ErrIgnoresConditional))
	default:
		return fmt.Errorf("probe %s: second create: %w", key, err)
	}
}
