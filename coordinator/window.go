package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
)

// window takes one window through the commit order: plan (create or adopt), run the
// shards, verify, manifest. A window that is committed already is only read.
func (c *coordinator) window(ctx context.Context, w archive.Window, prev *stored) (*stored, WindowResult, error) {
	started := c.deps.Now()
	dir := archive.WindowDir(c.cfg.Pipeline, w.Start, w.End.Sub(w.Start))
	log := c.log.With("window", w.Start)
	if m, err := c.readManifest(ctx, dir+archive.ManifestName); err == nil {
		log.Info("window committed already")
		return m, resultOf(m.Manifest, 0, false), nil
	} else if !blob.IsNotFound(err) {
		return nil, WindowResult{}, err
	}
	plan, err := c.plan(ctx, dir, w, prev)
	if err != nil {
		return nil, WindowResult{}, err
	}
	log = log.With("plan_run_id", plan.RunID)
	if len(plan.Shards) > 0 {
		log.Info("running shards", "shards", len(plan.Shards))
		if err := c.deps.Runner.Run(ctx, c.url(dir+archive.PlanName), plan); err != nil {
			return nil, WindowResult{}, fmt.Errorf("run shards: %w", err)
		}
	}
	receipts, err := verify(ctx, c.deps.Bucket, dir, plan)
	if err != nil {
		return nil, WindowResult{}, err
	}
	m, err := c.manifest(ctx, plan, receipts, prev)
	if err != nil {
		return nil, WindowResult{}, err
	}
	stored, committed, err := c.commit(ctx, dir, m)
	if err != nil {
		return nil, WindowResult{}, err
	}
	res := resultOf(stored.Manifest, c.deps.Now().Sub(started), committed)
	log.Info("window committed", "records", res.Records, "raw_bytes", res.RawBytes, "bytes", res.Bytes, "by_this_run", committed)
	return stored, res, nil
}

func (c *coordinator) url(key string) string { return c.deps.StoreURL + "/" + key }

func resultOf(m *archive.Manifest, d time.Duration, committed bool) WindowResult {
	return WindowResult{Window: m.Window, Records: m.Records, RawBytes: m.RawBytes, Bytes: m.Bytes, Duration: d, Committed: committed}
}

// plan adopts the window's plan if one exists, and otherwise resolves the window's offsets
// and creates it. Adopting, never re-planning, makes every later step deterministic; but an
// adopted plan must continue the chain exactly (checkAdopted), and the window must hold the
// chain's claim after prev, so that no other window is ever planned in its place.
func (c *coordinator) plan(ctx context.Context, dir string, w archive.Window, prev *stored) (*archive.Plan, error) {
	key := dir + archive.PlanName
	if p, err := c.readPlan(ctx, key); err == nil || !blob.IsNotFound(err) {
		if err != nil {
			return nil, err
		}
		c.log.Info("adopting the existing plan", "window", w.Start, "plan_run_id", p.RunID)
		if err := c.checkAdopted(key, p, w, prev); err != nil {
			return nil, err
		}
		return p, c.claim(ctx, w, prev)
	}
	p, err := c.newPlan(ctx, w, prev)
	if err != nil {
		return nil, err
	}
	// Claimed once the window could be planned: a run that cannot reach Kafka (or is
	// refused) leaves nothing behind, not a claim that would hold its window for later runs.
	if err := c.claim(ctx, w, prev); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	_, err = c.deps.Bucket.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{IfAbsent: true, ContentType: "application/json"})
	if blob.IsExists(err) {
		return c.readPlan(ctx, key) // another coordinator planned it first: theirs is the plan
	}
	if err != nil {
		return nil, fmt.Errorf("put plan %s: %w", key, err)
	}
	c.log.Info("plan created", "window", w.Start, "shards", len(p.Shards), "partitions", len(p.Ranges),
		"topics", topicsOf(p.Topics, true), "ended_topics", topicsOf(p.Topics, false))
	return p, nil
}

