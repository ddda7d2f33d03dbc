package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karch-archive/karch/coordinator"
	"github.com/karch-archive/karch/failure"
)

// cat's and restore's own --topic picks the source topic, and hides the topic setting's
// flag: the pipeline's topics come from file or environment, or, where neither names them,
// from --topic as on the other commands.
func TestSourceTopicFlag(t *testing.T) {
	base := []string{"--pipeline", "cdr", "--brokers", "b:9092", "--store", t.TempDir(), "--window", "2026-11-23T02:00Z"}
	twoTopics := filepath.Join(t.TempDir(), "karch.yaml")
	bothInFile := filepath.Join(t.TempDir(), "karch.yaml")
	for path, yaml := range map[string]string{twoTopics: "topics: [cdr-sms, cdr-voice]\n", bothInFile: "topic: cdr-sms\ntopics: [cdr-sms, cdr-voice]\n"} {
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		wantSource string
		wantTopic  string
		wantTopics []string
		err        string
	}{
		{"flags alone: --topic is the pipeline's topic too", nil, []string{"--topic", "cdr-sms"}, "cdr-sms", "cdr-sms", nil, ""},
		{"topics from the environment", map[string]string{"KARCH_TOPICS": "cdr-sms,cdr-voice"}, []string{"--topic", "cdr-voice"},
			"cdr-voice", "", []string{"cdr-sms", "cdr-voice"}, ""},
		{"topics from the file", nil, []string{"--config", twoTopics, "--topic", "cdr-voice"}, "cdr-voice", "", []string{"cdr-sms", "cdr-voice"}, ""},
		{"the file's topics, no --topic", nil, []string{"--config", twoTopics}, "", "", []string{"cdr-sms", "cdr-voice"}, ""},
		{"the topic from the environment, another picked", map[string]string{"KARCH_TOPIC": "cdr-sms"}, []string{"--topic", "cdr-voice"},
			"cdr-voice", "cdr-sms", nil, ""},
		{"no topic anywhere", nil, nil, "", "", nil, "topics: required"},
		{"flags alone, another setting wrong: its error", nil, []string{"--topic", "cdr-sms", "--shards", "0"}, "", "", nil, "shards"},
		{"topics from the file, another setting wrong: its error", nil, []string{"--config", twoTopics, "--topic", "cdr-sms", "--shards", "0"}, "", "", nil, "shards"},
		{"topic and topics from the file", nil, []string{"--config", bothInFile, "--topic", "cdr-sms"}, "", "", nil, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearSettingsEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var cf catFlags
			cli, err := parseSourceFlags("cat", catUsage, append(slices.Clone(base), tc.args...), &cf.filter.Topic, cf.register)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, coordinator.ErrConfig) || !failure.IsPermanent(err) {
					t.Fatalf("error %v, want a permanent configuration error naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := cli.cfg.coord
			if cf.filter.Topic != tc.wantSource || c.Topic != tc.wantTopic || !slices.Equal(c.Topics, tc.wantTopics) || cf.window == "" {
				t.Fatalf("source %q, pipeline topic %q, topics %q (window %q); want %q, %q, %q",
					cf.filter.Topic, c.Topic, c.Topics, cf.window, tc.wantSource, tc.wantTopic, tc.wantTopics)
			}
		})
	}
}

func TestTranslateGroupTopic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		source string
		cfg    coordinator.Config
		want   string
	}{
		{"--topic", "cdr-voice", coordinator.Config{Topics: []string{"cdr-sms", "cdr-voice"}}, "cdr-voice"},
		{"the pipeline's one topic", "", coordinator.Config{Topic: "cdr-sms"}, "cdr-sms"},
		{"one topic listed", "", coordinator.Config{Topics: []string{"cdr-sms"}}, "cdr-sms"},
		{"two topics", "", coordinator.Config{Topics: []string{"cdr-sms", "cdr-voice"}}, ""},
		{"a pattern", "", coordinator.Config{TopicsPattern: "cdr-.*"}, ""},
		{"a topic and a pattern", "", coordinator.Config{Topic: "cdr-sms", TopicsPattern: "cdr-.*"}, ""},
	} {
		var rf restoreFlags
		rf.opts.Filter.Topic = tc.source
		got, err := rf.groupTopic(tc.cfg)
		switch {
		case tc.want == "" && (!failure.IsPermanent(err) || !strings.Contains(err.Error(), "--topic")):
			t.Errorf("%s: %q, %v; want a permanent error asking for --topic", tc.name, got, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
