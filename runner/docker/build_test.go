package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// New must fail fast, with an *EngineError naming the socket, when no
// engine listens.
func TestNewWithoutEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	start := time.Now()
	_, err := New(t.Context())
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("New took %s; want it to give up within about 2s", took)
	}
	var ee *EngineError
	if !errors.As(err, &ee) {
		t.Fatalf("New() error = %v (%T); want *EngineError", err, err)
	}
	if ee.Host != "unix:///nonexistent.sock" || !strings.Contains(err.Error(), "unix:///nonexistent.sock") {
		t.Errorf("error %q (host %q) does not name the socket tried", err, ee.Host)
	}
}

// Build must stream the build log, honour .dockerignore, args and labels,
// and turn an error reported inside the JSON stream into a returned error,
// with BuildKit (the default) and with the classic builder
// (DOCKER_BUILDKIT=0).
func TestBuild(t *testing.T) {
	t.Run("buildkit", func(t *testing.T) {
		// The plain progress: each step named when it starts, and how it ended.
		testBuild(t, `#([0-9]+) \[2/2\] COPY keep.txt /keep.txt\n(.*\n)*.*#([0-9]+) (DONE [0-9.]+s|CACHED)\n`)
	})
	t.Run("classic", func(t *testing.T) {
		t.Setenv("DOCKER_BUILDKIT", "0")
		testBuild(t, `Step 1/[0-9]+ : FROM `)
	})
}

func testBuild(t *testing.T, wantLog string) {
	s := newStack(t, `
services:
  good:
    build:
      context: ./good
      args:
        GREETING: hi
      labels:
        example.label: "yes"
  bad:
    image: devstack-test-bad:{{TAG}}
    build: ./bad
`)
	b := s.b
	write := func(rel, data string) {
		path := filepath.Join(s.dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good/Dockerfile", "FROM "+testImage+"\nARG GREETING\nLABEL greeting=$GREETING\nCOPY keep.txt /keep.txt\n")
	write("good/keep.txt", "kept\n")
	write("good/.dockerignore", "ignored.txt\n")
	write("good/ignored.txt", "must not be sent\n")
	write("bad/Dockerfile", "FROM "+testImage+"\nCOPY ignored.txt /ignored.txt\n")
	write("bad/.dockerignore", "ignored.txt\n")
	write("bad/ignored.txt", "must not be sent\n")
	goodTag := s.p.Name + "-good"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, img := range []string{goodTag, "devstack-test-bad:" + testRunTag} {
			_, _ = b.cli.ImageRemove(ctx, img, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	l := &logs{}
	if err := b.Build(ctx, specFor(s.p, "good", l)); err != nil {
		t.Fatalf("building good: %v\n%s", err, l)
	}
	if !regexp.MustCompile(wantLog).MatchString(l.String()) {
		t.Errorf("build output not streamed to Stdout (want a match of %q):\n%s", wantLog, l)
	}
	img, err := b.cli.ImageInspect(ctx, goodTag)
	if err != nil {
		t.Fatalf("image %s not tagged as compose would: %v", goodTag, err)
	}
	labels := img.Config.Labels
	for k, want := range map[string]string{
		"greeting": "hi", "example.label": "yes",
		LabelProject: s.p.Name, composeProject: s.p.Name,
	} {
		if labels[k] != want {
			t.Errorf("image label %s = %q, want %q (labels %v)", k, labels[k], want, labels)
		}
	}
	// Images carry project labels only, so services sharing an image share
	// its build cache.
	if v, ok := labels[LabelService]; ok {
		t.Errorf("image has a service label %q", v)
	}

	l = &logs{}
	err = b.Build(ctx, specFor(s.p, "bad", l))
	if !errors.Is(err, ErrBuildFailed) {
		t.Fatalf("building bad: error = %v; want ErrBuildFailed", err)
	}
	if !strings.Contains(err.Error(), "ignored.txt") || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("build error %q should carry the builder's message (about ignored.txt) and name the service", err)
	}
}

// A missing image that cannot be pulled (from a registry address on
// loopback where nothing listens) must
// give an error naming the service and the image, and the fix.
func TestImageNotAvailable(t *testing.T) {
	s := newStack(t, `
services:
  ghost:
    image: 127.0.0.1:1/devstack/ghost:never
`)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := s.b.Build(ctx, specFor(s.p, "ghost", &logs{}))
	if !errors.Is(err, ErrImageUnavailable) {
		t.Fatalf("error = %v; want ErrImageUnavailable", err)
	}
	for _, want := range []string{"127.0.0.1:1/devstack/ghost:never", `"ghost"`, "could not be pulled", "build it or fix image:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// Services that share an image and build config are built once, whatever
// their number: the others wait for that build.
func TestSharedImageIsBuiltOnce(t *testing.T) {
	s := newStack(t, `
services:
  one:
    image: devstack-test-shared:{{TAG}}
    build: ./ctx
  two:
    image: devstack-test-shared:{{TAG}}
    build: ./ctx
  three:
    image: devstack-test-shared:{{TAG}}
    build: ./ctx
`)
	if err := os.MkdirAll(filepath.Join(s.dir, "ctx"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "ctx", "Dockerfile"), []byte("FROM "+testImage+"\nLABEL shared=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.b.cli.ImageRemove(ctx, "devstack-test-shared:"+testRunTag, client.ImageRemoveOptions{Force: true})
	})
	var wg sync.WaitGroup
	outs := make([]*logs, 3)
	errs := make([]error, 3)
	for i, name := range []string{"one", "two", "three"} {
		outs[i] = &logs{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.b.Build(t.Context(), specFor(s.p, name, outs[i]))
		}()
	}
	wg.Wait()
	built := 0
	for i, l := range outs {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		built += strings.Count(l.String(), "building image devstack-test-shared")
	}
	if built != 1 {
		t.Fatalf("the shared image was built %d times, want once", built)
	}
}
