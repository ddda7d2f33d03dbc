package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/karch-archive/karch/failure"
	"github.com/karch-archive/karch/lock"
)

// targetName names the target topic by the cluster's id too, so that one topic name on two
// clusters is two targets: the name of its lease and of its restores' transactional id.
func targetName(ctx context.Context, cl *kgo.Client, topic string) (string, error) {
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return "", fmt.Errorf("read the target cluster's metadata: %w", err)
	}
	return "karch:restore:" + meta.Cluster + ":" + topic, nil
}

// leaseTarget takes the lease on the target topic and returns the context the restore works
// under: losing the lease stops it. Without a Locker it returns ctx.
func leaseTarget(ctx context.Context, name string, opts Options, log *slog.Logger) (context.Context, func(), error) {
	if opts.Locker == nil || opts.DryRun {
		return ctx, func() {}, nil
	}
	lease, err := opts.Locker.Acquire(ctx, name)
	if errors.Is(err, lock.ErrHeld) {
		return nil, nil, fmt.Errorf("%w: topic %s (lease %s); run this one again when that one is done", ErrTargetBusy, opts.ToTopic, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("take the restore lease %s: %w", name, err)
	}
	log.Info("holding the target topic's restore lease", "lease", name, "fencing_token", lease.Token())
	return lease.Ctx(), func() { lease.Release(context.WithoutCancel(ctx)) }, nil
}

// maxMessageBytes is the largest record batch topic takes: its max.message.bytes, which
// defaults to the broker's message.max.bytes.
func maxMessageBytes(ctx context.Context, cl *kgo.Client, topic string, log *slog.Logger) (int32, error) {
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("read the configuration of topic %s: %w", topic, err)
	}
	c, err := configs.On(topic, nil)
	if err == nil {
		err = c.Err
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		// Credentials that may write but not describe configs: Kafka's default, and a record
		// past the topic's real limit fails at the broker, naming it all the same.
		log.Warn("may not read the target topic's max.message.bytes (DescribeConfigs); assuming Kafka's default", "topic", topic, "default", defaultMaxMessageBytes)
		return defaultMaxMessageBytes, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the configuration of topic %s: %w", topic, err)
	}
	for _, kv := range c.Configs {
		if kv.Key == "max.message.bytes" && kv.Value != nil {
			n, err := strconv.ParseInt(*kv.Value, 10, 32)
			if err != nil || n <= 0 {
				return 0, failure.Permanent(fmt.Errorf("topic %s: max.message.bytes %q is not a size", topic, *kv.Value))
			}
			return int32(n), nil
		}
	}
	return defaultMaxMessageBytes, nil
}

// defaultMaxMessageBytes is Kafka's default max.message.bytes.
const defaultMaxMessageBytes = 1048588

// batchSize is the size of a record batch that holds kr alone: the batch header (61 bytes)
// and the record with its length varints, an upper bound of what the broker compares with
// max.message.bytes (compression can only shrink it).
func batchSize(kr *kgo.Record) int {
	size := 61 + 21 + len(kr.Key) + len(kr.Value)
	for _, h := range kr.Headers {
		size += 10 + len(h.Key) + len(h.Value)
	}
	return size
}
