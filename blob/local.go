package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Reserved folders under a Local root: temporary files, and each object's metadata.
const (
	localTmp  = ".karch-tmp"
	localMeta = ".karch-meta"
)

// Local is a Bucket in a directory of the local file system, with the semantics of the S3
// backend: an object appears whole, metadata included, or not at all (see Put), and a
// conditional create is an exclusive hard link, which the kernel makes atomic. It needs a
// file system with hard links and inode numbers (Linux, macOS).
type Local struct {
	root string
	// testHook, when a test sets it, runs after each step of Put, so that the test can
	// look at the store, or kill the process, between two steps.
	testHook func(step string)
}

var _ Bucket = (*Local)(nil)

// NewLocal returns a Bucket rooted at root, creating the directory if needed.
func NewLocal(root string) (*Local, error) {
	for _, d := range []string{root, filepath.Join(root, localTmp), filepath.Join(root, localMeta)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create local store %s: %w", root, err)
		}
	}
	return &Local{root: root}, nil
}

func (l *Local) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return "", fmt.Errorf("blob: invalid key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("blob: invalid key %q", key)
		}
	}
	if first, _, _ := strings.Cut(key, "/"); first == localTmp || first == localMeta {
		return "", fmt.Errorf("blob: key %q is in a reserved folder", key)
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Get opens key for reading.
func (l *Local) Get(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, _, err := openObject(p)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return f, nil
}

// openObject opens the object file at p. A folder is no object: S3 has none.
func openObject(p string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = ErrNotFound
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// Head describes key from its file and the metadata of that file's inode. It holds the file
// open while it reads the metadata: an open inode cannot be freed, so its number cannot pass
// to a new object (whose metadata would then be read) in the meantime.
func (l *Local) Head(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	for {
		info, replaced, err := l.head(key, p)
		if err != nil {
			return ObjectInfo{}, fmt.Errorf("head %s: %w", key, err)
		}
		if !replaced {
			return info, nil
		}
		// A plain Put replaced the object and removed its metadata while we read it:
		// describe the new one.
		if err := ctx.Err(); err != nil {
			return ObjectInfo{}, fmt.Errorf("head %s: %w", key, err)
		}
	}
}

// head describes the object at p, or reports that it was replaced before its metadata could
// be read.
func (l *Local) head(key, p string) (info ObjectInfo, replaced bool, err error) {
	f, st, err := openObject(p)
	if err != nil {
		return ObjectInfo{}, false, err
	}
	defer f.Close()
	info = infoOf(key, st)
	side, found, err := l.readSidecar(l.sidecarPath(key, inodeOf(st)))
	if err == nil && !found {
		if now, serr := os.Stat(p); serr != nil || !os.SameFile(st, now) {
			return info, true, nil
		}
		side, _, err = l.readSidecar(l.legacySidecarPath(key))
	}
	if err != nil {
		return ObjectInfo{}, false, err
	}
	info.Checksum, info.Metadata = side.Checksum, side.Metadata
	return info, false, nil
}

// infoOf builds an ObjectInfo whose ETag changes whenever the file is replaced: size,
// modification time and inode together.
func infoOf(key string, st fs.FileInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime(), ETag: fmt.Sprintf("%x-%x-%x", st.Size(), st.ModTime().UnixNano(), inodeOf(st))}
}

func inodeOf(st fs.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// List walks the tree, skipping the reserved folders, and calls fn in key order (a walk
// alone is not: "a/b" comes before "a.txt" in a walk, after it in byte order).
func (l *Local) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var found []ObjectInfo
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, l.root+string(filepath.Separator)))
		if d.IsDir() {
			if p != l.root && (rel == localTmp || rel == localMeta || !couldHold(rel+"/", prefix)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(rel, prefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		found = append(found, infoOf(rel, st))
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	slices.SortFunc(found, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range found {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// couldHold reports whether keys under folder dir can start with prefix.
func couldHold(dir, prefix string) bool {
	return strings.HasPrefix(dir, prefix) || strings.HasPrefix(prefix, dir)
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
