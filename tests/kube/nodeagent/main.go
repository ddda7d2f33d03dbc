// Command nodeagent runs internal/nodeagent against the local control plane, for trying the
// deploy/ overlays by hand the way tests/kube does:
//
//	make kube-up build
//	export KUBECONFIG=~/.cache/karch/state/kube/admin.kubeconfig
//	go run ./tests/kube/nodeagent -image karch:dev=bin/karch &
//	kubectl apply -k deploy/overlays/kind   # then point its ConfigMap at the local servers
//	kubectl -n karch create job --from=cronjob/karch-cdr try-1
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/karch-archive/karch/internal/nodeagent"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nodeagent:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig (KUBECONFIG)")
	node := flag.String("node", "local", "name of the Node the agent registers")
	namespace := flag.String("namespace", "", "serve only this namespace's pods; empty: all")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "karch-nodeagent"), "pods' working directories and logs")
	images := map[string]string{}
	flag.Func("image", "image=binary: run this local binary for the image (repeatable)", func(v string) error {
		image, bin, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("want image=binary, not %q", v)
		}
		abs, err := filepath.Abs(bin)
		images[image] = abs
		return err
	})
	flag.Parse()
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	agent := &nodeagent.Agent{Client: client, Server: rc.Host, Node: *node, Namespace: *namespace, Images: images,
		Dir: *dir, BaseEnv: []string{"PATH=" + os.Getenv("PATH")}, Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
	return agent.Run(ctx)
}
