// Package blob is karch's object store: one small Bucket contract with two backends, S3
// (aws-sdk-go-v2) and a local directory, that pass one acceptance suite (blobtest).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Bucket stores immutable objects under string keys ("a/b/c.json"; no leading slash).
//
// All methods are safe for concurrent use. Writes are atomic: a reader sees a whole object or
// none, never a partial one, even if the writer dies mid-way.
type Bucket interface {
	// Put streams r to key and returns what was stored. It reads r to EOF with bounded
	// memory: large objects go up in parts, never whole in memory. With opts.IfAbsent the
	// object is created only if key does not exist; otherwise Put fails with an error for
	// which IsExists is true, and the stored object is left untouched.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// Get opens key for reading. A missing key gives an error for which IsNotFound is true.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Head describes key without reading it. A missing key: IsNotFound.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for each object whose key starts with prefix, in lexical key order, and
	// stops at the first error fn returns.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// PutOptions tune one Put.
type PutOptions struct {
	// IfAbsent makes Put a conditional create (S3 If-None-Match: *).
	IfAbsent bool
	// Metadata is stored with the object and returned by Head. Keys are lower-case ASCII
	// letters, digits and '-'; values are ASCII.
	Metadata    map[string]string
	ContentType string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag identifies this stored version: a rewrite with the same bytes changes it
	// (for the local directory, the modification time is part of it).
	ETag string
	// Checksum is the integrity value the store computed over the stored bytes, prefixed
	// with its algorithm ("sha256:<base64>", or "sha256:<base64>-<parts>" for an S3
	// multipart object). Equal bytes written with the same options give equal checksums.
	// Empty where the store did not compute one (List may omit it).
	Checksum string
	// Metadata is what PutOptions.Metadata stored (nil from List).
	Metadata map[string]string
}

var (
	// ErrNotFound is matched by IsNotFound for every backend.
	ErrNotFound = errors.New("blob: object not found")
	// ErrExists is matched by IsExists: a conditional create found the key taken.
	ErrExists = errors.New("blob: object exists")
)

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsExists reports whether err says a conditional create lost to an existing object.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// ReadAll reads a whole object: for small documents (plans, receipts, manifests), never for
// pieces, which are streamed. A missing key gives an error for which IsNotFound is true.
func ReadAll(ctx context.Context, b Bucket, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Spool copies an object into a temporary file, for readers that need random access (a
// Parquet footer is at the end), and writes every byte to tee as well (a digest). Memory
// stays bounded; the disk holds one object. The caller closes the file, which removes it.
func Spool(ctx context.Context, b Bucket, key string, tee io.Writer) (*TempFile, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "karch-spool-*")
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	t := &TempFile{File: f}
	if t.Size, err = io.Copy(io.MultiWriter(f, tee), rc); err != nil {
		t.Close()
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	return t, nil
}

// TempFile is a spooled object, removed on Close.
type TempFile struct {
	*os.File
	Size int64
}

// Close closes and removes the file.
func (t *TempFile) Close() error {
	err := t.File.Close()
	if rerr := os.Remove(t.Name()); err == nil {
		err = rerr
	}
	return err
}
