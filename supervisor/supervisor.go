package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/devstack/devstack/control"
	"github.com/devstack/devstack/plugins/host"
	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/logstore"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
	"github.com/devstack/devstack/trace/store"
)

// ErrRunning means another supervisor already runs the project.
var ErrRunning = errors.New("a devstack supervisor is already running this project")

// Options configure a supervisor.
type Options struct {
	Project *project.Project
	// BackendFor picks each service's backend.
	BackendFor func(*project.Service) (runner.Backend, error)
	// Events receives progress messages (the terminal, in the foreground).
	Events func(runner.Event)
	// Cleaners remove project-wide backend objects (Docker networks) at
	// shutdown, after every service stopped.
	Cleaners []runner.Cleaner
	// Gateway is the host's address as containers see it
	// (host.docker.internal); the proxy listens there too. Empty when no
	// service runs in a container.
	Gateway string
	// ContainerCaller names the service of a container by its address.
	ContainerCaller func(netip.Addr) string
	// Relayer says whether a connection from this (non-loopback) address
	// comes from an ambassador, and so starts with a PROXY line naming the
	// real client. Nil: no address is trusted to.
	Relayer func(netip.Addr) bool
	// External names services the user runs (up --except), besides those
	// marked x-devstack.external: devstack does not start them, and the
	// proxy forwards their ports to where the user runs them.
	External []string
	// Services are the services the first up starts (all when none):
	// Start checks and binds the ports of these and their dependencies
	// only, and each later up, start or restart those of what it starts,
	// so a service nobody started leaves its ports to the user (who runs
	// it in an IDE, say).
	Services []string
	// TakeOver, when not nil, clears what another tool (docker compose)
	// runs for services before devstack starts them (the first up's at
	// Start, later ones' as an up, start or restart reaches them), before
	// their ports are checked; say tells the user (an event and the
	// service's log).
	TakeOver func(ctx context.Context, services []string, say func(service, msg string)) error
	// HeldPorts gives the host port a running container of the project
	// publishes for a service's target port (see plan); may be nil.
	HeldPorts func(service string, target uint16) (uint16, bool)
	// ShutdownStop says how Shutdown stops the services: a foreground
	// up's --timeout gives each the same grace. The zero value: each its
	// stop_grace_period. A down through the API brings its own.
	ShutdownStop runner.StopOptions
	// LockUntilExit keeps the project's lock until the process exits
	// rather than releasing it when Run returns: a process that exits
	// right after Run (the CLI) lets `down`, which waits on the lock,
	// return only once the supervisor is gone, not a moment before.
	LockUntilExit bool
	Logger        *slog.Logger
	// Builtin returns the command that runs built-in plugin name (the
	// devstack binary re-executed, see BuiltinCommand); nil runs no
	// built-in plugin.
	Builtin func(name string) (*exec.Cmd, error)
}

// Supervisor owns one project's running stack.
type Supervisor struct {
	opts  Options
	paths Paths
	lock  *os.File
	token string
	runID string
	logs  *logstore.Store
	run   *runner.Runner
	srv   *http.Server
	spans *store.Store
	proxy *proxy.Server
	ports *portTable
	// taken are the services whose docker compose containers were
	// cleared (Options.TakeOver).
	takenMu sync.Mutex
	taken   map[string]bool
	// untraced says, by service, which calls to it no route carries (see
	// untraced.go); reach finds the container services nothing reaches
	// at their published private ports (upstreams names the container
	// services the proxy fronts; the port table says where they are now).
	untraced     map[string][]string
	untracedSaid sync.Once
	reach        reach
	upstreams    map[string][]string
	// plugins runs the plugins (nil when there are none); they fill
	// faults, which the proxy reads per request.
	plugins      *host.Host
	faults       *fault.Table
	pluginsReady chan struct{}

	evMu   sync.Mutex
	evSubs map[chan runner.Event]struct{}

	upDone chan struct{}
	upErr  error

	downOnce      sync.Once
	removeVolumes bool
	downReq       chan struct{} // closed when the API asked for down
	recordMu      sync.Mutex
	stateFile     string
	fp            project.Fingerprint // of opts.Project
	handover      atomic.Bool         // Shutdown leaves containers running
	// restarting counts restarts under way: a service they stop is
	// coming back, so the proxy keeps holding its requests.
	restarting atomic.Int32
	// downMu makes tellProxyWhatIsDown's calls one at a time, so the
	// last to run has the latest statuses.
	downMu sync.Mutex
}

