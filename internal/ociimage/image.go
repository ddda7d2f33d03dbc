// Package ociimage writes a container image of one static binary as an OCI image archive (an
// OCI image layout in a tar file), which `ctr images import` and `podman load` read, without a
// container engine: how `make image` builds karch's image and how the tests put images on
// their node, which pulls from no registry.
//
// The image holds what the Dockerfile's distroless static, non-root base gives karch: the
// binary, /etc/passwd and /etc/group naming root, nonroot (65532) and nobody, the host's CA
// bundle for TLS, a world-writable /tmp and the nonroot user's home. Every file has the same
// owner, mode and time on every build, so one binary always gives one image digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec describes an image of one binary.
type Spec struct {
	// Name is the image reference the archive carries, as a pod spec names it after
	// normalisation ("docker.io/library/karch:dev" for "karch:dev").
	Name string
	// Binary is a statically linked Linux executable, stored as /<Path>.
	Binary string
	// Path is the binary's path in the image and the entrypoint, "/karch" for example.
	Path string
	// User is the "uid:gid" the image runs as.
	User string
	// CACerts, when set, is a PEM bundle stored as /etc/ssl/certs/ca-certificates.crt.
	CACerts string
}

// epoch is every file's and the image's time: reproducible digests.
var epoch = time.Unix(0, 0).UTC()

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// Write builds the image and writes its OCI archive to out.
func Write(spec Spec, out string) error {
	img, err := build(spec)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// containerd names an imported image by io.containerd.image.name; other tools read the
	// OCI annotation.
	ann := map[string]string{"io.containerd.image.name": spec.Name, "org.opencontainers.image.ref.name": spec.Name}
	if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
		return fmt.Errorf("write image %s: %w", spec.Name, err)
	}
	return tarDir(dir, out)
}

func build(spec Spec) (v1.Image, error) {
	base, err := baseLayer(spec.CACerts)
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return nil, fmt.Errorf("image binary: %w", err)
	}
	app, err := layer([]file{{name: spec.Path[1:], mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	oci := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(oci, base, app)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: []string{spec.Path}, User: spec.User, WorkingDir: "/",
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: epoch})
}

func baseLayer(caCerts string) (v1.Layer, error) {
	files := []file{
		{name: "etc/", mode: 0o755 | fs.ModeDir},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "home/", mode: 0o755 | fs.ModeDir},
		{name: "home/nonroot/", mode: 0o700 | fs.ModeDir, uid: 65532},
		{name: "tmp/", mode: 0o777 | fs.ModeDir | fs.ModeSticky},
	}
	if caCerts != "" {
		pem, err := os.ReadFile(caCerts)
		if err != nil {
			return nil, fmt.Errorf("image CA bundle: %w", err)
		}
		files = append(files, file{name: "etc/ssl/", mode: 0o755 | fs.ModeDir}, file{name: "etc/ssl/certs/", mode: 0o755 | fs.ModeDir},
			file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: pem})
	}
	return layer(files)
}

type file struct {
	name string
	mode fs.FileMode
	uid  int
	data []byte
}

// layer is an uncompressed tar of files; the library compresses it.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: int64(f.mode.Perm()), Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.mode.IsDir():
			h.Typeflag = tar.TypeDir
			if f.mode&fs.ModeSticky != 0 {
				h.Mode |= 0o1000
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// tarDir writes dir's tree as a tar archive at out, through a temporary file so that a
// reader never sees half an archive.
func tarDir(dir, out string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".ociimage-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), epoch, 0, 0, "", ""
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
