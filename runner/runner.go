package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devstack/devstack/runner/project"
)

// LogSink receives every service's output, one writer per stream: "out",
// "err", and "sys" for devstack's own lines about the service.
type LogSink interface {
	Writer(service, stream string) io.Writer
}

// Event is a progress message for the terminal ("waiting on orders").
type Event struct {
	Service string
	Msg     string
}

// Options configure a Runner.
type Options struct {
	// Backends by name. Services choose one with x-devstack.backend, else
	// DefaultBackend, else the first that can run them (see BackendFor).
	Backends map[string]Backend
	// BackendFor picks the backend of a service; it returns an error that
	// says why none fits.
	BackendFor func(*project.Service) (Backend, error)
	// Logs receives service output. Required.
	Logs LogSink
	// Events receives progress messages; may be nil.
	Events func(Event)
	// OnChange is called after any status change, outside the runner's
	// lock (the supervisor persists pids from it); may be nil.
	OnChange func()
	// RunID makes instance markers unique to this supervisor run.
	RunID string
	// MarkerScope starts every instance marker (DEVSTACK_INSTANCE); orphan
	// cleanup finds a scope's processes by it. Default: the project name.
	MarkerScope string
	// ListenPort maps a declared port to the port the instance must listen
	// on. The proxy owns the declared port and forwards to this one. Nil
	// means the declared port itself (published, else target).
	ListenPort func(service string, p project.Port) uint16
	// OnStatus receives every status change of a service, typed, with its
	// intent (a service stopping to be replaced is "coming back"), outside
	// the runner's lock and in order per service; may be nil. The plugin
	// host hands these to plugins.
	OnStatus func(Change)
	// Rerouter lets Replace start a new instance beside the live one on
	// fresh private ports and switch the proxy to it. Nil: Replace
	// restarts in place.
	Rerouter Rerouter
	// Ambassador says where a service's ambassador relays its ports (see
	// Spec.Ambassador): a container service's, or, for a service of
	// another backend, the one a Fronter backend makes so that its
	// instances call the service by name. Nil, or a nil result, means
	// none.
	Ambassador func(service string) *Ambassador
	// External names services the user runs (up --except), besides those
	// marked x-devstack.external: they are not started (see HostRun).
	External []string
	// Hold is called by Up with every service it is about to start or
	// wait for (the named ones and their dependencies), before starting
	// any: the supervisor binds their proxied ports then, and only then,
	// so that ports of services nobody started stay free for the user.
	// An error fails Up. Nil: nothing to hold.
	Hold   func(services []string) error
	Logger *slog.Logger
}

