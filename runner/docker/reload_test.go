package docker

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

// readInContainer reads one file out of a container through the engine.
func readInContainer(t *testing.T, ctx context.Context, b *Backend, name, file string) string {
	t.Helper()
	res, err := b.cli.CopyFromContainer(ctx, name, client.CopyFromContainerOptions{SourcePath: file})
	if err != nil {
		t.Fatalf("reading %s in %s: %v", file, name, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A sync copies files into a running FROM scratch container (no shell, no
// tar in it) through the engine, making missing directories.
func TestSyncIntoAContainer(t *testing.T) {
	s := newStack(t, "services:\n  web:\n    image: {{IMAGE}}\n")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	inst := s.start(ctx, "web", &logs{})
	src := filepath.Join(t.TempDir(), "index.html")
	os.WriteFile(src, []byte("<h1>synced</h1>"), 0o644)
	files := []runner.FileCopy{{Src: src, Dst: "/srv/www/index.html"}}
	if err := s.b.Sync(ctx, inst, files); err != nil {
		t.Fatal(err)
	}
	if got := readInContainer(t, ctx, s.b, inst.Containers()[0], "/srv/www/index.html"); got != "<h1>synced</h1>" {
		t.Fatalf("in the container: %q", got)
	}
	os.WriteFile(src, []byte("<h1>again</h1>"), 0o644)
	if err := s.b.Sync(ctx, inst, files); err != nil {
		t.Fatal(err)
	}
	if got := readInContainer(t, ctx, s.b, inst.Containers()[0], "/srv/www/index.html"); got != "<h1>again</h1>" {
		t.Fatalf("after the second sync: %q", got)
	}
	// A removal needs rm, which a FROM scratch image lacks: a clear error.
	err := s.b.Sync(ctx, inst, []runner.FileCopy{{Dst: "/srv/www/index.html", Removed: true}})
	if err == nil || !strings.Contains(err.Error(), "needs rm in its image") {
		t.Fatalf("removal in a scratch container: %v", err)
	}
}

// Rebuild builds the image again from the context as it is now, where
// Build reuses the backend's earlier build.
func TestRebuildBuildsAgain(t *testing.T) {
	s := newStack(t, "services:\n  web:\n    build: ./web\n")
	os.MkdirAll(filepath.Join(s.dir, "web"), 0o755)
	write := func(answer string) {
		os.WriteFile(filepath.Join(s.dir, "web", "Dockerfile"), []byte("FROM "+testImage+"\nCOPY answer.txt /answer.txt\n"), 0o644)
		os.WriteFile(filepath.Join(s.dir, "web", "answer.txt"), []byte(answer), 0o644)
	}
	tag := s.p.Name + "-web"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.b.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	imageID := func() string {
		img, err := s.b.cli.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		return img.ID
	}
	write("v1")
	l := &logs{}
	if err := s.b.Build(ctx, specFor(s.p, "web", l)); err != nil {
		t.Fatalf("%v\n%s", err, l)
	}
	first := imageID()
	t.Cleanup(func() { // untagged by the rebuild
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.b.cli.ImageRemove(ctx, first, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	write("v2")
	if err := s.b.Build(ctx, specFor(s.p, "web", l)); err != nil || imageID() != first {
		t.Fatalf("a second Build should reuse the first (%v)", err)
	}
	if err := s.b.Rebuild(ctx, specFor(s.p, "web", l)); err != nil {
		t.Fatalf("%v\n%s", err, l)
	}
	if imageID() == first {
		t.Fatal("Rebuild left the image as it was")
	}
	inst := s.start(ctx, "web", &logs{})
	if got := readInContainer(t, ctx, s.b, inst.Containers()[0], "/answer.txt"); got != "v2" {
		t.Fatalf("the rebuilt image's container has %q", got)
	}

	// The image a rebuild untagged goes once no container uses it: the
	// first at once (none did), the second, which inst runs, at down.
	gone := func(id string) bool {
		_, err := s.b.cli.ImageInspect(ctx, id)
		return cerrdefs.IsNotFound(err)
	}
	s.b.quitting.Wait() // the rebuild's removal, off its path
	if !gone(first) {
		t.Error("the image the rebuild replaced, which no container used, is still there")
	}
	second := imageID()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.b.cli.ImageRemove(ctx, second, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	write("v3")
	if err := s.b.Rebuild(ctx, specFor(s.p, "web", l)); err != nil {
		t.Fatalf("%v\n%s", err, l)
	}
	s.b.quitting.Wait()
	if gone(second) {
		t.Fatal("the rebuild removed the image a running container uses")
	}
	if err := inst.Stop(ctx, 9, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.b.Down(ctx, s.p.Name, false); err != nil {
		t.Fatal(err)
	}
	if !gone(second) {
		t.Error("down left the image a rebuild replaced, once its container was gone")
	}
	if gone(imageID()) {
		t.Error("down removed the service's current image")
	}
}
