package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// The tests run against the real engine. TestMain connects once and builds
// the test image (a static testsvc binary FROM scratch) through Build.
var (
	engine     *Backend // nil when no engine answered
	engineErr  error
	setupErr   error
	testImage  string // tag of the test image
	testRunTag = randHex(4)
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	defer func() { os.RemoveAll(devstackBuild.dir) }() // built by the ambassador tests, if any ran
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	engine, engineErr = New(ctx)
	if engineErr != nil {
		return m.Run()
	}
	defer engine.Close()
	// The build cache the tests' builds leave goes at the end, as their
	// images do (a record some build still uses stays).
	if before, err := engine.buildCache(ctx); err == nil {
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = pruneNewCache(rctx, engine, before)
		}()
	}
	// So do the ambassador images made from the devstack binary the
	// tests build (ambassador and standby tests): one per binary.
	if before, err := ambassadorImages(ctx, engine); err == nil {
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			after, _ := ambassadorImages(rctx, engine)
			for _, id := range after {
				if !slices.Contains(before, id) {
					_, _ = engine.cli.ImageRemove(rctx, id, client.ImageRemoveOptions{Force: true})
				}
			}
		}()
	}
	testImage = "devstack-testsvc:" + testRunTag
	setupErr = buildTestImage(ctx)
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = engine.cli.ImageRemove(rctx, testImage, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}()
	return m.Run()
}

// buildTestImage compiles testdata/testsvc statically and builds it into
// testImage with the backend's own Build.
func buildTestImage(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "devstack-testsvc")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "testsvc"), "./testdata/testsvc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compiling testsvc: %w\n%s", err, out)
	}
	files := map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY testsvc /testsvc\nENTRYPOINT [\"/testsvc\"]\nCMD [\"serve\"]\n",
		".dockerignore": "*.log\n",
		"devstack.yaml": fmt.Sprintf("services:\n  testsvc:\n    image: %s\n    build: .\n", testImage),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	p, err := project.Load(ctx, project.LoadOptions{WorkDir: dir, Name: "devstack-testimage-" + testRunTag})
	if err != nil {
		return err
	}
	l := &logs{}
	if err := engine.Build(ctx, specFor(p, "testsvc", l)); err != nil {
		return fmt.Errorf("building the test image: %w\n%s", err, l)
	}
	return nil
}

// needEngine skips the test when no engine answers, unless the
// environment demands one (CI sets DEVSTACK_REQUIRE_DOCKER=1).
func needEngine(t *testing.T) *Backend {
	t.Helper()
	if engineErr != nil {
		if os.Getenv("DEVSTACK_REQUIRE_DOCKER") == "1" {
			t.Fatalf("DEVSTACK_REQUIRE_DOCKER=1 but the docker engine is not available: %v", engineErr)
		}
		t.Skipf("skipping: docker engine not available (set DEVSTACK_REQUIRE_DOCKER=1 to fail instead): %v", engineErr)
	}
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
	return engine
}

// stack is a test project: a devstack.yaml in a temp dir with a unique
// project name, and everything it creates removed at cleanup.
type stack struct {
	t   *testing.T
	b   *Backend
	p   *project.Project
	dir string
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// newStack writes yaml ({{IMAGE}} is the test image) and loads it under
// a project name unique to the test and the run.
func newStack(t *testing.T, yaml string) *stack {
	t.Helper()
	b := needEngine(t)
	name := "dst-" + strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = name[:min(len(name), 40)] + "-" + randHex(3)
	s := &stack{t: t, b: b, dir: t.TempDir()}
	s.p = s.load(name, yaml)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.Down(ctx, name, true); err != nil {
			t.Errorf("cleanup: down %s: %v", name, err)
		}
	})
	return s
}

// load (re)writes the stack's file and loads it under project name.
func (s *stack) load(name, yaml string) *project.Project {
	s.t.Helper()
	yaml = strings.NewReplacer("{{IMAGE}}", testImage, "{{TAG}}", testRunTag).Replace(yaml)
	if err := os.WriteFile(filepath.Join(s.dir, "devstack.yaml"), []byte(yaml), 0o644); err != nil {
		s.t.Fatal(err)
	}
	p, err := project.Load(s.t.Context(), project.LoadOptions{WorkDir: s.dir, Name: name})
	if err != nil {
		s.t.Fatalf("loading test stack: %v", err)
	}
	return p
}

// start starts one service straight on the backend.
func (s *stack) start(ctx context.Context, svc string, l *logs) *Instance {
	s.t.Helper()
	inst, err := s.b.Start(ctx, specFor(s.p, svc, l))
	if err != nil {
		s.t.Fatalf("starting %s: %v", svc, err)
	}
	di := inst.(*Instance)
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = di.Stop(ctx, 9, 0)
	})
	return di
}

// specFor builds the runner's spec for a service, as runner.spec does.
func specFor(p *project.Project, name string, l *logs) runner.Spec {
	svc := p.Service(name)
	marker := p.Name + "/" + randHex(2) + "/" + name
	var env []string
	for k, v := range svc.Compose.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	env = append(env, "DEVSTACK_INSTANCE="+marker, "DEVSTACK_SERVICE="+name, "DEVSTACK_PROJECT="+p.Name)
	return runner.Spec{
		Project: p, Service: svc, Env: env, Marker: marker,
		Stdout: l.writer("out"), Stderr: l.writer("err"), Status: l.writer("sys"),
	}
}

// logs collects output and lets a test wait for a line without polling.
type logs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (l *logs) writer(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, line := range strings.SplitAfter(string(p), "\n") {
			if line != "" {
				l.buf.WriteString(stream + " " + line)
			}
		}
		if l.changed != nil {
			close(l.changed)
			l.changed = nil
		}
		return len(p), nil
	})
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until the output contains s.
func (l *logs) waitFor(ctx context.Context, s string) error {
	for {
		l.mu.Lock()
		if strings.Contains(l.buf.String(), s) {
			l.mu.Unlock()
			return nil
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q in output: %w\noutput so far:\n%s", s, ctx.Err(), l.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// sink is a runner.LogSink over one logs.
type sink struct{ l *logs }

func (s sink) Writer(service, stream string) io.Writer {
	w := s.l.writer(stream)
	return writerFunc(func(p []byte) (int, error) {
		var b []byte
		for _, line := range strings.SplitAfter(string(p), "\n") {
			if line != "" {
				b = append(b, service+": "+line...)
			}
		}
		_, err := w.Write(b)
		return len(p), err
	})
}

// waitHealth reads verdicts until want, failing on unhealthy or close.
func waitHealth(ctx context.Context, inst *Instance, want runner.Health) error {
	for {
		select {
		case h, ok := <-inst.Health():
			if !ok {
				return errors.New("health channel closed: the instance exited")
			}
			if h == want {
				return nil
			}
			if h == runner.HealthUnhealthy {
				return errors.New("instance became unhealthy")
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", want, ctx.Err())
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pruneNewCache removes the build cache records that are not in before.
func pruneNewCache(ctx context.Context, b *Backend, before []build.CacheRecord) error {
	had := map[string]bool{}
	for _, r := range before {
		had[r.ID] = true
	}
	now, err := b.buildCache(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, r := range now {
		if !had[r.ID] {
			ids = append(ids, r.ID)
		}
	}
	return b.pruneCache(ctx, ids)
}

// ambassadorImages lists the IDs of the engine's ambassador images.
func ambassadorImages(ctx context.Context, b *Backend) ([]string, error) {
	res, err := b.cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", ambassadorRepo)})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, img := range res.Items {
		ids = append(ids, img.ID)
	}
	return ids, nil
}
