package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// A stop that waits on a service says what it waits on, and promises no
// key press: `devstack stop` and `down` run in the supervisor, where no
// Ctrl-C reaches (the foreground `up` says so itself when it stops).
func TestStopProgressPromisesNoCtrlC(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  stubborn:
    stop_grace_period: 3s
    x-devstack:
      run: ["sh", "-c", "trap '' TERM; touch ready; while :; do sleep 0.1; done"]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "stopmsg"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	r, err := runner.New(p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return &process.Backend{}, nil },
		Logs:       &memSink{},
		RunID:      testRunID(),
		Events: func(ev runner.Event) {
			mu.Lock()
			events = append(events, ev.Msg)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Down(ctx, runner.StopOptions{})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break // the trap is set
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never set its trap")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Stop(ctx, []string{"stubborn"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	waited := false
	for _, e := range events {
		if strings.HasPrefix(e, "waiting on stubborn") {
			waited = true
		}
		if strings.Contains(e, "Ctrl-C") {
			t.Errorf("stop said %q", e)
		}
	}
	if !waited {
		t.Errorf("a stop that waited 3s on stubborn never said so: %q", events)
	}
}
