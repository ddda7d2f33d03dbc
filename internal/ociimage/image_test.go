package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestWriteIsReproducibleAndNonRoot: the same binary gives the same digest twice, and the
// image runs it as 65532 with the files a distroless static base has, each with its mode.
func TestWriteIsReproducibleAndNonRoot(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("#!/not/really\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "docker.io/library/app:dev", Binary: bin, Path: "/app", User: "65532:65532"}
	var digests []string
	for _, out := range []string{"a.tar", "b.tar"} {
		if err := Write(spec, filepath.Join(dir, out)); err != nil {
			t.Fatal(err)
		}
		img, err := build(spec)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds of one binary: %s and %s", digests[0], digests[1])
	}
	a, b := mustRead(t, filepath.Join(dir, "a.tar")), mustRead(t, filepath.Join(dir, "b.tar"))
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of one binary differ")
	}

	img, err := build(spec)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/app" {
		t.Fatalf("user %q, entrypoint %q; want 65532:65532, [/app]", cf.Config.User, cf.Config.Entrypoint)
	}
	files := map[string]int64{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h.Mode
	}
	for name, mode := range map[string]int64{"app": 0o755, "etc/passwd": 0o644, "etc/group": 0o644, "tmp": 0o1777, "home/nonroot": 0o700} {
		if got, ok := files[name]; !ok || got != mode {
			t.Errorf("%s: mode %o (present %v); want %o", name, got, ok, mode)
		}
	}
}

// TestWriteIsAnOCILayout: the archive holds an OCI layout whose one image carries the name
// containerd imports it under.
func TestWriteIsAnOCILayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := Write(Spec{Name: "docker.io/library/app:dev", Binary: bin, Path: "/app", User: "65532:65532"}, out); err != nil {
		t.Fatal(err)
	}
	unpacked := filepath.Join(dir, "layout")
	untar(t, out, unpacked)
	idx, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/app:dev" {
		t.Fatalf("index %+v; want one image named docker.io/library/app:dev", m.Manifests)
	}
	if mt := m.Manifests[0].MediaType; mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("manifest media type %s; want OCI's", mt)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
