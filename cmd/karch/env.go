package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

// envNotSettings are the KARCH_* variables karch reads that are not settings of the
// coordinator's table: secrets, the shard's own flags, and what the CronJob passes through
// the downward API. Every other KARCH_* variable must name a setting.
var envNotSettings = []string{
	"KARCH_CONFIG", "KARCH_REDIS_PASSWORD", "KARCH_REDIS_PASSWORD_FILE",
	"KARCH_KAFKA_SASL_PASSWORD", "KARCH_KAFKA_SASL_PASSWORD_FILE", "KARCH_BINARY", "KARCH_LOG_LEVEL",
	"KARCH_TABLE_CATALOG_CREDENTIAL", "KARCH_TABLE_CATALOG_CREDENTIAL_FILE", "KARCH_TABLE_CATALOG_TOKEN",
	"KARCH_TABLE_CATALOG_TOKEN_FILE", "KARCH_TABLE_CATALOG_PASSWORD", "KARCH_TABLE_CATALOG_PASSWORD_FILE",
	envOwnerJob, envOwnerJobUID, envPodName,
	"KARCH_PLAN", "KARCH_ZSTD_LEVEL", "KARCH_FRAME_SIZE", "KARCH_MEMORY_LIMIT_MIB", "KARCH_FETCH_MAX_BYTES",
}

// envTestPrefix is the namespace of variables karch's own test suite sets for itself; the
// processes it starts inherit them.
const envTestPrefix = "KARCH_TEST_"

// checkEnviron refuses a KARCH_* variable that karch does not read: the deployment configures
// karch through the environment, and a typo such as KARCH_SHARD_MEM must not silently leave a
// setting at its default.
func checkEnviron(environ []string) error {
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "KARCH_") || strings.HasPrefix(name, envTestPrefix) || knownEnv(name) {
			continue
		}
		hint := ""
		if near := nearestEnv(name); near != "" {
			hint = "; did you mean " + near + "?"
		}
		return failure.Permanent(fmt.Errorf("%w: environment variable %s names no setting of karch%s", coordinator.ErrConfig, name, hint))
	}
	return nil
}

func knownEnv(name string) bool {
	return slices.Contains(envNotSettings, name) || slices.ContainsFunc(settings, func(s setting) bool { return envName(s.name) == name })
}

// nearestEnv is the known variable that name most likely misspells: one that starts with it
// or that it starts with, else "".
func nearestEnv(name string) string {
	all := slices.Clone(envNotSettings)
	for _, s := range settings {
		all = append(all, envName(s.name))
	}
	best := ""
	for _, known := range all {
		if (strings.HasPrefix(known, name) || strings.HasPrefix(name, known)) && (best == "" || len(known) < len(best)) {
			best = known
		}
	}
	return best
}
