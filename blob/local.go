package blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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
// backend: objects appear whole (temp file, fsync, rename or link), and a conditional create
// is an exclusive hard link, which the kernel makes atomic.
type Local struct {
	root string
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

// localSidecar is what Local keeps beside each object.
type localSidecar struct {
	Checksum string            `json:"checksum"`
	Metadata map[string]string `json:"metadata,omitempty"`
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

func (l *Local) metaPath(key string) string {
	return filepath.Join(l.root, localMeta, filepath.FromSlash(key)+".json")
}

// Put writes r to a temp file, then publishes it. The sidecar (checksum and metadata) is
// written to a temp file before the data is published and renamed into place only after:
// a crash in between leaves an object without a sidecar (Head reports no checksum), never a
// sidecar that describes other bytes, and a losing conditional create never touches the
// winner's sidecar.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	dst, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	tmp, sum, err := l.writeTemp(ctx, r)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer os.Remove(tmp)
	side := localSidecar{Checksum: "sha256:" + base64.StdEncoding.EncodeToString(sum), Metadata: opts.Metadata}
	sideTmp, err := l.writeSidecarTemp(side)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer os.Remove(sideTmp)
	if err := l.publish(tmp, dst, opts.IfAbsent); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := renameSynced(sideTmp, l.metaPath(key)); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: metadata: %w", key, err)
	}
	return l.Head(ctx, key)
}

// writeTemp copies r into a synced temp file and returns its path and SHA-256.
func (l *Local) writeTemp(ctx context.Context, r io.Reader) (string, []byte, error) {
	f, err := os.CreateTemp(filepath.Join(l.root, localTmp), "put-*")
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), h.Sum(nil), nil
}

func (l *Local) writeSidecarTemp(side localSidecar) (string, error) {
	data, err := json.Marshal(side)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Join(l.root, localTmp), "meta-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return f.Name(), err
}

// publish moves tmp to dst: an exclusive link when ifAbsent (EEXIST means another object
// won), a rename otherwise.
func (l *Local) publish(tmp, dst string, ifAbsent bool) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if !ifAbsent {
		return renameSynced(tmp, dst)
	}
	if err := os.Link(tmp, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return err
	}
	return syncDir(filepath.Dir(dst))
}

func renameSynced(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return syncDir(filepath.Dir(to))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get opens key for reading.
func (l *Local) Get(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return f, nil
}

// Head describes key from its file and sidecar.
func (l *Local) Head(_ context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head %s: %w", key, err)
	}
	info := infoOf(key, st)
	var side localSidecar
	if data, err := os.ReadFile(l.metaPath(key)); err == nil && json.Unmarshal(data, &side) == nil {
		info.Checksum, info.Metadata = side.Checksum, side.Metadata
	}
	return info, nil
}

// infoOf builds an ObjectInfo whose ETag changes whenever the file is replaced: size,
// modification time and inode together.
func infoOf(key string, st fs.FileInfo) ObjectInfo {
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime(), ETag: fmt.Sprintf("%x-%x-%x", st.Size(), st.ModTime().UnixNano(), ino)}
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
