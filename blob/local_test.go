package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sync/errgroup"
)

var pieceMeta = map[string]string{"karch-first": "100", "karch-end": "200"}

// putSteps are the steps of Local.Put that its testHook sees, in order.
var putSteps = []string{"data written", "metadata written", "published"}

func newLocal(t *testing.T) *Local {
	t.Helper()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkWhole fails unless key is absent, or present with its metadata and the checksum of
// its bytes: what a shard adopting a piece needs.
func checkWhole(ctx context.Context, b Bucket, key string, meta map[string]string) error {
	info, err := b.Head(ctx, key)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fmt.Sprint(info.Metadata) != fmt.Sprint(meta) {
		return fmt.Errorf("head %s: metadata %v, want %v (checksum %q)", key, info.Metadata, meta, info.Checksum)
	}
	rc, err := b.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return err
	}
	if want := "sha256:" + base64.StdEncoding.EncodeToString(h.Sum(nil)); info.Checksum != want {
		return fmt.Errorf("head %s: checksum %q, the bytes have %q", key, info.Checksum, want)
	}
	return nil
}

// The moment a conditional create publishes its object, a Head (another shard about to
// adopt the piece) must see the object whole, metadata included.
func TestLocalObjectAppearsWithItsMetadata(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	for _, at := range putSteps {
		key := "piece-" + strings.ReplaceAll(at, " ", "-")
		var seen error
		l.testHook = func(step string) {
			if step == at {
				seen = checkWhole(ctx, l, key, pieceMeta)
			}
		}
		if _, err := l.Put(ctx, key, strings.NewReader("records"), PutOptions{IfAbsent: true, Metadata: pieceMeta}); err != nil {
			t.Fatal(err)
		}
		if seen != nil {
			t.Errorf("Head after step %q: %v", at, seen)
		}
	}
}

// Heads racing with two conditional creates of each key never see an object without its
// metadata, whoever wins.
func TestLocalConcurrentHeadsSeeWholeObjects(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	for i := range 50 {
		key := fmt.Sprintf("race/%d", i)
		stop := make(chan struct{})
		var heads, puts errgroup.Group
		for range 4 {
			heads.Go(func() error {
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					if err := checkWhole(ctx, l, key, pieceMeta); err != nil {
						return err
					}
				}
			})
		}
		for range 2 {
			puts.Go(func() error {
				_, err := l.Put(ctx, key, strings.NewReader("same records"), PutOptions{IfAbsent: true, Metadata: pieceMeta})
				if IsExists(err) {
					return checkWhole(ctx, l, key, pieceMeta) // what the loser adopts
				}
				return err
			})
		}
		err := puts.Wait()
		close(stop)
		if err := errors.Join(err, heads.Wait()); err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
	}
}

// A Put killed with SIGKILL between any two steps leaves no object, or a whole one: never
// one that every later attempt would reject. The test runs itself as the process to kill.
func TestLocalKilledMidPut(t *testing.T) {
	if at := os.Getenv("KARCH_TEST_KILL_AT"); at != "" {
		putAndDie(os.Getenv("KARCH_TEST_KILL_DIR"), at)
		return
	}
	for _, at := range putSteps {
		t.Run(strings.ReplaceAll(at, " ", "-"), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestLocalKilledMidPut$", "-test.count=1")
			cmd.Env = append(os.Environ(), "KARCH_TEST_KILL_AT="+at, "KARCH_TEST_KILL_DIR="+dir)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the put was not killed at %q: %v\n%s", at, err, out)
			}
			l, err := NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			assertRecovers(t, l, "piece")
		})
	}
}

