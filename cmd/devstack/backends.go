package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/docker"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/supervisor"
)

// backends picks each service's backend, once, before anything starts:
//
//  1. x-devstack.backend on the service,
//  2. else --backend (up's flag),
//  3. else x-devstack.backend at project level,
//  4. else automatic: docker when the engine answers and the service can
//     run there (image: or build:), else process (x-devstack.run).
//
// The engine is only contacted when some service may need it. If services
// need it and it does not answer, the error names the engine address
// tried, those services, and which of them could run as processes.
type backends struct {
	proc   *process.Backend
	docker *docker.Backend // nil when no service uses it
	choice map[string]runner.Backend
}

func newBackends(ctx context.Context, p *project.Project, flag string) (*backends, error) {
	if flag != "" && flag != "process" && flag != "docker" {
		return nil, fmt.Errorf("--backend %q: use process or docker", flag)
	}
	b := &backends{proc: &process.Backend{}, choice: map[string]runner.Backend{}}
	want := map[string]string{}
	mayDocker := false
	for _, s := range p.Services {
		w := s.X.Backend
		if w == "" {
			w = flag
		}
		if w == "" {
			w = p.X.Backend
		}
		// A default (--backend, the project's x-devstack.backend) applies
		// where it can: a service that only has x-devstack.run stays a
		// process under --backend docker, one that only has image: stays
		// a container under --backend process. Only a service's own
		// x-devstack.backend is taken strictly.
		if s.X.Backend == "" {
			switch {
			case w == "docker" && !docker.CanRun(s) && process.CanRun(s):
				w = "process"
			case w == "process" && !process.CanRun(s) && docker.CanRun(s):
				w = "docker"
			}
		}
		if s.X.External && !docker.CanRun(s) && !process.CanRun(s) {
			w = "process" // only ever run by the user: on the host
		}
		want[s.Name] = w
		if w == "docker" || w == "" && docker.CanRun(s) {
			mayDocker = true
		}
	}
	var engineErr *docker.EngineError
	if mayDocker {
		d, err := docker.New(ctx)
		if err != nil && !errors.As(err, &engineErr) {
			return nil, err
		}
		b.docker = d
	}
	var needDocker, couldProcess []string
	var errs []error
	for _, s := range p.Services {
		w := want[s.Name]
		if w == "" { // automatic
			switch {
			case b.docker != nil && docker.CanRun(s):
				w = "docker"
			case process.CanRun(s):
				w = "process"
			default:
				w = "docker"
			}
		}
		switch w {
		case "process":
			if !process.CanRun(s) && !s.X.External {
				errs = append(errs, fmt.Errorf("service %q is set to run as a process but has no x-devstack.run; add x-devstack.run with its command line", s.Name))
				continue
			}
			b.choice[s.Name] = b.proc
		case "docker":
			if !docker.CanRun(s) {
				errs = append(errs, fmt.Errorf("service %q is set to run in Docker but has no image: or build:; add one, or x-devstack.run to run it as a process", s.Name))
				continue
			}
			if b.docker == nil {
				needDocker = append(needDocker, s.Name)
				if process.CanRun(s) {
					couldProcess = append(couldProcess, s.Name)
				}
				continue
			}
			b.choice[s.Name] = b.docker
		}
	}
	if len(needDocker) > 0 {
		msg := fmt.Sprintf("services %s need Docker, but the %v", strings.Join(needDocker, ", "), engineErr)
		if len(couldProcess) > 0 {
			msg += fmt.Sprintf("; %s could run as processes instead: `devstack up --backend process`", strings.Join(couldProcess, ", "))
		}
		errs = append(errs, errors.New(msg))
	}
	if err := errors.Join(errs...); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// For is runner.Options.BackendFor.
func (b *backends) For(s *project.Service) (runner.Backend, error) {
	if be, ok := b.choice[s.Name]; ok {
		return be, nil
	}
	return nil, fmt.Errorf("service %q has no backend", s.Name)
}

// supervisorOptions fills the backend parts of the supervisor's options:
// when containers run, the proxy also listens on the host's bridge
// address, and names container callers by their address.
func (b *backends) supervisorOptions(ctx context.Context, p *project.Project, o *supervisor.Options) error {
	o.BackendFor = b.For
	o.Cleaners = b.Cleaners()
	if exe, err := os.Executable(); err == nil {
		o.Builtin = supervisor.BuiltinCommand(exe) // built-in plugins: this binary, re-executed
	}
	if b.docker == nil || !b.usesDocker() {
		return nil
	}
	gw, err := b.docker.HostGateway(ctx)
	if err != nil {
		return err
	}
	o.Gateway = gw.String()
	o.ContainerCaller = func(ip netip.Addr) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return b.docker.ServiceAt(ctx, p.Name, ip)
	}
	o.Relayer = func(ip netip.Addr) bool {
		if ip.IsLoopback() {
			return false // ambassadors are containers
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return b.docker.IsAmbassador(ctx, p.Name, ip)
	}
	o.TakeOver = func(ctx context.Context, services []string, say func(service, msg string)) error {
		return b.docker.TakeOver(ctx, p.Name, services, say)
	}
	held, err := b.docker.PublishedPorts(ctx, p.Name)
	if err != nil {
		return err
	}
	o.HeldPorts = func(service string, target uint16) (uint16, bool) {
		port, ok := held[service][target]
		return port, ok
	}
	return nil
}

// backendOf names the backend chosen for s.
func (b *backends) backendOf(s *project.Service) string {
	if be, ok := b.choice[s.Name]; ok {
		return be.Name()
	}
	return ""
}

func (b *backends) usesDocker() bool {
	for _, be := range b.choice {
		if be == runner.Backend(b.docker) {
			return true
		}
	}
	return false
}

// Cleaners are the backends that own project-wide objects.
func (b *backends) Cleaners() []runner.Cleaner {
	if b.docker != nil {
		return []runner.Cleaner{b.docker}
	}
	return nil
}

func (b *backends) Close() {
	if b.docker != nil {
		b.docker.Close()
	}
}
