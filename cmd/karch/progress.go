package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/karch-archive/karch/archive"
)

// onTerminal reports whether stdout is a terminal: only then do long commands draw a
// progress bar (on stderr), and never an escape code into a pipe or a log.
func onTerminal() bool { return term.IsTerminal(int(os.Stdout.Fd())) }

func barOptions(description string) []progressbar.Option {
	return []progressbar.Option{progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(description),
		progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionClearOnFinish(), progressbar.OptionFullWidth()}
}

// verifyBar shows the objects verified and their bytes. Objects are checked in parallel.
type verifyBar struct {
	mu      sync.Mutex
	bar     *progressbar.ProgressBar
	objects int
}

func newVerifyBar() *verifyBar {
	return &verifyBar{bar: progressbar.NewOptions64(-1, append(barOptions("verifying"), progressbar.OptionShowBytes(true))...)}
}

func (v *verifyBar) object(bytes int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.objects++
	v.bar.Describe(fmt.Sprintf("verified %d objects", v.objects))
	_ = v.bar.Add64(bytes)
}

func (v *verifyBar) finish() { _ = v.bar.Finish() }

// restoreBar shows the records restored of those the windows hold, the rate in records and
// in megabytes of keys and values, and the time left.
type restoreBar struct {
	bar   *progressbar.ProgressBar
	bytes int64
	start time.Time
}

func newRestoreBar() *restoreBar {
	return &restoreBar{bar: progressbar.NewOptions64(-1, append(barOptions("restoring"), progressbar.OptionShowCount(),
		progressbar.OptionShowIts(), progressbar.OptionSetItsString("records"), progressbar.OptionSetPredictTime(true))...)}
}

func (r *restoreBar) Total(records int64) {
	r.bar.ChangeMax64(records)
	r.start = time.Now()
}

func (r *restoreBar) Record(size int) {
	r.bytes += int64(size)
	if secs := time.Since(r.start).Seconds(); secs > 0.5 {
		r.bar.Describe(fmt.Sprintf("restoring %.1f MB/s", float64(r.bytes)/1e6/secs))
	}
	_ = r.bar.Add(1)
}

func (r *restoreBar) finish() { _ = r.bar.Finish() }

// runBar shows the window the local runner is on, its shards done, and the shards done in
// all.
type runBar struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newRunBar() *runBar {
	return &runBar{bar: progressbar.NewOptions64(-1, append(barOptions("archiving"), progressbar.OptionShowCount(),
		progressbar.OptionShowIts(), progressbar.OptionSetItsString("shards"))...)}
}

func (r *runBar) shards(plan *archive.Plan, done int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bar.Describe(fmt.Sprintf("window %s: shards %d/%d", plan.Window.Start.Format("2006-01-02 15:04Z"), done, len(plan.Shards)))
	if done > 0 {
		_ = r.bar.Add(1)
	}
}

func (r *runBar) finish() { _ = r.bar.Finish() }
