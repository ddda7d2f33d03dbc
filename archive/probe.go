package archive

import (
	"strings"
	"time"
)

// ProbeFormat is the format tag of the store probe's record.
const ProbeFormat = "karch.probe/v1"

// ProbeMarkerName is the object, in a pipeline's ProbeDir, that records that its store
// refused a second create of one key (docs/FORMAT.md, "Object layout").
const ProbeMarkerName = "conditional-create.json"

// ProbeDir returns the folder of a pipeline's store probes, relative to the destination: beside
// the pipeline folders, never in one (a pipeline name has no '_').
func ProbeDir(pipeline string) string { return "_probe/" + pipeline + "/" }

// IsProbeMarkerKey reports whether key is a pipeline's probe record.
func IsProbeMarkerKey(key string) bool {
	rest, ok := strings.CutPrefix(key, "_probe/")
	pipeline, name, _ := strings.Cut(rest, "/")
	return ok && pipeline != "" && name == ProbeMarkerName
}

// ProbeRecord is that record: the store refused a second conditional create of one key
// when the pipeline's first run probed it.
type ProbeRecord struct {
	Format       string    `json:"format"`
	Pipeline     string    `json:"pipeline"`
	ProbedAt     time.Time `json:"probed_at"`
	KarchVersion string    `json:"karch_version"`
}