// newPlan resolves the window's topics and offsets, chained to prev when it is the window
// before, and packs them into a plan.
func (c *coordinator) newPlan(ctx context.Context, w archive.Window, prev *stored) (*archive.Plan, error) {
	var prevEnds map[archive.TopicPartition]int64
	var prevTopics []archive.TopicState
	if prev != nil {
		if !prev.Window.End.Equal(w.Start) {
			return nil, fmt.Errorf("plan window %s: the previous window ends at %s", w.Start.Format(time.RFC3339), prev.Window.End.Format(time.RFC3339))
		}
		prevEnds, prevTopics = prev.End(), prev.Topics
	}
	cluster, err := c.deps.Offsets.Topics(ctx)
	if err != nil {
		return nil, err
	}
	topics, err := selectTopics(c.cfg, cluster, prevTopics, prevEnds, c.bound, w)
	if err != nil {
		return nil, err
	}
	var chained map[archive.TopicPartition]int64
	if prev != nil {
		if chained, err = archive.Chained(prevEnds, prevTopics, topics); err != nil {
			return nil, fmt.Errorf("plan window %s: %w", w.Start.Format(time.RFC3339), err)
		}
	}
	ranges, gaps, err := c.resolveTopics(ctx, w, topics, cluster, chained, prev != nil)
	if err != nil {
		return nil, err
	}
	for _, t := range topics {
		if t.Active() {
			continue
		}
		if t.Ended.Equal(w.Start) {
			c.log.Warn("topic ended", "window", w.Start, "topic", t.Topic, "topic_id", t.ID, "reason", t.EndReason)
		}
	}
	for _, g := range gaps {
		c.log.Warn("planning past records that retention deleted, as accept_data_loss allows", "window", w.Start,
			"topic", g.Topic, "partition", g.Partition, "first", g.First, "end", g.End)
	}
	p := BuildPlan(archive.Plan{Pipeline: c.cfg.Pipeline, Window: w, RunID: c.runID, Brokers: c.cfg.Brokers, Gaps: gaps,
		Formats: c.cfg.Formats, ValueColumns: c.cfg.ValueColumns, Topics: topics}, ranges, c.cfg.PieceRecords, c.cfg.Shards)
	return &p, nil
}

// resolveTopics resolves each archived topic's offsets, a few topics at a time, chained to
// the ends the window continues. Ranges come out by topic and partition.
func (c *coordinator) resolveTopics(ctx context.Context, w archive.Window, topics []archive.TopicState, cluster map[string]TopicInfo,
	chained map[archive.TopicPartition]int64, hasPrev bool) ([]archive.Range, []archive.Gap, error) {
	results := make([]struct {
		ranges []archive.Range
		gaps   []archive.Gap
	}, len(topics))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, t := range topics {
		if !t.Active() {
			continue
		}
		ch := chain{topic: t.Topic, parts: cluster[t.Topic].Partitions, window: w, acceptLoss: c.cfg.AcceptDataLoss.Equal(w.Start),
			bound: c.bound, closes: c.bound != nil && w.End.Equal(c.boundAt)}
		if hasPrev {
			ch.prev = map[archive.TopicPartition]int64{}
			for tp, end := range chained {
				if tp.Topic == t.Topic {
					ch.prev[tp] = end
				}
			}
		}
		g.Go(func() error {
			var err error
			results[i].ranges, results[i].gaps, err = ch.resolve(gctx, c.deps.Offsets)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var ranges []archive.Range
	var gaps []archive.Gap
	for _, r := range results {
		ranges, gaps = append(ranges, r.ranges...), append(gaps, r.gaps...)
	}
	return ranges, gaps, nil
}

func (c *coordinator) readPlan(ctx context.Context, key string) (*archive.Plan, error) {
	data, err := blob.ReadAll(ctx, c.deps.Bucket, key)
	if err != nil {
		return nil, err
	}
	p, err := archive.DecodePlan(data)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("read plan %s: %w", key, err))
	}
	return p, nil
}

// orStable reads "no record at or after the time" (-1) as "everything committed so far".
func orStable(off, stable int64) int64 {
	if off < 0 {
		return stable
	}
	return off
}
