package main

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

const settingsDoc = "../../docs/settings.md"

// settingsReference is docs/settings.md: every setting, from the table that parses them.
func settingsReference() string {
	var b strings.Builder
	b.WriteString(`# karch settings

Generated from the settings table in cmd/karch/config.go by
` + "`go test ./cmd/karch -run TestSettingsReference -update`" + `; a test fails when the two
disagree. Every coordinator command (run, plan, status, backfill, verify, cat, restore,
doctor) reads these settings: from the YAML file that ` + "`--config`" + ` (or ` + "`KARCH_CONFIG`" + `)
names, then from the environment, then from flags, later winning. A key of the file, or a
` + "`KARCH_*`" + ` variable, that names no setting is an error. Lists are comma-separated, or
YAML lists in the file. Secrets are never settings: passwords, keys and tokens come only
from their own variables or files (docs/security.md; docs/DESIGN.md).

| setting | type | default | environment | flag | meaning |
|---|---|---|---|---|---|
`)
	for _, s := range settings {
		def := "none"
		if s.def != "" {
			def = "`" + s.def + "`"
		}
		usage := strings.ReplaceAll(s.usage, "|", `\|`)
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | `--%s` | %s |\n", s.name, s.typ, def, envName(s.name), flagName(s.name), usage)
	}
	return b.String()
}

// docs/settings.md is what the settings table says, and each setting's documented default
// is what the code does when the setting is absent: setting it to that value changes nothing.
func TestSettingsReference(t *testing.T) {
	want := settingsReference()
	if *update {
		if err := os.WriteFile(settingsDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(settingsDoc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is not what the settings table in config.go says: run go test ./cmd/karch -run TestSettingsReference -update", settingsDoc)
	}
	types := map[string]bool{"string": true, "list": true, "bool": true, "int": true, "duration": true, "time": true, "quantity": true, "path": true, "url": true}
	for _, s := range settings {
		if !types[s.typ] {
			t.Errorf("setting %s: type %q is none of the reference's", s.name, s.typ)
		}
		if s.def == "" {
			continue
		}
		c := defaultConfig()
		if err := s.set(&c, s.def); err != nil {
			t.Errorf("setting %s: its default %q does not parse: %v", s.name, s.def, err)
		} else if !reflect.DeepEqual(c, defaultConfig()) {
			t.Errorf("setting %s: set to its documented default %q, the configuration differs from the default one", s.name, s.def)
		}
	}
}
