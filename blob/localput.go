package blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Put writes r to a synced temp file, then the object's metadata, named by the temp file's
// inode, and only then publishes the file at key: an exclusive link when opts.IfAbsent, a
// rename otherwise. The inode survives both, and Head reads the metadata of the inode it
// finds at key, so the object is never visible without its metadata, and a crash between
// any two steps leaves either no object or a whole one (at worst, an unused metadata file).
func (l *Local) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	dst, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := l.put(ctx, key, dst, r, opts)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	return info, nil
}

func (l *Local) put(ctx context.Context, key, dst string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	tmp, sum, err := l.writeTemp(ctx, r)
	if err != nil {
		return ObjectInfo{}, err
	}
	// Removed last: while tmp exists its inode, and so its metadata's name, is this Put's.
	defer os.Remove(tmp)
	st, err := os.Stat(tmp)
	if err != nil {
		return ObjectInfo{}, err
	}
	l.step("data written")
	side := localSidecar{Checksum: "sha256:" + base64.StdEncoding.EncodeToString(sum), Metadata: opts.Metadata}
	sidePath := l.sidecarPath(key, inodeOf(st))
	if err := l.writeSidecar(sidePath, side); err != nil {
		return ObjectInfo{}, fmt.Errorf("write metadata: %w", err)
	}
	l.step("metadata written")
	published, err := l.publish(tmp, dst, key, opts.IfAbsent)
	if !published {
		// No other Put can own this name: tmp's inode is alive until we return.
		os.Remove(sidePath)
	}
	if err != nil {
		return ObjectInfo{}, err
	}
	l.step("published")
	// Linking or renaming changes neither size, modification time nor inode: this is
	// what Head reports for the object.
	info := infoOf(key, st)
	info.Checksum, info.Metadata = side.Checksum, side.Metadata
	return info, nil
}

func (l *Local) step(name string) {
	if l.testHook != nil {
		l.testHook(name)
	}
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

// publish makes the file tmp the object at dst (key), and reports whether it did: an error
// after the object is published (syncing its folder) leaves it published.
func (l *Local) publish(tmp, dst, key string, ifAbsent bool) (bool, error) {
	if err := mkdirAllSynced(filepath.Dir(dst)); err != nil {
		return false, err
	}
	if ifAbsent {
		return link(tmp, dst)
	}
	return l.replace(tmp, dst, key)
}

// link publishes tmp at dst only if dst does not exist (EEXIST: another object won), and
// reports whether it did.
func link(tmp, dst string) (bool, error) {
	err := os.Link(tmp, dst)
	if errors.Is(err, fs.ErrExist) {
		return false, ErrExists
	}
	if err != nil {
		return false, err
	}
	return true, syncDir(filepath.Dir(dst))
}

// replace renames tmp over dst and reports whether it did; once the rename is durable, it
// removes the metadata of the object it replaced. It holds that object open until then: an
// open inode cannot be freed, so its number cannot pass to a new Put, whose metadata would
// have the same name, before the removal. (Head, which may have opened the replaced object,
// then finds no metadata and looks again.)
func (l *Local) replace(tmp, dst, key string) (bool, error) {
	old, _ := os.Open(dst) // nil when there is no object to replace
	if old != nil {
		defer old.Close()
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, err
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return true, err
	}
	if st, err := statFile(old); err == nil && st.Mode().IsRegular() {
		os.Remove(l.sidecarPath(key, inodeOf(st)))
	}
	return true, nil
}

func statFile(f *os.File) (fs.FileInfo, error) {
	if f == nil {
		return nil, fs.ErrNotExist
	}
	return f.Stat()
}

// renameSynced renames from to to and syncs the folders, so that the rename survives a
// power loss.
func renameSynced(from, to string) error {
	if err := mkdirAllSynced(filepath.Dir(to)); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return syncDir(filepath.Dir(to))
}

// mkdirAllSynced creates dir and its missing parents, syncing each parent, so that a file
// created in dir and synced survives a power loss with the path that leads to it.
func mkdirAllSynced(dir string) error {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSynced(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
