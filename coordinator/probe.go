package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
)

// checkStore proves, once per pipeline and store and before the pipeline's first write, that
// the store refuses a second conditional create of a key: the commit of every manifest rests
// on it, and a store that ignores If-None-Match would let two coordinators both commit. The
// proof is recorded; later runs find the record with one HEAD.
func (c *coordinator) checkStore(ctx context.Context) error {
	dir := archive.ProbeDir(c.cfg.Pipeline)
	marker := dir + archive.ProbeMarkerName
	_, err := c.deps.Bucket.Head(ctx, marker)
	if err == nil {
		return nil
	}
	if !blob.IsNotFound(err) {
		return fmt.Errorf("store probe: %w", err)
	}
	if err := blob.ProbeConditionalCreate(ctx, c.deps.Bucket, dir+"create-"+c.runID, 64); err != nil {
		return err
	}
	data, err := json.MarshalIndent(archive.ProbeRecord{Format: archive.ProbeFormat, Pipeline: c.cfg.Pipeline,
		ProbedAt: c.deps.Now().UTC(), KarchVersion: c.deps.Version}, "", "  ")
	if err != nil {
		return err
	}
	_, err = c.deps.Bucket.Put(ctx, marker, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if err != nil && !blob.IsExists(err) {
		return fmt.Errorf("record the store probe %s: %w", marker, err)
	}
	c.log.Info("the store refused a second create of one key, as the commit needs; recorded", "marker", marker)
	return nil
}
