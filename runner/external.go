package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/devstack/devstack/runner/proc"
)

// Services the user runs: a service marked x-devstack.external, or named
// in Options.External (`up --except`), is not started. It stays
// StateExternal and counts as ready for the services that depend on it
// (the proxy holds their calls until it answers). The proxy keeps its
// declared ports and forwards them to its private ports, where the user
// runs it, as HostRun describes. Start takes it back: devstack runs it
// from then on.

// HostRun is how to run a service on the host, outside devstack, so that
// it takes the place of the one devstack would run: its command line,
// working directory and environment (without the host's own).
type HostRun struct {
	Service string `json:"service"`
	// Dir is the directory to run it in.
	Dir string `json:"dir"`
	// Argv is its x-devstack.run command line (Shell: through /bin/sh
	// -c); empty when it has none (a container service), and Command is
	// then its container's command, for reference.
	Argv    []string `json:"argv,omitempty"`
	Shell   bool     `json:"shell,omitempty"`
	Command []string `json:"command,omitempty"`
	// Env is its environment as a host process: the file's, with the
	// addresses of the other services as the host reaches them, the port
	// to listen on (port_env) and the discovery variables.
	Env []string `json:"env"`
	// Listen are the addresses it must listen on, one per declared port,
	// and Declared the ports the proxy owns for them, in the same order.
	Listen   []string `json:"listen,omitempty"`
	Declared []uint16 `json:"declared,omitempty"`
}

// HostRun says how to run service name on the host in devstack's place.
func (r *Runner) HostRun(name string) (HostRun, error) {
	sel, err := r.lookup([]string{name})
	if err != nil {
		return HostRun{}, err
	}
	s := sel[0]
	hr := HostRun{
		Service: name,
		Dir:     r.p.Workdir(s.spec),
		Env:     r.env(s, false, reachFunc(HostReacher), nil),
		Command: s.spec.Compose.Command,
	}
	slices.Sort(hr.Env) // the file's part comes from a map: the same order on every call
	if run := s.spec.X.Run; !run.Empty() {
		hr.Argv, hr.Shell, hr.Command = slices.Clone(run.Args), run.Shell, nil
		if a := hr.Argv[0]; !hr.Shell && filepath.Base(a) != a && !filepath.IsAbs(a) {
			hr.Argv[0] = filepath.Join(hr.Dir, a) // relative to the workdir, as the process backend runs it
		}
	}
	for _, p := range s.spec.Ports {
		if p.Protocol == "udp" {
			continue
		}
		hr.Listen = append(hr.Listen, "127.0.0.1:"+strconv.Itoa(int(r.listenPort(name, p))))
		hr.Declared = append(hr.Declared, p.Declared())
	}
	return hr, nil
}

// reachFunc makes a function a Reacher.
type reachFunc func(PeerPort) (string, []string, bool)

func (f reachFunc) Reach(p PeerPort) (string, []string, bool) { return f(p) }

// External reports whether the user runs service name (StateExternal).
func (r *Runner) External(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.svcs[name]
	return ok && s.external
}

// frontExternal has the other backends make the external services in sel
// answer to their names (see front), all at once, and waits for them.
func (r *Runner) frontExternal(ctx context.Context, sel []*service) {
	var wg sync.WaitGroup
	for _, s := range sel {
		if !r.External(s.spec.Name) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.front(ctx, s, r.spec(s), true)
		}()
	}
	wg.Wait()
}

// takeBack makes the named external services devstack's to run again,
// after checking that nothing listens on their private ports: the user's
// own run must stop first, or devstack's could not listen there.
func (r *Runner) takeBack(names []string) error {
	sel, err := r.lookup(names)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range sel {
		st, _ := r.snapshot(s)
		if st.State == StateRunning || st.State == StateRestarting || st.State == StateStopping {
			continue
		}
		for _, p := range s.spec.Ports {
			lp := r.listenPort(s.spec.Name, p)
			if p.Protocol == "udp" || lp == p.Declared() {
				continue
			}
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(int(lp)))
			if err == nil {
				l.Close()
				continue
			}
			holder := ""
			if pid, cmd, ok := proc.PortHolder(int(lp)); ok {
				holder = fmt.Sprintf(" by pid %d (%s)", pid, cmd)
			}
			errs = append(errs, fmt.Errorf("service %q runs outside devstack: its port 127.0.0.1:%d is in use%s; stop that run first, then `devstack start %s` runs it in devstack",
				s.spec.Name, lp, holder, s.spec.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, s := range sel {
		r.mu.Lock()
		was := s.external
		s.external = false
		r.mu.Unlock()
		if was {
			r.update(s, func(st *ServiceStatus) { st.State = StateCreated })
			r.event(s.spec.Name, "taken back: devstack runs it again")
		}
	}
	return nil
}
