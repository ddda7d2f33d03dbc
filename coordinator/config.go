// Package coordinator runs a pipeline's windows: it takes the lease, finds the windows that
// are due, resolves each to offset ranges chained to the previous manifest, writes an
// immutable plan, has a Runner run the shards, verifies their receipts against the plan and
// the store, and commits the manifest with a conditional create (docs/DESIGN.md).
package coordinator

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/karch-archive/karch/archive"
)

// Config is one pipeline. Every field has a name that errors use.
type Config struct {
	Pipeline string
	Brokers  []string
	// Topic, Topics and TopicsPattern name what a window archives: Topic is the one-topic
	// form of Topics; TopicsPattern adds every topic whose whole name it matches (RE2),
	// internal topics excepted. Which topics match is decided at each window's planning.
	Topic         string
	Topics        []string
	TopicsPattern string
	// Window is the window length; it divides a day, so windows align to UTC midnight.
	Window time.Duration
	// Lateness is how long after a window's end it waits before archiving it.
	Lateness time.Duration
	// Start is where a new pipeline begins (aligned down to a window). Zero means the most
	// recent window that is due.
	Start time.Time
	// Until, when set, stops the pipeline at the window boundary at or before it: no window
	// that ends after it is archived (a bounded backfill; a reproducible test).
	Until time.Time
	// AcceptDataLoss is the start of the one window that may be planned past records that
	// Kafka's retention deleted before they were archived; the manifest records the gap.
	// Zero (the default) makes such a window a permanent error.
	AcceptDataLoss time.Time
	// MaxWindows bounds how many windows one run catches up, oldest first.
	MaxWindows int
	// Shards is the most shards (completion indexes) a window is split into.
	Shards int
	// PieceRecords bounds the offsets of one piece.
	PieceRecords int64
	// Parallelism and Retries are for the local runner: shards at once, and retries of
	// an index that exits with a retryable failure.
	Parallelism int
	Retries     int
	LeaseTTL    time.Duration
	// Formats are the formats of every piece (archive.Plan.Formats); nil: JSON Lines.
	Formats []string
	// ValueColumns are the typed columns of the Parquet pieces.
	ValueColumns []archive.ValueColumn
}

// DefaultConfig returns the defaults that flags, environment and files override.
func DefaultConfig() Config {
	return Config{
		Window: time.Hour, Lateness: 5 * time.Minute, MaxWindows: 24, Shards: 4, PieceRecords: 1_000_000,
		Parallelism: 2, Retries: 2, LeaseTTL: 30 * time.Second,
	}
}

// pipelineName is what a pipeline name may be: it ends up in object keys, in Kubernetes Job
// names (DNS labels, with room for a window stamp and a completion index) and in label
// values, so it must start and end with a letter or digit (RFC 1123).
var pipelineName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,39}[a-z0-9])?$`)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid configuration")

// Validate names the first field that is wrong.
func (c Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, a...))
	}
	day := 24 * time.Hour
	switch {
	case !pipelineName.MatchString(c.Pipeline):
		return bad("pipeline", "%q: want lower-case letters, digits and '-', starting and ending with a letter or digit, at most 41 (a Kubernetes name)", c.Pipeline)
	case len(c.Brokers) == 0:
		return bad("brokers", "at least one Kafka broker is required")
	case c.Topic != "" && len(c.Topics) > 0:
		return bad("topics", "set topic or topics, not both")
	case c.Topic == "" && len(c.Topics) == 0 && c.TopicsPattern == "":
		return bad("topics", "required: set topic, topics or topics_pattern")
	case c.Window < time.Minute || c.Window%time.Minute != 0 || day%c.Window != 0:
		return bad("window", "%s does not divide a day into windows of whole minutes (folder names keep hours and minutes)", c.Window)
	case c.Lateness < 0:
		return bad("lateness", "%s is negative", c.Lateness)
	case c.MaxWindows < 1:
		return bad("max_windows", "%d: want at least 1", c.MaxWindows)
	case c.Shards < 1:
		return bad("shards", "%d: want at least 1", c.Shards)
	case c.PieceRecords < 1:
		return bad("piece_records", "%d: want at least 1", c.PieceRecords)
	case c.Parallelism < 1:
		return bad("parallelism", "%d: want at least 1", c.Parallelism)
	case c.Retries < 0:
		return bad("retries", "%d is negative", c.Retries)
	case c.LeaseTTL < time.Second:
		return bad("lease_ttl", "%s: want at least 1s", c.LeaseTTL)
	case len(c.ValueColumns) > 0 && !slices.Contains(c.Formats, archive.FormatParquet):
		return bad("value_columns", "typed columns are Parquet's: set formats to jsonl,parquet")
	}
	if err := c.checkTopics(); err != nil {
		return err
	}
	if c.Formats != nil {
		if err := archive.CheckFormats(c.Formats); err != nil {
			return bad("formats", "%v", err)
		}
	}
	if err := archive.CheckValueColumns(c.ValueColumns); err != nil {
		return bad("value_columns", "%v", err)
	}
	return nil
}

// TopicNames are the topics named one by one (Topic or Topics).
func (c Config) TopicNames() []string {
	if c.Topic != "" {
		return []string{c.Topic}
	}
	return c.Topics
}

// Pattern compiles TopicsPattern anchored at both ends (a topic matches by its whole name,
// as Kafka Connect's topics.regex does); nil when there is none.
func (c Config) Pattern() (*regexp.Regexp, error) {
	if c.TopicsPattern == "" {
		return nil, nil
	}
	return regexp.Compile(`^(?:` + c.TopicsPattern + `)$`)
}

func (c Config) checkTopics() error {
	seen := map[string]bool{}
	for _, t := range c.TopicNames() {
		switch {
		case !topicName.MatchString(t) || t == "." || t == "..":
			return fmt.Errorf("%w: topics: %q is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)", ErrConfig, t)
		case seen[t]:
			return fmt.Errorf("%w: topics: %q is listed twice", ErrConfig, t)
		}
		seen[t] = true
	}
	if _, err := c.Pattern(); err != nil {
		return fmt.Errorf("%w: topics_pattern: %q: %v", ErrConfig, c.TopicsPattern, err)
	}
	return nil
}

// topicName is what Kafka accepts as a topic name.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
