package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// logFlags configure the JSON logs every command writes to stderr.
type logFlags struct{ level string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", envOr("KARCH_LOG_LEVEL", "info"), "debug, info, warn or error (KARCH_LOG_LEVEL)")
}

func (l *logFlags) validate() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	return nil
}

// logger returns the JSON logger; validate has checked the level.
func (l *logFlags) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.level))
	logger := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	return logger
}
