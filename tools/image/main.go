// Command image writes the OCI image archive of one static binary (internal/ociimage):
//
//	CGO_ENABLED=0 go build -o bin/linux/karch ./cmd/karch
//	go run ./tools/image -binary bin/linux/karch -name docker.io/library/karch:dev -out bin/karch-image.tar
//
// `make image` runs it for karch; the services script for the local node's pause image.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/karch-archive/karch/internal/ociimage"
)

func main() {
	var spec ociimage.Spec
	var out string
	flag.StringVar(&spec.Binary, "binary", "", "static Linux executable to put in the image")
	flag.StringVar(&spec.Name, "name", "", "image reference, as the node resolves it (docker.io/library/karch:dev)")
	flag.StringVar(&spec.Path, "path", "/karch", "the binary's path in the image, and the entrypoint")
	flag.StringVar(&spec.User, "user", "65532:65532", "uid:gid the image runs as")
	flag.StringVar(&spec.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle for the image's /etc/ssl/certs; empty: none")
	flag.StringVar(&out, "out", "", "OCI archive to write")
	flag.Parse()
	if spec.Binary == "" || spec.Name == "" || out == "" || len(spec.Path) < 2 || spec.Path[0] != '/' {
		fmt.Fprintln(os.Stderr, "image: -binary, -name, -out and an absolute -path are required")
		os.Exit(3)
	}
	if err := ociimage.Write(spec, out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}
