package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner/docker/holder"
)

// holderRun is `devstack holder` running, its output captured.
type holderRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

func startHolderCmd(t *testing.T, args ...string) *holderRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	h := &holderRun{done: make(chan error, 1)}
	h.cmd = exec.CommandContext(ctx, devstackBin, append([]string{"holder"}, args...)...)
	// Under -race, an exit 0 sleeps a second first (atexit_sleep_ms).
	h.cmd.Env = append(h.cmd.Environ(), "GORACE=atexit_sleep_ms=0")
	h.cmd.Stdout, h.cmd.Stderr = &h.stdout, &h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		<-h.done
	})
	return h
}

// dial connects once the holder listens: the CLI has no readiness
// signal of its own, devstack dials until it answers, and so does this.
func (h *holderRun) dial(t *testing.T, sock string) *holder.Client {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := holder.Dial(t.Context(), sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder not answering: %v\nstderr: %s", err, h.stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polls a condition, under the deadline
	}
}

func (h *holderRun) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(5 * time.Second):
		t.Fatal("holder still running after 5s")
		return 0
	}
}

func TestHolderCommandRunsServiceAndPassesItsCode(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	// Flags after the command are the command's.
	h := startHolderCmd(t, "--socket", sock, "--", "sh", "-c", `echo "$0 $@"; exit 5`, "x", "-a", "--socket")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := h.dial(t, sock).Start(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if code := h.exit(t); code != 5 {
		t.Errorf("exit %d, want the service's 5", code)
	}
	if got := h.stdout.String(); got != "x -a --socket\n" {
		t.Errorf("stdout %q: the service's only", got)
	}
	if h.stderr.Len() != 0 {
		t.Errorf("stderr %q, want nothing", h.stderr.String())
	}
}

func TestHolderCommandStopsBeforeStart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	h := startHolderCmd(t, "--socket", sock, "--", "sh", "-c", "echo started")
	h.dial(t, sock)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.exit(t); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if h.stdout.Len()+h.stderr.Len() != 0 {
		t.Errorf("printed %q %q, want nothing", h.stdout.String(), h.stderr.String())
	}
}

func TestHolderCommandCannotListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing", "h.sock")
	h := startHolderCmd(t, "--socket", sock, "--", "true")
	if code := h.exit(t); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got := h.stderr.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "devstack: holder:") || !strings.Contains(got, sock) {
		t.Errorf("stderr %q, want one line naming %s", got, sock)
	}
}
