package archive

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// BatchFormat is the format tag of a backfill's batch files.
const BatchFormat = "karch.batch/v1"

// Batch is one Job's worth of a backfill: completion index i runs Tasks[i], one shard of one
// window's plan. It lets a single Indexed Job span many windows while each pod's spec names
// only the batch. Like a plan it is created once and never rewritten.
type Batch struct {
	Format   string `json:"format"`
	Pipeline string `json:"pipeline"`
	// Backfill is the whole backfill's range, of which this batch is part Part.
	Backfill Window `json:"backfill"`
	Part     int    `json:"part"`
	RunID    string `json:"run_id"`
	Tasks    []Task `json:"tasks"`
}

// Task is one completion index of a batch: shard Shard of the plan at Plan (a key relative
// to the destination prefix, "<pipeline>/dt=.../window=.../plan.json").
type Task struct {
	Index int    `json:"index"`
	Plan  string `json:"plan"`
	Shard int    `json:"shard"`
}

// BackfillDir returns the folder of a backfill's documents, relative to the destination
// prefix: "<pipeline>/backfill/<from>-<to>/", with both bounds as YYYYMMDDTHHMMZ. It is
// outside the dt= folders that readers of windows list.
func BackfillDir(pipeline string, w Window) string {
	const layout = "20060102T1504Z"
	return fmt.Sprintf("%s/backfill/%s-%s/", pipeline, w.Start.UTC().Format(layout), w.End.UTC().Format(layout))
}

// BatchKey returns the key of part n of a backfill, relative to its folder.
func BatchKey(part int) string { return fmt.Sprintf("batch-%05d.json", part) }

// SplitBatchURL splits the URL (or path) of a batch into the store's root and the batch's key
// under it, as SplitPlanURL does for a plan. ok is false when url is not a batch's.
func SplitBatchURL(url string) (root, key string, ok bool) {
	parts := strings.Split(url, "/")
	n := len(parts)
	if n < 5 || parts[n-3] != "backfill" || parts[n-4] == "" || !isBatchName(parts[n-1]) {
		return "", "", false
	}
	key = strings.Join(parts[n-4:], "/")
	root = strings.Join(parts[:n-4], "/")
	if root == "" || strings.HasSuffix(root, "://") {
		root += "/"
	}
	return root, key, true
}

func isBatchName(name string) bool {
	num, ok := strings.CutPrefix(name, "batch-")
	num, ok2 := strings.CutSuffix(num, ".json")
	_, err := strconv.Atoi(num)
	return ok && ok2 && err == nil
}

// IsBatchKey reports whether key names a batch.
func IsBatchKey(key string) bool { _, _, ok := SplitBatchURL("root/" + key); return ok }

// DecodeBatch decodes and validates a batch. Unknown fields are errors, as in a plan.
func DecodeBatch(data []byte) (*Batch, error) {
	var b Batch
	if err := decodeStrict(data, &b); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", ErrInvalidPlan, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate checks what a shard relies on to find its task.
func (b *Batch) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: batch: %s", ErrInvalidPlan, fmt.Sprintf(format, a...))
	}
	switch {
	case b.Format != BatchFormat:
		return bad("format %q, want %q", b.Format, BatchFormat)
	case b.Pipeline == "":
		return bad("no pipeline")
	case !b.Backfill.End.After(b.Backfill.Start):
		return bad("backfill end %s is not after start %s", b.Backfill.End.Format(time.RFC3339), b.Backfill.Start.Format(time.RFC3339))
	case b.Part < 0:
		return bad("part %d", b.Part)
	}
	for i, t := range b.Tasks {
		if _, ok := ParseWindowDir(t.Plan); t.Index != i || t.Shard < 0 || !ok || path.Base(t.Plan) != PlanName {
			return bad("task %d: %+v", i, t)
		}
	}
	return nil
}
