package archive

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Names of the objects in a window's folder (docs/FORMAT.md, "Object layout").
const (
	PlanName     = "plan.json"
	ManifestName = "MANIFEST.json"
)

// WindowDir returns the folder of one window of a pipeline, relative to the destination
// prefix: "<pipeline>/dt=YYYY-MM-DD/window=HHMMZ-<len>/". The Hive-style key=value folders let
// DuckDB, Athena and Spark prune by date.
func WindowDir(pipeline string, start time.Time, length time.Duration) string {
	s := start.UTC()
	return fmt.Sprintf("%s/dt=%s/window=%sZ-%s/", pipeline, s.Format("2006-01-02"), s.Format("1504"), formatLength(length))
}

// formatLength writes a window length the way people write it: 1h, 15m, 24h, 90s.
func formatLength(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

// PieceKey returns the key of the piece that starts at offset first, relative to its window's
// folder. The key derives from offsets alone, so every attempt at a piece writes the same key.
func PieceKey(topic string, partition int32, first int64) string {
	return fmt.Sprintf("data/%s/%d/%020d.jsonl.zst", topic, partition, first)
}

// ParquetKey returns the key of a piece's Parquet object, beside its JSON Lines.
func ParquetKey(topic string, partition int32, first int64) string {
	return fmt.Sprintf("data/%s/%d/%020d.parquet", topic, partition, first)
}

// ReceiptKey returns the key of a shard's receipt, relative to its window's folder.
func ReceiptKey(index int) string {
	return fmt.Sprintf("receipts/shard-%05d.json", index)
}

// Join joins a window folder and a key relative to it.
func Join(dir, key string) string {
	return path.Join(dir, key)
}

// SplitPlanURL splits the URL (or path) of a window's plan into the store's root and the
// plan's key under it, "<pipeline>/dt=.../window=.../plan.json", so that a shard opens the
// same store the coordinator wrote to and finds the window's objects by the same keys. ok
// is false when url does not end in a window folder's plan.
func SplitPlanURL(url string) (root, key string, ok bool) {
	parts := strings.Split(url, "/")
	if len(parts) < 5 || parts[len(parts)-1] != PlanName {
		return "", "", false
	}
	cut := len(parts) - 4 // the pipeline's segment
	key = strings.Join(parts[cut:], "/")
	if _, ok := ParseWindowDir(key); !ok || parts[cut] == "" {
		return "", "", false
	}
	root = strings.Join(parts[:cut], "/")
	if root == "" || strings.HasSuffix(root, "://") {
		root += "/"
	}
	return root, key, true
}

// ParseWindowDir reads a window back from a key in its folder (as WindowDir writes it).
func ParseWindowDir(key string) (Window, bool) {
	i := strings.Index(key, "/dt=")
	if i < 0 {
		return Window{}, false
	}
	rest := key[i+len("/dt="):]
	const layout = "2006-01-02/window=1504Z-"
	if len(rest) < len(layout) {
		return Window{}, false
	}
	start, err := time.Parse(layout, rest[:len(layout)])
	if err != nil {
		return Window{}, false
	}
	label, _, _ := strings.Cut(rest[len(layout):], "/")
	length, err := time.ParseDuration(label)
	if err != nil || length <= 0 || formatLength(length) != label {
		return Window{}, false
	}
	return Window{Start: start, End: start.Add(length)}, true
}
