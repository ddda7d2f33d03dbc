package blob

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/karch-archive/karch/failure"
)

// localSidecar is what Local keeps beside each object.
type localSidecar struct {
	Checksum string            `json:"checksum"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// sidecarPath names the metadata of the object file with inode ino at key:
// .karch-meta/<key>.<inode>.meta. The name is fixed before the file is published, and the
// inode survives the link or rename that publishes it, so metadata and object appear
// together. The inode tells this object's metadata from that of any other file that has
// been at key (an overwritten object, a losing create). The suffix is not ".json" so that
// no name can be another key's legacy sidecar: "<key>.<inode>.json" is key "<key>.<inode>"'s.
func (l *Local) sidecarPath(key string, ino uint64) string {
	return filepath.Join(l.root, localMeta, filepath.FromSlash(key)) + "." + strconv.FormatUint(ino, 10) + ".meta"
}

// legacySidecarPath is where versions before the inode-keyed metadata kept it, renamed into
// place after the object was published. Head still reads it for objects those versions wrote.
func (l *Local) legacySidecarPath(key string) string {
	return filepath.Join(l.root, localMeta, filepath.FromSlash(key)+".json")
}

// readSidecar reads the metadata file at p; found is false when there is none.
func (l *Local) readSidecar(p string) (side localSidecar, found bool, err error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return localSidecar{}, false, nil
	}
	if err != nil {
		return localSidecar{}, false, fmt.Errorf("read metadata: %w", err)
	}
	if err := json.Unmarshal(data, &side); err != nil {
		// Written whole by a rename, so only a damaged disk garbles it; a retry reads the
		// same bytes.
		return localSidecar{}, false, failure.Permanent(fmt.Errorf("decode metadata %s: %w", p, err))
	}
	return side, true, nil
}

// writeSidecar stores side at p durably: a synced temp file renamed into a synced folder.
func (l *Local) writeSidecar(p string, side localSidecar) error {
	data, err := json.Marshal(side)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(l.root, localTmp), "meta-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return renameSynced(f.Name(), p)
}
