package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devstack/devstack/runner/project"
)

// A state dir is private whoever made it: one of ours that others can
// read is repaired, one that others can write or that another user owns is
// refused with the fix, and a missing one is made 0700.
func TestEnsurePrivate(t *testing.T) {
	root := t.TempDir()
	mode := func(dir string) os.FileMode {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}

	fresh := filepath.Join(root, "a", "fresh")
	if err := EnsurePrivate(fresh); err != nil {
		t.Fatal(err)
	}
	if m := mode(fresh); m != 0o700 {
		t.Errorf("a new state dir has mode %v, want 0700", m)
	}

	readable := filepath.Join(root, "readable")
	os.Mkdir(readable, 0o700)
	os.Chmod(readable, 0o755)
	if err := EnsurePrivate(readable); err != nil {
		t.Fatalf("a state dir of ours that others can read: %v; want it repaired", err)
	}
	if m := mode(readable); m != 0o700 {
		t.Errorf("a state dir others could read has mode %v after EnsurePrivate, want 0700", m)
	}

	writable := filepath.Join(root, "writable")
	os.Mkdir(writable, 0o700)
	os.Chmod(writable, 0o777)
	err := EnsurePrivate(writable)
	if !errors.Is(err, ErrStateDirNotPrivate) || !strings.Contains(err.Error(), "chmod 700 "+writable) {
		t.Errorf("a state dir every user can write: %v; want it refused with the fix", err)
	}
	if m := mode(writable); m != 0o777 {
		t.Errorf("a refused state dir was changed to %v", m)
	}

	shared := filepath.Join(root, "shared")
	os.Mkdir(shared, 0o700)
	os.Chmod(shared, 0o777)
	err = EnsurePrivate(filepath.Join(shared, "proj"))
	if !errors.Is(err, ErrStateDirNotPrivate) || !strings.Contains(err.Error(), "DEVSTACK_STATE_DIR") {
		t.Errorf("a state dir in a directory every user can write: %v; want it refused with the fix", err)
	}
	os.Chmod(shared, 0o777|os.ModeSticky)
	if err := EnsurePrivate(filepath.Join(shared, "proj")); err != nil {
		t.Errorf("a state dir in a sticky shared directory (as in /tmp): %v", err)
	}

	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o600)
	if err := EnsurePrivate(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file where the state dir goes: %v", err)
	}

	if os.Geteuid() != 0 {
		return // only root can give a directory to another user
	}
	foreign := filepath.Join(root, "foreign")
	os.Mkdir(foreign, 0o700)
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err = EnsurePrivate(foreign)
	if !errors.Is(err, ErrStateDirNotPrivate) || !strings.Contains(err.Error(), "belongs to user 65534") {
		t.Errorf("a state dir another user owns: %v; want it refused", err)
	}
}

// Start refuses a state dir others can write before it reads or writes
// anything in it.
func TestStartRefusesAStateDirOthersCanWrite(t *testing.T) {
	root := t.TempDir()
	t.Setenv("DEVSTACK_STATE_DIR", root)
	dir := filepath.Join(root, "p")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o777)
	_, err := Start(t.Context(), Options{Project: &project.Project{Name: "p"}})
	if !errors.Is(err, ErrStateDirNotPrivate) {
		t.Fatalf("Start with a world-writable state dir: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Start wrote into a state dir it refused: %v", entries)
	}
}