func putAndDie(dir, at string) {
	l, err := NewLocal(dir)
	if err != nil {
		panic(err)
	}
	l.testHook = func(step string) {
		if step == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	l.Put(context.Background(), "piece", strings.NewReader("records"), PutOptions{IfAbsent: true, Metadata: pieceMeta})
	panic("the put ended without reaching step " + at)
}

// assertRecovers checks that key, after a crash, is whole or absent, and that the next
// attempt then either creates it or finds it whole.
func assertRecovers(t *testing.T, l *Local, key string) {
	t.Helper()
	ctx := context.Background()
	if err := checkWhole(ctx, l, key, pieceMeta); err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	_, err := l.Put(ctx, key, strings.NewReader("records"), PutOptions{IfAbsent: true, Metadata: pieceMeta})
	if err != nil && !IsExists(err) {
		t.Fatalf("the next attempt: %v", err)
	}
	if err := checkWhole(ctx, l, key, pieceMeta); err != nil {
		t.Fatalf("after the next attempt: %v", err)
	}
	if _, err := l.Head(ctx, key); err != nil {
		t.Fatalf("after the next attempt: %v", err)
	}
}

// A store written by an earlier version keeps its metadata in .karch-meta/<key>.json.
func TestLocalReadsLegacyMetadata(t *testing.T) {
	l := newLocal(t)
	data := []byte("records")
	sum := sha256.Sum256(data)
	side := fmt.Sprintf(`{"checksum":"sha256:%s","metadata":{"karch-first":"100","karch-end":"200"}}`, base64.StdEncoding.EncodeToString(sum[:]))
	for name, content := range map[string][]byte{"a/piece": data, localMeta + "/a/piece.json": []byte(side)} {
		p := filepath.Join(l.root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	info, err := l.Head(context.Background(), "a/piece")
	if err != nil || info.Checksum == "" {
		t.Fatalf("head: %+v, %v", info, err)
	}
	if err := checkWhole(context.Background(), l, "a/piece", pieceMeta); err != nil {
		t.Fatal(err)
	}
}

// Losing creates and overwrites leave no metadata behind: one file per object, and List
// shows only objects.
func TestLocalLeavesOneMetadataFilePerObject(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	var g errgroup.Group
	for range 8 {
		g.Go(func() error {
			_, err := l.Put(ctx, "race", strings.NewReader("x"), PutOptions{IfAbsent: true, Metadata: pieceMeta})
			if IsExists(err) {
				return nil
			}
			return err
		})
	}
	// Plain overwrites one after another, beside the race: two at once may leave the loser's
	// metadata file behind (harmless, and karch writes nothing but conditional creates).
	g.Go(func() error {
		for i := range 5 {
			if _, err := l.Put(ctx, "over", bytes.NewReader([]byte{byte(i)}), PutOptions{Metadata: pieceMeta}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := countFiles(t, filepath.Join(l.root, localMeta)); got != 2 {
		t.Fatalf("%d metadata files for 2 objects", got)
	}
	var keys []string
	if err := l.List(ctx, "", func(o ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[over race]" {
		t.Fatalf("list: %v", keys)
	}
	for _, k := range keys {
		if err := checkWhole(ctx, l, k, pieceMeta); err != nil {
			t.Fatal(err)
		}
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Plain Puts overwriting one key free inodes that later Puts reuse, and remove the replaced
// objects' metadata: Heads meanwhile must always get the metadata of the file they found.
// Each content has its own length, so the size Head stats names the checksum it must read.
func TestLocalHeadsDuringOverwritesSeeWholeObjects(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	want := map[int64]string{}
	for n := 1; n <= 8; n++ {
		sum := sha256.Sum256(bytes.Repeat([]byte{'x'}, n))
		want[int64(n)] = "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
	}
	var writers, heads errgroup.Group
	for w := range 2 {
		writers.Go(func() error {
			for i := range 100 {
				n := 1 + (i*3+w)%8
				if _, err := l.Put(ctx, "over", bytes.NewReader(bytes.Repeat([]byte{'x'}, n)), PutOptions{Metadata: pieceMeta}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	stop := make(chan struct{})
	inodes := make([]map[string]bool, 4)
	for h := range inodes {
		inodes[h] = map[string]bool{}
		heads.Go(func() error {
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				info, err := l.Head(ctx, "over")
				if IsNotFound(err) {
					continue
				}
				if err != nil {
					return err
				}
				if info.Checksum != want[info.Size] || info.Metadata["karch-end"] != "200" {
					return fmt.Errorf("head: %d bytes with checksum %q and metadata %v; want checksum %q", info.Size, info.Checksum, info.Metadata, want[info.Size])
				}
				inodes[h][info.ETag] = true
			}
		})
	}
	err := writers.Wait()
	close(stop)
	if err := errors.Join(err, heads.Wait()); err != nil {
		t.Fatal(err)
	}
	// Two overwrites at once may each leave a metadata file behind (see
	// TestLocalLeavesOneMetadataFilePerObject): what counts here is what the heads saw.
	t.Logf("the heads saw %d versions", len(inodes[0]))
}
