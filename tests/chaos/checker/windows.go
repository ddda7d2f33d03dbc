package checker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
)

const manifestName = "MANIFEST.json"

// folderRE matches a window folder, relative to the pipeline's folder (FORMAT.md, "Object
// layout"), and what follows it.
var folderRE = regexp.MustCompile(`^dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/window=([0-9]{2})([0-9]{2})Z-([0-9]+)([hms])/(.*)$`)

// folder is one window folder of the store, committed or not.
type folder struct {
	dir        string // relative to the prefix, ending in '/'
	start, end time.Time
	committed  bool
}

// window is one committed window: its folder and its manifest as stored.
type window struct {
	folder
	raw []byte    // the manifest's stored bytes
	sum string    // their SHA-256
	m   *manifest // nil when the manifest does not decode
}

func (w *window) manifestKey() string { return w.dir + manifestName }

// loadWindows lists the pipeline's folders and reads the manifest of every committed one
// in [Start, Until) into ch.windows, and of the one that ends at Start into ch.prior: the
// first window's previous. Windows before those are not checked, nor read. A committed
// window that ends after Until is a problem: no window ends after until.
func (ch *check) loadWindows(ctx context.Context) error {
	folders, err := ch.listFolders(ctx)
	if err != nil {
		return err
	}
	ch.folders = folders
	for _, f := range folders {
		switch {
		case !f.committed || f.end.Before(ch.cfg.Start):
		case f.end.After(ch.cfg.Until):
			ch.rep.problem("window %s [%s, %s) is committed but ends after Until %s", f.dir, stamp(f.start), stamp(f.end), stamp(ch.cfg.Until))
		default:
			w, err := ch.readWindow(ctx, f)
			switch {
			case err != nil:
				return err
			case w == nil:
			case w.end.Equal(ch.cfg.Start):
				ch.prior = w
			default:
				ch.windows = append(ch.windows, w)
			}
		}
	}
	ch.rep.Windows = len(ch.windows)
	return nil
}

// listFolders returns every window folder of the pipeline, by start then end.
func (ch *check) listFolders(ctx context.Context) ([]*folder, error) {
	byDir := map[string]*folder{}
	bad := map[string]bool{}
	root := ch.cfg.Pipeline + "/"
	err := ch.store.list(ctx, root, func(key string) {
		m := folderRE.FindStringSubmatch(key[len(root):])
		if m == nil {
			return
		}
		dir := key[:len(key)-len(m[6])]
		f, ok := byDir[dir]
		if !ok && !bad[dir] {
			if f, ok = ch.parseFolder(dir, m); !ok {
				bad[dir] = true
				return
			}
			byDir[dir] = f
		}
		if ok && m[6] == manifestName {
			f.committed = true
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]*folder, 0, len(byDir))
	for _, f := range byDir {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *folder) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		return a.end.Compare(b.end)
	})
	return out, nil
}

// parseFolder reads a window's bounds from its folder name, which must be the one karch
// writes for them.
func (ch *check) parseFolder(dir string, m []string) (*folder, bool) {
	day, err := time.Parse("2006-01-02", m[1])
	hh, _ := strconv.Atoi(m[2])
	mm, _ := strconv.Atoi(m[3])
	n, nerr := strconv.ParseInt(m[4], 10, 32)
	if err != nil || nerr != nil || hh > 23 || mm > 59 || n <= 0 {
		ch.rep.problem("folder %s: the name holds no valid window", dir)
		return nil, false
	}
	unit := map[string]time.Duration{"h": time.Hour, "m": time.Minute, "s": time.Second}[m[5]]
	length := time.Duration(n) * unit
	if got := m[4] + m[5]; got != formatLength(length) {
		ch.rep.problem("folder %s: length %s is written %s in karch's folder names", dir, got, formatLength(length))
	}
	start := day.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
	return &folder{dir: dir, start: start, end: start.Add(length)}, true
}

func formatLength(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// readWindow reads and decodes a committed folder's manifest. A manifest that does not
// decode is a problem, and its window holds nothing; one that is gone since it was listed
// is a problem, and no window (nil). Only an unreachable store is an error.
func (ch *check) readWindow(ctx context.Context, f *folder) (*window, error) {
	w := &window{folder: *f}
	obj, err := ch.store.get(ctx, w.manifestKey())
	if errors.Is(err, errMissing) {
		// Listed a moment ago, deleted since: a manifest is never removed.
		ch.rep.problem("%s was listed, then could not be read: %v", w.manifestKey(), err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(obj.data)
	w.raw, w.sum = obj.data, hex.EncodeToString(sum[:])
	if w.m, err = decodeManifest(obj.data); err != nil {
		ch.rep.problem("%s does not decode: %v", w.manifestKey(), err)
	}
	return w, nil
}

// checkTiling checks that the committed windows tile [Start, Until): each starts where the
// one before ended. A hole names the uncommitted folders in it, if any.
func (ch *check) checkTiling() {
	at := ch.cfg.Start
	for _, w := range ch.windows {
		switch {
		case w.start.After(at):
			ch.rep.problem("windows missing: no committed window covers [%s, %s)%s", stamp(at), stamp(w.start), ch.uncommittedIn(at, w.start))
		case w.start.Before(at):
			ch.rep.problem("window %s [%s, %s) overlaps [%s, %s), which a window before it covers", w.dir, stamp(w.start), stamp(w.end), stamp(w.start), stamp(at))
		}
		if w.end.After(at) {
			at = w.end
		}
	}
	if at.Before(ch.cfg.Until) {
		ch.rep.problem("windows missing: no committed window covers [%s, %s)%s", stamp(at), stamp(ch.cfg.Until), ch.uncommittedIn(at, ch.cfg.Until))
	}
}

// uncommittedIn names the folders without a manifest that lie in [from, to).
func (ch *check) uncommittedIn(from, to time.Time) string {
	var dirs []string
	for _, f := range ch.folders {
		if !f.committed && f.start.Before(to) && f.end.After(from) {
			dirs = append(dirs, f.dir)
		}
	}
	if len(dirs) == 0 {
		return "; no folder of it exists"
	}
	return fmt.Sprintf("; uncommitted (no %s): %v", manifestName, dirs)
}

// stamp writes a time the way manifests do.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
