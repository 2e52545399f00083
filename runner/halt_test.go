package runner_test

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
)

// halting is a backend whose instances stop in two parts (runner.Halter)
// and which has project-wide helpers (runner.Quitter). The removals wait
// for Quit, which comes only once every service has ended: a Down that
// waited for a service's removal before stopping its dependencies would
// never get there.
type halting struct {
	*process.Backend
	mu   sync.Mutex
	log  []string
	quit chan struct{}
	once sync.Once
}

func (h *halting) record(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *halting) Start(ctx context.Context, spec runner.Spec) (runner.Instance, error) {
	inst, err := h.Backend.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &haltingInst{Instance: inst, h: h, name: spec.Service.Name}, nil
}

func (h *halting) Quit(project string) {
	h.once.Do(func() {
		h.record("quit " + project)
		close(h.quit)
	})
}

type haltingInst struct {
	runner.Instance
	h    *halting
	name string
}

// Exec runs the healthcheck, as the process instance does.
func (i *haltingInst) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	return i.Instance.(runner.Execer).Exec(ctx, argv)
}

func (i *haltingInst) Halt(ctx context.Context, sig syscall.Signal, grace time.Duration) (func(context.Context) error, error) {
	err := i.Instance.Stop(ctx, sig, grace)
	i.h.record("halted " + i.name)
	return func(ctx context.Context) error {
		select {
		case <-i.h.quit:
		case <-ctx.Done():
			return ctx.Err()
		}
		i.h.record("removed " + i.name)
		return nil
	}, err
}

// Down must stop a service's dependencies as soon as the service has
// ended (not once what it left is removed), tell the backend when every
// service has ended, and return only once every removal is done.
func TestDownHaltsThenRemoves(t *testing.T) {
	h := &halting{Backend: &process.Backend{}, quit: make(chan struct{})}
	s := newStackWith(t, "services:"+
		svc("db", "block", readyHC)+
		svc("api", "block", readyHC+"    depends_on: [db]\n"), h)
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.r.Down(ctx, runner.StopOptions{}); err != nil {
		t.Fatalf("down: %v (log %v)", err, h.log)
	}
	h.mu.Lock()
	log := slices.Clone(h.log)
	h.mu.Unlock()
	want := []string{"halted api", "halted db", "quit rt"}
	if len(log) != 5 || !slices.Equal(log[:3], want) {
		t.Fatalf("down did %v; want %v, then the removals", log, want)
	}
	for _, svc := range []string{"api", "db"} {
		if !slices.Contains(log, "removed "+svc) {
			t.Errorf("down returned before %s was removed: %v", svc, log)
		}
	}
}