// Start takes the project's lock, cleans up orphans of an earlier run,
// checks ports and starts serving the control API. It starts no service:
// call Up.
func Start(ctx context.Context, opts Options) (*Supervisor, error) {
	p := opts.Project
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkName(p.Name); err != nil {
		return nil, err
	}
	paths := Paths{StateDir(p.Name)}
	if err := EnsurePrivate(paths.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(paths.Logs(), 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	lock, err := tryLock(paths.Lock())
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		opts: opts, paths: paths, lock: lock, token: newToken(), fp: p.Fingerprint(),
		runID:  strconv.FormatInt(time.Now().UnixNano(), 36),
		evSubs: map[chan runner.Event]struct{}{},
		upDone: make(chan struct{}), downReq: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			s.release()
		}
	}()
	if n, err := CleanOrphans(ctx, paths, p.Name); err != nil {
		return nil, err
	} else if n > 0 {
		s.emit(runner.Event{Msg: fmt.Sprintf("stopped %d process(es) left by an earlier devstack that was killed", n)})
	}
	if s.logs, err = logstore.Open(paths.Logs(), logstore.Options{}); err != nil {
		return nil, fmt.Errorf("opening logs: %w", err)
	}
	networked := func(svc *project.Service) bool {
		b, err := opts.BackendFor(svc)
		_, networked := b.(runner.Networked)
		return err == nil && networked
	}
	private, routes, err := plan(p, networked, opts.Gateway, opts.HeldPorts, opts.External)
	if err != nil {
		return nil, err
	}
	s.untraced, s.upstreams = untraced(p, networked, private), map[string][]string{}
	for _, svc := range p.Services {
		if !networked(svc) {
			continue
		}
		for _, r := range routes {
			if r.Service == svc.Name && !slices.Contains(s.upstreams[svc.Name], r.Upstream) {
				s.upstreams[svc.Name] = append(s.upstreams[svc.Name], r.Upstream)
			}
		}
	}
	specs, err := pluginSpecs(p, opts.Builtin != nil, opts.BackendFor, true)
	if err != nil {
		return nil, err
	}
	amb := ambassadors(p, private, opts.Gateway)
	s.ports = newPortTable(p.Name, private, routes)
	s.run, err = runner.New(p, runner.Options{
		BackendFor:  opts.BackendFor,
		Logs:        logSink{s.logs},
		Events:      s.emit,
		OnChange:    func() { s.persist(); s.tellProxyWhatIsDown(); s.checkReach() },
		OnStatus:    s.statusChanged,
		RunID:       s.runID,
		MarkerScope: markerScope(p.Name, paths.Dir),
		Logger:      opts.Logger,
		ListenPort:  s.ports.listenPort,
		Rerouter:    s.ports,
		Ambassador:  func(service string) *runner.Ambassador { return amb[service] },
		External:    opts.External,
		Hold:        s.hold,
	})
	if err != nil {
		return nil, err
	}
	// Every port of what the first up starts, proxied or not, is checked
	// before anything binds or starts, so one error lists every conflict.
	first := p.WithDependencies(opts.Services)
	if err := s.takeOver(ctx, first); err != nil {
		return nil, err
	}
	if err := errors.Join(s.run.CheckPorts(opts.Services), checkRoutes(s.ports.routesOf(first))); err != nil {
		return nil, err
	}
	if s.spans, err = store.Open(paths.Spans(), store.Options{MaxSpans: p.X.Trace.MaxSpans, Logger: opts.Logger}); err != nil {
		return nil, fmt.Errorf("opening the span store: %w", err)
	}
	if err := writeSource(paths.Dir, Source{Files: p.Files, MaxSpans: p.X.Trace.MaxSpans}); err != nil {
		return nil, fmt.Errorf("writing project.json: %w", err)
	}
	popts, err := traceOptions(p, s.spans)
	if err != nil {
		return nil, err
	}
	popts.Callers = &callers{r: func() *runner.Runner { return s.run }, container: opts.ContainerCaller}
	popts.TrustProxyLine = opts.Relayer
	if popts.TrustProxyLine == nil {
		popts.TrustProxyLine = func(netip.Addr) bool { return false }
	}
	if opts.Gateway != "" && (opts.ContainerCaller != nil || opts.Relayer != nil) {
		// The proxy listens on the bridge address too: only the project's
		// containers (services and their ambassadors) get in there.
		popts.AllowRemote = newContainerGate(opts.ContainerCaller, opts.Relayer).allows
	}
	popts.Logger = opts.Logger
	s.faults = new(fault.Table) // the plugins fill it; the proxy reads it per request
	popts.Faults = s.faults
	popts.OnBrokenPropagation = func(service string) {
		msg := service + " does not propagate trace context: its outbound calls carry none of the context it received; devstack links them to its in-flight request (marked inferred)"
		fmt.Fprintln(s.logs.Writer(service, logstore.System), msg)
		s.emit(runner.Event{Msg: msg})
	}
	s.proxy = proxy.New(popts)
	s.ports.proxy = s.proxy
	if err := s.ports.hold(first); err != nil {
		return nil, err
	}
	s.newPluginHost(specs, routes)
	s.tellProxyWhatIsDown() // services the user runs, from the first request
	if err := writeFileAtomic(paths.Token(), []byte(s.token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing token: %w", err)
	}
	s.persist()
	if err := s.serve(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Runner is the supervised runner.
func (s *Supervisor) Runner() *runner.Runner { return s.run }

// Logs is the log store.
func (s *Supervisor) Logs() *logstore.Store { return s.logs }

// Up checks ports, then starts the named services (all when none) and
// waits until they are ready. Its result is also what /v1/wait reports.
func (s *Supervisor) Up(ctx context.Context, names []string) error {
	err := s.run.CheckPorts(names)
	if err == nil {
		s.sayUntraced()
		err = s.waitPlugins(ctx)
	}
	if err == nil {
		err = s.run.Up(ctx, names)
	}
	s.upErr = err
	close(s.upDone)
	return err
}

// down stops every service, as o says, then removes the backends'
// project objects. It is idempotent: Shutdown after an API down finds
// nothing left.
func (s *Supervisor) down(ctx context.Context, volumes bool, o runner.StopOptions) error {
	s.removeVolumes = s.removeVolumes || volumes
	errs := []error{s.run.Down(ctx, o)}
	for _, c := range s.opts.Cleaners {
		errs = append(errs, c.Down(context.WithoutCancel(ctx), s.opts.Project.Name, s.removeVolumes))
	}
	return errors.Join(errs...)
}

// Handover makes way for a new supervisor of the project, started with a
// changed file. Services whose instances cannot outlive this supervisor
// (processes) stop. Those of a runner.Lasting backend (containers) keep
// running, with their networks and ambassadors, and Shutdown then leaves
// them. The next supervisor
// adopts the unchanged ones and replaces the changed ones by config hash,
// as after a crash of devstack. o says how the processes stop (up's
// --timeout).
func (s *Supervisor) Handover(ctx context.Context, o runner.StopOptions) error {
	s.handover.Store(true)
	var procs []string
	for _, svc := range s.opts.Project.Services {
		if b, err := s.opts.BackendFor(svc); err == nil && !runner.IsLasting(b) {
			procs = append(procs, svc.Name)
		}
	}
	if len(procs) == 0 {
		return nil
	}
	return s.run.Stop(ctx, procs, o)
}

// DownRequested is closed when a client asked for down.
func (s *Supervisor) DownRequested() <-chan struct{} { return s.downReq }

// Shutdown stops every service (killing at once when ctx ends), stops the
// API and releases the state directory.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	var err error
	if s.handover.Load() {
		s.run.Release()
	} else {
		err = s.down(ctx, s.removeVolumes, s.opts.ShutdownStop)
	}
	s.srv.Close()
	s.logs.Close()
	s.release()
	return err
}

func (s *Supervisor) release() {
	if s.plugins != nil {
		s.plugins.Close()
	}
	if s.srv != nil {
		s.srv.Close()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.spans != nil {
		s.spans.Close()
		s.spans = nil
	}
	os.Remove(s.paths.Socket())
	os.Remove(s.paths.Token())
	os.Remove(s.paths.State())
	if s.lock != nil && !s.opts.LockUntilExit {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
}

func (s *Supervisor) serve() error {
	os.Remove(s.paths.Socket()) // stale from a killed run; we hold the lock
	l, err := net.Listen("unix", s.paths.Socket())
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.paths.Socket(), err)
	}
	if err := os.Chmod(s.paths.Socket(), 0o600); err != nil {
		l.Close()
		return err
	}
	api := &control.Server{
		Stack:     stack{s},
		Traces:    s.spans,
		LogDir:    s.paths.Logs(),
		Subscribe: s.logs.Subscribe,
		Events:    s.subscribe,
		Token:     s.token,
		Wait: func(ctx context.Context) error {
			select {
			case <-s.upDone:
				return s.upErr
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Plugins:  pluginAPI{s},
		Down:     s.down,
		DownDone: func() { s.downOnce.Do(func() { close(s.downReq) }) },
		Handover: s.Handover,
		Env:      s.run.HostRun,
	}
	s.srv = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("control API stopped", "err", err)
		}
	}()
	return nil
}

// emit fans a progress event out to the terminal and API subscribers.
func (s *Supervisor) emit(ev runner.Event) {
	if s.opts.Events != nil {
		s.opts.Events(ev)
	}
	s.pluginEvent(ev.Service, ev.Msg)
	s.evMu.Lock()
	defer s.evMu.Unlock()
	for ch := range s.evSubs {
		select {
		case ch <- ev:
		default: // a slow client misses progress lines, never blocks the runner
		}
	}
}

func (s *Supervisor) subscribe() (<-chan runner.Event, func()) {
	ch := make(chan runner.Event, 256)
	s.evMu.Lock()
	s.evSubs[ch] = struct{}{}
	s.evMu.Unlock()
	return ch, func() {
		s.evMu.Lock()
		delete(s.evSubs, ch)
		s.evMu.Unlock()
	}
}

// persist records the supervisor and every live instance (pid and start
// time), so a later run can clean up after a SIGKILL.
func (s *Supervisor) persist() {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	self := proc.Self()
	rec := Record{Project: s.opts.Project.Name, RunID: s.runID,
		Supervisor: Proc{PID: self.PID, StartTime: self.StartTime}, Instances: map[string]*Proc{}, Config: &s.fp}
	if s.run != nil {
		for name, inst := range s.run.Instances() {
			hp, ok := inst.(runner.HostProcess)
			if !ok {
				continue // not a process of this host: nothing to clean up by pid
			}
			pid := hp.PID()
			id, err := proc.Lookup(pid)
			if err != nil {
				continue
			}
			rec.Instances[name] = &Proc{PID: pid, StartTime: id.StartTime, Marker: markerScope(s.opts.Project.Name, s.paths.Dir) + "/" + s.runID + "/" + name}
		}
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := writeFileAtomic(s.paths.State(), b, 0o600); err != nil {
		s.opts.Logger.Error("recording state", "err", err)
	}
}

// stack adds the proxy's findings to the runner's statuses.
type stack struct{ s *Supervisor }

func (st stack) Status() []runner.ServiceStatus {
	out := st.s.run.Status()
	broken := st.s.proxy.Broken()
	st.s.lookOutside(out)
	for i := range out {
		if slices.Contains(broken, out[i].Name) {
			out[i].Warnings = append(out[i].Warnings, out[i].Name+" does not propagate trace context")
		}
		out[i].Warnings = append(out[i].Warnings, st.s.untraced[out[i].Name]...)
		if f := st.s.reach.finding(out[i].Name); f != "" {
			out[i].Warnings = append(out[i].Warnings, f)
		}
	}
	return out
}

// sayUntraced tells, at the first up, what the file leaves untraced: an
// event (up prints it) and a line in each service's log.
func (s *Supervisor) sayUntraced() {
	s.untracedSaid.Do(func() {
		for _, name := range slices.Sorted(maps.Keys(s.untraced)) {
			for _, msg := range s.untraced[name] {
				s.untracedFound(name, msg)
			}
		}
	})
}

func (s *Supervisor) untracedFound(service, msg string) {
	fmt.Fprintln(s.logs.Writer(service, logstore.System), msg)
	s.emit(runner.Event{Service: service, Msg: msg})
}

// checkReach has each running container service with published ports
// checked once per instance (see reach).
func (s *Supervisor) checkReach() {
	if len(s.upstreams) == 0 || s.run == nil {
		return
	}
	for _, st := range s.run.Status() {
		if len(s.upstreams[st.Name]) == 0 {
			continue
		}
		// Where the routes go now: a hot reload moves them to the new
		// instance's private ports.
		var addrs []string
		for _, r := range s.ports.routesOf([]string{st.Name}) {
			if !slices.Contains(addrs, r.Upstream) {
				addrs = append(addrs, r.Upstream)
			}
		}
		s.reach.check(st, addrs, s.untracedFound)
	}
}

func (st stack) Up(ctx context.Context, names []string) error {
	st.s.sayUntraced()
	return st.s.run.Up(ctx, names)
}
func (st stack) Start(ctx context.Context, names []string) error { return st.s.run.Start(ctx, names) }
func (st stack) Stop(ctx context.Context, names []string, o runner.StopOptions) error {
	return st.s.run.Stop(ctx, names, o)
}
func (st stack) Restart(ctx context.Context, names []string, o runner.StopOptions) error {
	st.s.restarting.Add(1)
	defer func() {
		st.s.restarting.Add(-1)
		st.s.tellProxyWhatIsDown()
	}()
	return st.s.run.Restart(ctx, names, o)
}

// tellProxyWhatIsDown marks in the proxy the services that will not come
// back by themselves, so that requests for them are answered at once
// instead of held (see proxy.Server.SetDown), and clears the others. A
// restart or a handover under way stops services that are coming back.
func (s *Supervisor) tellProxyWhatIsDown() {
	if s.proxy == nil || s.run == nil {
		return
	}
	s.downMu.Lock()
	defer s.downMu.Unlock()
	coming := s.restarting.Load() > 0 || s.handover.Load()
	for _, st := range s.run.Status() {
		if st.State == runner.StateExternal {
			s.proxy.SetExternal(st.Name, s.whyExternal(st.Name))
			continue
		}
		why := ""
		if !coming {
			why = whyDown(st)
		}
		s.proxy.SetDown(st.Name, why)
	}
}

// whyDown says why a service will not come back by itself, to follow
// "<service> is", or "" when it may: it is running, starting, waiting on
// its dependencies or about to restart.
func whyDown(st runner.ServiceStatus) string {
	switch st.State {
	case runner.StateStopping, runner.StateStopped:
		return fmt.Sprintf("stopped; `devstack start %s` starts it again", st.Name)
	case runner.StateExited:
		return "not running (" + st.LastExit.String() + "), and its restart policy does not restart it"
	case runner.StateCompleted:
		return "not running (" + st.LastExit.String() + ", completed), and it is not restarted"
	case runner.StateFailed:
		return "not running: it could not start: " + st.Error
	}
	return ""
}

// tryLock takes the project's lock without waiting.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}

// WaitUnlocked blocks until no supervisor holds the project's lock (it has
// exited), or ctx ends.
func WaitUnlocked(ctx context.Context, dir string) error {
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(Paths{dir}.Lock(), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		done <- syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the supervisor to exit: %w", ctx.Err())
	}
}

// logSink adapts the log store to runner.LogSink.
type logSink struct{ s *logstore.Store }

func (l logSink) Writer(service, stream string) io.Writer {
	st := logstore.Stdout
	switch stream {
	case "err":
		st = logstore.Stderr
	case "sys":
		st = logstore.System
	}
	return l.s.Writer(service, st)
}
