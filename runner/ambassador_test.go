package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// specBackend records the specs it is asked to start; its instances run
// until stopped.
type specBackend struct {
	name  string
	mu    sync.Mutex
	specs map[string]runner.Spec
}

func (b *specBackend) Name() string { return b.name }

func (b *specBackend) Start(_ context.Context, spec runner.Spec) (runner.Instance, error) {
	b.mu.Lock()
	b.specs[spec.Service.Name] = spec
	b.mu.Unlock()
	return &idleInstance{done: make(chan struct{})}, nil
}

// netSpecBackend is a specBackend whose instances have a network of their
// own (runner.Networked), as containers do.
type netSpecBackend struct{ *specBackend }

func (b netSpecBackend) Wire(spec runner.Spec, _ runner.Stack) runner.Spec { return spec }

type idleInstance struct {
	once sync.Once
	done chan struct{}
}

func (i *idleInstance) ID() string { return "idle" }

func (i *idleInstance) Wait() runner.Exit {
	<-i.done
	return runner.Exit{At: time.Now()}
}

func (i *idleInstance) Stop(context.Context, syscall.Signal, time.Duration) error {
	i.once.Do(func() { close(i.done) })
	return nil
}

// Options.Ambassador must reach the Spec of services in a network of their
// own (containers) only: processes are called on the host, where the proxy
// owns the port itself.
func TestSpecAmbassador(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  web:
    image: web
    ports: ["18080:8080"]
  worker:
    image: worker
    ports: ["18081:8081"]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "amb"})
	if err != nil {
		t.Fatal(err)
	}
	docker := &specBackend{name: "docker", specs: map[string]runner.Spec{}}
	proc := &specBackend{name: "process", specs: map[string]runner.Spec{}}
	asked := map[string]bool{}
	var mu sync.Mutex
	r, err := runner.New(p, runner.Options{
		BackendFor: func(s *project.Service) (runner.Backend, error) {
			if s.Name == "web" {
				return netSpecBackend{docker}, nil
			}
			return proc, nil
		},
		Logs:  &memSink{},
		RunID: testRunID(),
		Ambassador: func(service string) *runner.Ambassador {
			mu.Lock()
			asked[service] = true
			mu.Unlock()
			return &runner.Ambassador{Relay: map[uint16]string{8080: "172.17.0.1:18080"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer r.Down(context.Background(), runner.StopOptions{})
	if a := docker.specs["web"].Ambassador; a == nil || a.Relay[8080] != "172.17.0.1:18080" {
		t.Errorf("web (docker) spec.Ambassador = %+v; want the relay Options.Ambassador gave", a)
	}
	if a := proc.specs["worker"].Ambassador; a != nil {
		t.Errorf("worker (process) spec.Ambassador = %+v; want nil", a)
	}
	if asked["worker"] {
		t.Error("Options.Ambassador was asked about a process service")
	}
}
