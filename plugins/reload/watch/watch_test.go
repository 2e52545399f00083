package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// start watches rules under dir and returns the batches as they come.
func start(t *testing.T, dir string, rules ...Rule) <-chan Batch {
	t.Helper()
	ch := make(chan Batch, 100)
	w, err := New(Options{Rules: rules, Root: dir, OnBatch: func(b Batch) { ch <- b }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan Batch) Batch {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
		return Batch{}
	}
}

// none asserts that no batch comes within a settle time well above the
// debounce (the only way to show an absence).
func none(t *testing.T, ch <-chan Batch) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("unexpected batch: %s %s (%d changes: %v)", b.Service, b.Action, len(b.Changes), b.Changes[0].File)
	case <-time.After(300 * time.Millisecond):
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOneSaveGivesOneBatchWithItsFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "src", "main.go"), "v1")
	ch := start(t, dir, Rule{Service: "web", Path: filepath.Join(dir, "src"), Action: Rebuild})
	write(t, filepath.Join(dir, "src", "main.go"), "v2")
	b := next(t, ch)
	if b.Service != "web" || b.Action != Rebuild || len(b.Changes) != 1 || b.Changes[0].Rel != "main.go" || b.Seen.IsZero() {
		t.Fatalf("batch: %+v", b)
	}
	none(t, ch)
}

func TestABurstOf500FilesGivesOneBatch(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755)
	ch := start(t, dir,
		Rule{Service: "web", Path: filepath.Join(dir, "src"), Action: Rebuild},
		Rule{Service: "api", Path: filepath.Join(dir, "src", "pkg"), Action: Restart})
	for i := range 500 {
		sub := "src"
		if i%2 == 0 {
			sub = "src/pkg"
		}
		write(t, filepath.Join(dir, sub, fmt.Sprintf("f%03d.go", i)), "x")
	}
	got := map[string]Batch{}
	for range 2 {
		b := next(t, ch)
		if _, dup := got[b.Service]; dup {
			t.Fatalf("a second batch for %s", b.Service)
		}
		got[b.Service] = b
	}
	if n := len(got["web"].Changes); n != 500 {
		t.Fatalf("web's batch has %d changes, want all 500", n)
	}
	if n := len(got["api"].Changes); n != 250 || got["api"].Action != Restart {
		t.Fatalf("api's batch: %d changes, action %s; want 250, restart", n, got["api"].Action)
	}
	none(t, ch)
}

func TestNewSubdirectoriesAreWatched(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src"), 0o755)
	ch := start(t, dir, Rule{Service: "web", Path: filepath.Join(dir, "src"), Action: Restart})
	// Made at once with a file in it (before the watch can be added)...
	write(t, filepath.Join(dir, "src", "a", "b", "first.go"), "x")
	b := next(t, ch)
	if !slices.ContainsFunc(b.Changes, func(c Change) bool { return c.Rel == filepath.Join("a", "b", "first.go") }) {
		t.Fatalf("the file in the new directory is not in the batch: %+v", b.Changes)
	}
	// ...and written again later, now that it is watched.
	write(t, filepath.Join(dir, "src", "a", "b", "later.go"), "y")
	b = next(t, ch)
	if len(b.Changes) != 1 || b.Changes[0].Rel != filepath.Join("a", "b", "later.go") {
		t.Fatalf("later write: %+v", b.Changes)
	}
}

func TestIgnoreRules(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, ".gitignore"), "*.log\n/src/gen/\nnode_modules/\n")
	write(t, filepath.Join(dir, "src", ".dockerignore"), "tmp\n")
	for _, d := range []string{".git", "gen", "node_modules/x", "tmp", "docs"} {
		os.MkdirAll(filepath.Join(dir, "src", d), 0o755)
	}
	ch := start(t, dir, Rule{Service: "web", Path: filepath.Join(dir, "src"), Action: Restart, DockerIgnore: true,
		Ignore: []string{"docs/"}, Include: []string{"*.go", "**/*.go"}})
	for _, f := range []string{".git/index", "debug.log", "gen/x.go", "node_modules/x/y.go", "tmp/t.go", "docs/d.go", "README.md"} {
		write(t, filepath.Join(dir, "src", f), "ignored")
	}
	none(t, ch)
	write(t, filepath.Join(dir, "src", "main.go"), "counted")
	b := next(t, ch)
	if len(b.Changes) != 1 || b.Changes[0].Rel != "main.go" {
		t.Fatalf("batch: %+v; want only main.go", b.Changes)
	}
}

// An editor that saves by writing a temporary file and renaming it over
// the original (vim's backupcopy=no, many IDEs).
// A process's rules leave .dockerignore out: an image's ignore file
// often ignores everything but its binary (the shop's does).
func TestDockerignoreOnlyForContainers(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, ".dockerignore"), "*\n!bin/shop\n")
	os.MkdirAll(filepath.Join(dir, "src"), 0o755)
	ch := start(t, dir,
		Rule{Service: "proc", Path: filepath.Join(dir, "src"), Action: Rebuild},
		Rule{Service: "box", Path: filepath.Join(dir, "src"), Action: Rebuild, DockerIgnore: true})
	write(t, filepath.Join(dir, "src", "main.go"), "x")
	if b := next(t, ch); b.Service != "proc" {
		t.Fatalf("batch for %s; want proc's only", b.Service)
	}
	none(t, ch)
}

func TestSaveByRename(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "main.go"), "v1")
	ch := start(t, dir, Rule{Service: "web", Path: filepath.Join(dir, "main.go"), Action: Rebuild})
	for i := 2; i <= 3; i++ {
		tmp := filepath.Join(dir, ".main.go.swp")
		write(t, tmp, fmt.Sprintf("v%d", i))
		if err := os.Rename(tmp, filepath.Join(dir, "main.go")); err != nil {
			t.Fatal(err)
		}
		b := next(t, ch)
		if len(b.Changes) != 1 || b.Changes[0].File != filepath.Join(dir, "main.go") || b.Changes[0].Removed {
			t.Fatalf("save %d by rename: %+v", i, b.Changes)
		}
		if c := b.Cause(dir); c != "main.go changed" {
			t.Fatalf("cause %q", c)
		}
	}
}

func TestBadRulesAreRefusedNamingTheService(t *testing.T) {
	dir := t.TempDir()
	for _, r := range []Rule{
		{Service: "web", Path: filepath.Join(dir, "missing"), Action: Sync},
		{Service: "web", Path: dir, Action: "reboot"},
	} {
		_, err := New(Options{Rules: []Rule{r}})
		if err == nil || !strings.Contains(err.Error(), `service "web"`) {
			t.Errorf("rule %+v: %v", r, err)
		}
	}
}