// Runner supervises one project's services.
type Runner struct {
	p    *project.Project
	opts Options

	mu      sync.Mutex
	svcs    map[string]*service
	changed chan struct{} // closed and replaced on every change

	// probing counts the healthcheck probes running now (see Probing).
	probing atomic.Int32

	// bg runs what the runner does on its own between calls (standbys);
	// Down ends bgCtx and waits for it, so nothing starts behind a down.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// Probing reports whether one of the healthcheck probes the runner runs
// itself (process services) is running now. The proxy looks connections
// up as they arrive while one is: a probe exits as soon as it has its
// answer, too soon to be found once the hop is over.
func (r *Runner) Probing() bool { return r.probing.Load() > 0 }

// New returns a Runner for p. It checks that every service has a backend
// and a valid restart policy and stop signal, so errors come before
// anything starts.
func New(p *project.Project, opts Options) (*Runner, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{p: p, opts: opts, svcs: map[string]*service{}, changed: make(chan struct{})}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	var errs []error
	for _, ps := range p.Services {
		s, err := newService(ps, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.svcs[ps.Name] = s
	}
	for _, ps := range p.Services {
		for _, d := range ps.DependsOn {
			dep := p.Service(d.Service)
			if d.Condition == project.ConditionHealthy && dep != nil && dep.Healthcheck() == nil {
				errs = append(errs, fmt.Errorf("service %q waits for %q to be healthy, but %q has no healthcheck; add a healthcheck to %q or use condition: service_started",
					ps.Name, d.Service, d.Service, d.Service))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func newService(ps *project.Service, opts Options) (*service, error) {
	b, err := opts.BackendFor(ps)
	if err != nil {
		return nil, err
	}
	pol, err := ParseRestart(ps.Compose.Restart)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", ps.Name, err)
	}
	sig := syscall.SIGTERM
	if ps.Compose.StopSignal != "" {
		if sig, err = ParseSignal(ps.Compose.StopSignal); err != nil {
			return nil, fmt.Errorf("service %q: stop_signal: %w", ps.Name, err)
		}
	}
	grace := 10 * time.Second
	if ps.Compose.StopGracePeriod != nil {
		grace = time.Duration(*ps.Compose.StopGracePeriod)
	}
	s := &service{spec: ps, backend: b, policy: pol, hc: ps.Healthcheck(), stopSig: sig, grace: grace, stopGrace: grace,
		replacing: make(chan struct{}, 1),
		external:  ps.X.External || slices.Contains(opts.External, ps.Name)}
	s.st = ServiceStatus{Name: ps.Name, Backend: b.Name(), State: StateCreated, Ports: portStrings(ps)}
	if s.external {
		s.st.State = StateExternal
	}
	return s, nil
}

func portStrings(ps *project.Service) []string {
	var out []string
	for _, p := range ps.Ports {
		if p.Published != 0 {
			out = append(out, fmt.Sprintf("%s:%d->%d/%s", p.HostIP, p.Published, p.Target, p.Protocol))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.Target, p.Protocol))
		}
	}
	return out
}

// ParseSignal parses a signal name: SIGTERM, TERM, or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%q is not a signal name; use e.g. SIGTERM, SIGINT or SIGQUIT", s)
}

// Project is the project the runner supervises.
func (r *Runner) Project() *project.Project { return r.p }

// Status returns a snapshot of every service, sorted by name.
func (r *Runner) Status() []ServiceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ServiceStatus, 0, len(r.svcs))
	for _, s := range r.svcs {
		out = append(out, s.st)
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Instances returns the live instance of every running service.
func (r *Runner) Instances() map[string]Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Instance{}
	for n, s := range r.svcs {
		if s.inst != nil {
			out[n] = s.inst
		}
	}
	return out
}

// update changes a service's status under the lock and wakes waiters.
func (r *Runner) update(s *service, f func(st *ServiceStatus)) {
	r.mu.Lock()
	f(&s.st)
	close(r.changed)
	r.changed = make(chan struct{})
	ch := Change{Service: s.spec.Name, Status: s.st, Intent: s.intent, Cause: s.cause, At: time.Now()}
	r.mu.Unlock()
	if r.opts.OnChange != nil {
		r.opts.OnChange()
	}
	if r.opts.OnStatus != nil {
		r.opts.OnStatus(ch)
	}
}

// snapshot returns a service's status and a channel closed at its next change.
func (r *Runner) snapshot(s *service) (ServiceStatus, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.st, r.changed
}

func (r *Runner) event(svc, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(r.opts.Logs.Writer(svc, "sys"), msg)
	if r.opts.Events != nil {
		r.opts.Events(Event{Service: svc, Msg: msg})
	}
}

// lookup resolves names (all services when empty), with a clear error for
// an unknown one.
func (r *Runner) lookup(names []string) ([]*service, error) {
	if len(names) == 0 {
		out := make([]*service, 0, len(r.svcs))
		for _, ps := range r.p.Services {
			out = append(out, r.svcs[ps.Name])
		}
		return out, nil
	}
	var out []*service
	for _, n := range names {
		s, ok := r.svcs[n]
		if !ok {
			return nil, fmt.Errorf("no service %q in project %q; services are: %s", n, r.p.Name, strings.Join(r.names(), ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

func (r *Runner) names() []string {
	var out []string
	for _, ps := range r.p.Services {
		out = append(out, ps.Name)
	}
	return out
}
