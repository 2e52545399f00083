package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/devstack/devstack/runner/health"
	"github.com/devstack/devstack/runner/project"
)

// service is the runner's state for one service. Fields below the line are
// guarded by Runner.mu.
type service struct {
	spec    *project.Service
	backend Backend
	policy  RestartPolicy
	hc      *project.Healthcheck
	stopSig syscall.Signal
	grace   time.Duration

	st          ServiceStatus
	inst        Instance
	built       bool
	stopReq     bool          // a user asked it to stop: no restart
	stopGrace   time.Duration // the grace of the stop asked for: grace, or the stop's own (StopOptions)
	cancel      func()        // ends the supervise loop's waits
	loopDone    chan struct{} // closed when the supervise loop returns; nil when none ran
	startCrash  int           // exits before it was ever ready, this run
	readyBefore bool          // the current instance has been ready (healthy)
	// next is a replacement started beside inst (Replace): the supervise
	// loop takes it over when inst ends, instead of restarting.
	next      Instance
	nextReady bool          // next passed its healthcheck before it took over
	replacing chan struct{} // one Replace at a time (capacity 1)
	gen       int           // replacements started, for their markers
	// standby is what the backend's standby for the next reload was made
	// with (Standbyer): the next Replace starts with its ports and marker.
	standby  *standbySpec
	intent   Intent // why the service's status changes now
	cause    string // what caused the change (the file that changed)
	reload   reloadStats
	synced   map[string]FileCopy // Spec.Synced, by destination
	external bool                // the user runs it (external.go)
}

// crashLimit is how many exits before first readiness make Up give up on a
// service that restart policy keeps restarting, so that up never hangs on
// a crash loop.
const crashLimit = 3

// Up starts the named services (all when none) and what they depend on, in
// dependency order and in parallel where the graph allows, and returns once
// each is ready: running and healthy, or completed. It returns an error
// naming every service that failed to come up; the others keep running.
func (r *Runner) Up(ctx context.Context, names []string) error {
	sel, err := r.lookup(names)
	if err != nil {
		return err
	}
	set := r.closure(sel)
	if r.opts.Hold != nil {
		names := make([]string, len(set))
		for i, s := range set {
			names[i] = s.spec.Name
		}
		if err := r.opts.Hold(names); err != nil {
			return err
		}
	}
	named := map[*service]bool{}
	for _, s := range sel {
		named[s] = true
	}
	for _, s := range set {
		// A dependency that runs or has completed is left alone: starting
		// one service must not re-run a finished one-shot it depends on.
		// One the user runs is never started (external.go).
		if st, _ := r.snapshot(s); r.External(s.spec.Name) || !named[s] && (st.State == StateRunning || st.State == StateCompleted) {
			continue
		}
		r.launch(s)
	}
	r.frontExternal(ctx, set)
	var errs []error
	for _, s := range set {
		err := r.waitReady(ctx, s)
		if err == nil && s.hc == nil {
			err = r.waitSettled(ctx, s)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// settleTime is how long up watches a service without a healthcheck
// after its start: it is ready once it runs, and one that then exits
// (a bad flag, a missing file) must fail up as an unhealthy one does,
// not leave a restart loop behind a "the stack is up".
const settleTime = 500 * time.Millisecond

// waitSettled returns once s, which has no healthcheck, has run for
// settleTime since its latest start, or has completed; an error when it
// exits for good or crashes crashLimit times meanwhile.
func (r *Runner) waitSettled(ctx context.Context, s *service) error {
	for {
		st, changed := r.snapshot(s)
		r.mu.Lock()
		crashes := s.startCrash
		r.mu.Unlock()
		if crashes >= crashLimit {
			return fmt.Errorf("service %q crashed %d times while starting (last: %s) and is in a restart loop; see `devstack logs %s`", s.spec.Name, crashes, st.LastExit.String(), s.spec.Name)
		}
		var wait time.Duration
		switch st.State {
		case StateCompleted:
			return nil
		case StateRunning:
			if st.StartedAt == nil {
				return nil
			}
			if wait = settleTime - time.Since(*st.StartedAt); wait <= 0 {
				return nil
			}
		case StateRestarting, StateBuilding, StateWaiting:
			wait = settleTime
		default:
			return r.waitReady(ctx, s) // says why it is not running
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for service %q (%s): %w", s.spec.Name, st.State, ctx.Err())
		}
		t.Stop()
	}
}

// closure is sel plus every service they depend on, transitively.
func (r *Runner) closure(sel []*service) []*service {
	seen := map[string]bool{}
	var out []*service
	var visit func(s *service)
	visit = func(s *service) {
		if seen[s.spec.Name] {
			return
		}
		seen[s.spec.Name] = true
		for _, d := range s.spec.DependsOn {
			if ds, ok := r.svcs[d.Service]; ok {
				visit(ds)
			}
		}
		out = append(out, s)
	}
	for _, s := range sel {
		visit(s)
	}
	return out
}

// launch starts s's supervise loop unless one is running.
func (r *Runner) launch(s *service) {
	r.mu.Lock()
	if s.loopDone != nil {
		select {
		case <-s.loopDone:
		default:
			r.mu.Unlock()
			return // already supervised
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.loopDone, s.stopReq, s.startCrash = cancel, make(chan struct{}), false, 0
	s.stopGrace = s.grace
	s.readyBefore = false
	// Waiting from here on, not at the goroutine's first step: a waiter
	// must never see the previous run's terminal state.
	s.st.State, s.st.Error, s.st.Health = StateWaiting, "", HealthNone
	done := s.loopDone
	r.mu.Unlock()
	go func() {
		defer close(done)
		defer cancel()
		r.supervise(ctx, s)
	}()
}

// waitReady blocks until s is ready or has failed to come up.
func (r *Runner) waitReady(ctx context.Context, s *service) error {
	for {
		st, changed := r.snapshot(s)
		r.mu.Lock()
		crashes := s.startCrash
		r.mu.Unlock()
		if st.Ready() {
			return nil
		}
		switch {
		case st.State == StateFailed:
			return fmt.Errorf("service %q failed to start: %s", s.spec.Name, st.Error)
		case st.State == StateExited:
			return fmt.Errorf("service %q exited (%s) before it was ready; see `devstack logs %s`", s.spec.Name, st.LastExit.String(), s.spec.Name)
		case st.State == StateStopped:
			return fmt.Errorf("service %q was stopped before it was ready", s.spec.Name)
		case st.Health == HealthUnhealthy:
			return fmt.Errorf("service %q is unhealthy: its healthcheck failed %d times in a row; see `devstack logs %s`", s.spec.Name, s.hc.Retries, s.spec.Name)
		case crashes >= crashLimit:
			return fmt.Errorf("service %q crashed %d times while starting (last: %s) and is in a restart loop; see `devstack logs %s`", s.spec.Name, crashes, st.LastExit.String(), s.spec.Name)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for service %q (%s): %w", s.spec.Name, st.State, ctx.Err())
		}
	}
}

// supervise runs one service: wait for dependencies, build, start, watch
// health, and restart by policy until stopped or done.
func (r *Runner) supervise(ctx context.Context, s *service) {
	name := s.spec.Name
	spec := r.spec(s)
	// A service that waits on others prepares its start meanwhile.
	var undo func()
	if pr, ok := s.backend.(Preparer); ok && len(s.spec.DependsOn) > 0 {
		// Once the dependencies run, waiting on their health leaves the
		// backend idle (a Docker engine starts containers about one at a
		// time): prepare then, not sooner, to take no turn from them.
		r.depsUnderway(ctx, s)
		if ctx.Err() == nil { // not stopped meanwhile
			var err error
			if undo, err = pr.Prepare(ctx, spec); err != nil && ctx.Err() == nil {
				r.event(name, "could not prepare the start ahead (%v); doing it all at start", err)
			}
		}
	}
	// What was prepared goes again if the service is not started: before
	// a failure is reported (so that up returns with it gone), else on
	// the way out.
	started := false
	abandon := func() {
		if undo != nil && !started {
			undo()
			undo = nil
		}
	}
	defer abandon()
	for _, d := range s.spec.DependsOn {
		if err := r.waitDep(ctx, s, d); err != nil {
			if ctx.Err() != nil {
				r.update(s, func(st *ServiceStatus) { st.State = StateStopped })
				return
			}
			if !d.Required {
				r.event(name, "starting without optional dependency %q: %v", d.Service, err)
				continue
			}
			abandon()
			r.update(s, func(st *ServiceStatus) { st.State, st.Error = StateFailed, err.Error() })
			r.event(name, "not started: %v", err)
			return
		}
	}
	// Instances of other backends that call s by name get the name there
	// (Fronter), meanwhile; it is s's before s counts as running.
	fronted := make(chan struct{})
	go func() {
		defer close(fronted)
		r.front(ctx, s, spec, false)
	}()
	if b, ok := s.backend.(Builder); ok && !s.built {
		r.update(s, func(st *ServiceStatus) { st.State = StateBuilding })
		if err := b.Build(ctx, spec); err != nil {
			r.update(s, func(st *ServiceStatus) { st.State, st.Error = StateFailed, err.Error() })
			r.event(name, "build failed: %v", err)
			return
		}
		r.mu.Lock()
		s.built = true
		r.mu.Unlock()
	}
	streak := 0
	for {
		// A replacement started beside the previous instance takes over
		// (see Replace); otherwise a new instance starts. The spec is made
		// anew: a replacement may have moved the service's private ports.
		r.mu.Lock()
		inst, adopted := s.next, s.next != nil
		s.next = nil
		readyAlready := s.nextReady
		s.nextReady = false
		r.mu.Unlock()
		var err error
		if !adopted {
			inst, err = s.backend.Start(ctx, r.spec(s))
		}
		if err != nil && ctx.Err() != nil {
			// Stopped while starting (Ctrl-C, down): not a failure.
			r.update(s, func(st *ServiceStatus) { st.State = StateStopped })
			r.event(name, "start cancelled")
			return
		}
		if err != nil {
			r.update(s, func(st *ServiceStatus) { st.State, st.Error = StateFailed, err.Error() })
			r.event(name, "failed to start: %v", err)
			return
		}
		started = true
		startedAt := time.Now()
		r.mu.Lock()
		s.inst = inst
		stopNow, grace := s.stopReq, s.stopGrace
		s.readyBefore = readyAlready
		r.mu.Unlock()
		<-fronted
		if stopNow {
			// A stop arrived while it was starting and found no instance
			// to stop: stop it here, so the stop never waits forever.
			_ = inst.Stop(context.Background(), s.stopSig, grace)
		}
		r.update(s, func(st *ServiceStatus) {
			st.State, st.ID, st.StartedAt, st.Error = StateRunning, inst.ID(), &startedAt, ""
			if s.hc != nil {
				st.Health = HealthStarting
				if readyAlready {
					st.Health = HealthHealthy
				}
			}
		})
		if !adopted {
			r.event(name, "started (%s %s)", s.backend.Name(), inst.ID())
		}
		hctx, hcancel := context.WithCancel(ctx)
		if hr, ok := inst.(HealthReporter); ok {
			go r.followHealth(hctx, s, hr.Health(), readyAlready)
		} else if ex, ok := inst.(Execer); ok && s.hc != nil {
			go r.watchHealth(hctx, s, ex)
		}
		exit := inst.Wait()
		hcancel()
		r.mu.Lock()
		s.inst = nil
		stopReq := s.stopReq
		if s.next != nil && !stopReq {
			// Replaced: the new instance takes over at once, no restart.
			r.mu.Unlock()
			continue
		}
		if nx := s.next; nx != nil {
			// Stopped while a replacement waited to take over: it goes
			// too, or it would outlive the stop.
			s.next = nil
			grace := s.stopGrace
			r.mu.Unlock()
			_ = nx.Stop(context.WithoutCancel(ctx), s.stopSig, grace)
			r.mu.Lock()
		}
		wasReady := s.readyBefore
		if !wasReady && !exit.Success() {
			s.startCrash++
		}
		s.readyBefore = false
		r.mu.Unlock()
		if exit.At.Sub(startedAt) >= stableRun {
			streak = 0
		}
		if stopReq {
			r.update(s, func(st *ServiceStatus) {
				st.State, st.LastExit, st.Health, st.ID = StateStopped, exitInfo(exit), HealthNone, ""
			})
			r.event(name, "stopped (%s)", exit)
			return
		}
		if !s.policy.ShouldRestart(exit, streak, false) {
			state := StateExited
			if exit.Success() {
				state = StateCompleted
			}
			r.update(s, func(st *ServiceStatus) {
				st.State, st.LastExit, st.Health, st.ID = state, exitInfo(exit), HealthNone, ""
			})
			r.event(name, "exited (%s); restart policy %q does not restart it", exit, s.policy.Mode)
			return
		}
		streak++
		delay := backoff(streak)
		r.update(s, func(st *ServiceStatus) {
			st.State, st.LastExit, st.Health, st.ID = StateRestarting, exitInfo(exit), HealthNone, ""
			st.Restarts++
		})
		r.event(name, "exited (%s); restarting in %s (restart %d of this streak, policy %q)", exit, delay, streak, s.policy.Mode)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.update(s, func(st *ServiceStatus) { st.State = StateStopped })
			return
		}
	}
}

// watchHealth runs the healthcheck against a process instance.
func (r *Runner) watchHealth(ctx context.Context, s *service, ex Execer) {
	probe := func(ctx context.Context) error {
		r.probing.Add(1)
		code, out, err := ex.Exec(ctx, s.hc.Test.Argv())
		r.probing.Add(-1)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d: %s", code, strings.TrimSpace(string(out)))
		}
		return nil
	}
	last := HealthStarting
	health.Run(ctx, s.hc, probe, func(res health.Result) {
		h := last
		switch {
		case res.Healthy:
			h = HealthHealthy
		case res.Unhealthy:
			h = HealthUnhealthy
		}
		if h != last {
			r.setHealth(s, h, res.Err)
			last = h
		}
	})
}

// followHealth takes verdicts from an engine that runs the healthcheck.
// A replacement found healthy before it took over (ready) stays so until
// the engine's first verdict: "starting" only says it has not run the
// healthcheck itself yet.
func (r *Runner) followHealth(ctx context.Context, s *service, ch <-chan Health, ready bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case h, ok := <-ch:
			if !ok {
				return
			}
			if ready && h == HealthStarting {
				continue
			}
			ready = false
			r.setHealth(s, h, nil)
		}
	}
}

// setHealth records a health change of the running instance.
func (r *Runner) setHealth(s *service, h Health, err error) {
	if h == HealthHealthy {
		r.mu.Lock()
		s.readyBefore = true
		r.mu.Unlock()
	}
	if err != nil {
		r.event(s.spec.Name, "%s: %v", h, err)
	} else {
		r.event(s.spec.Name, "%s", h)
	}
	r.update(s, func(st *ServiceStatus) {
		if st.State == StateRunning {
			st.Health = h
		}
	})
}

// waitDep blocks until dependency d of s meets its condition.
func (r *Runner) waitDep(ctx context.Context, s *service, d project.Dependency) error {
	ds, ok := r.svcs[d.Service]
	if !ok {
		return fmt.Errorf("dependency %q is not part of this project (disabled by a profile?)", d.Service)
	}
	announced := false
	for {
		st, changed := r.snapshot(ds)
		if st.State == StateExternal {
			return nil // the user runs it; the proxy holds calls until it answers
		}
		switch d.Condition {
		case project.ConditionCompleted:
			if st.State == StateCompleted {
				return nil
			}
			if st.State == StateExited {
				return fmt.Errorf("%q did not complete successfully (%s)", d.Service, st.LastExit.String())
			}
		case project.ConditionHealthy:
			if st.State == StateRunning && st.Health == HealthHealthy {
				return nil
			}
			if st.Health == HealthUnhealthy {
				return fmt.Errorf("%q is unhealthy", d.Service)
			}
		default: // service_started
			if st.State == StateRunning || st.State == StateCompleted {
				return nil
			}
		}
		if st.State == StateFailed {
			return fmt.Errorf("%q failed: %s", d.Service, st.Error)
		}
		if st.State == StateExited && d.Condition != project.ConditionCompleted {
			return fmt.Errorf("%q exited (%s)", d.Service, st.LastExit.String())
		}
		if !announced {
			r.event(s.spec.Name, "waiting for %s to be %s", d.Service, conditionWord(d.Condition))
			announced = true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// depsUnderway waits until no dependency of s is still on its way to its
// first start: each runs, or has ended one way or another. waitDep then
// says what that means for s.
func (r *Runner) depsUnderway(ctx context.Context, s *service) {
	for _, d := range s.spec.DependsOn {
		ds, ok := r.svcs[d.Service]
		if !ok {
			continue
		}
		for {
			st, changed := r.snapshot(ds)
			if st.State != StateCreated && st.State != StateWaiting && st.State != StateBuilding {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}
}

func conditionWord(c string) string {
	switch c {
	case project.ConditionHealthy:
		return "healthy"
	case project.ConditionCompleted:
		return "completed successfully"
	}
	return "started"
}

// spec builds the backend's view of s.
func (r *Runner) spec(s *service) Spec { return r.specFor(s, nil, 0) }

// specFor is spec for replacement number gen (0: none), listening on the
// private ports given by target port in ports (nil: the current ones). A
// replacement runs beside the instance it replaces, so it has a marker of
// its own: stopping the old one must not find the new one by its marker
// (or its cgroup, named by the marker).
func (r *Runner) specFor(s *service, ports map[uint16]uint16, gen int) Spec {
	name := s.spec.Name
	scope := r.opts.MarkerScope
	if scope == "" {
		scope = r.p.Name
	}
	marker := scope + "/" + r.opts.RunID + "/" + name
	if gen > 0 {
		marker += fmt.Sprintf("~%d", gen)
	}
	wirer, networked := s.backend.(Networked)
	rc, _ := s.backend.(Reacher)
	spec := Spec{
		Project: r.p, Service: s.spec, Marker: marker,
		Env:    append(r.env(s, networked, rc, ports), "DEVSTACK_INSTANCE="+marker),
		Stdout: r.opts.Logs.Writer(name, "out"),
		Stderr: r.opts.Logs.Writer(name, "err"),
		Status: r.opts.Logs.Writer(name, "sys"),
	}
	r.mu.Lock()
	for _, dst := range slices.Sorted(maps.Keys(s.synced)) {
		spec.Synced = append(spec.Synced, s.synced[dst])
	}
	r.mu.Unlock()
	if networked {
		if r.opts.Ambassador != nil {
			spec.Ambassador = r.opts.Ambassador(name)
			for n, o := range r.svcs {
				if o.backend != s.backend {
					continue
				}
				if a := r.opts.Ambassador(n); a != nil {
					if spec.Ambassadors == nil {
						spec.Ambassadors = map[string]*Ambassador{}
					}
					spec.Ambassadors[n] = a
				}
			}
		}
		spec = wirer.Wire(spec, stack{r: r, service: name, ports: ports})
	}
	return spec
}

// env is s's environment, in a network of its own or on the host, with
// the addresses of the other services as rc (when not nil) reaches them:
// the file's, the ports to listen on (private ones from ports, by target
// port, when given), and devstack's own variables but the instance marker.
func (r *Runner) env(s *service, networked bool, rc Reacher, ports map[uint16]uint16) []string {
	name := s.spec.Name
	env := make([]string, 0, len(s.spec.Compose.Environment)+2)
	for k, v := range s.spec.Compose.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	if pe := s.spec.X.PortEnv; pe != "" && len(s.spec.Ports) > 0 {
		// The port to listen on: a process takes the private port when the
		// proxy owns the declared one; an instance in a network of its own
		// always listens on its target port (the private port is its
		// published side).
		inside := func(p project.Port) uint16 {
			if networked {
				return p.Target
			}
			if pp, ok := ports[p.Target]; ok {
				return pp
			}
			return r.listenPort(name, p)
		}
		env = append(env, pe+"="+fmt.Sprint(inside(s.spec.Ports[0])))
		// Every port, for services with more than one:
		// DEVSTACK_PORT_<target>=<port to listen on>.
		for _, p := range s.spec.Ports {
			env = append(env, fmt.Sprintf("DEVSTACK_PORT_%d=%d", p.Target, inside(p)))
		}
	}
	env = append(env, "DEVSTACK_SERVICE="+name, "DEVSTACK_PROJECT="+r.p.Name)
	if rc != nil {
		env = r.reachEnv(s, rc, env)
	}
	return env
}

// stack is the Runner as a Networked backend sees it, for the spec of
// service: a replacement listens on its own private ports, by target port.
type stack struct {
	r       *Runner
	service string
	ports   map[uint16]uint16
}

func (st stack) ListenPort(service string, p project.Port) uint16 {
	if pp, ok := st.ports[p.Target]; ok && service == st.service {
		return pp
	}
	return st.r.listenPort(service, p)
}

func (st stack) Backend(service string) Backend {
	if s := st.r.svcs[service]; s != nil {
		return s.backend
	}
	return nil
}

// listenPort is the port an instance listens on for a declared port.
func (r *Runner) listenPort(service string, p project.Port) uint16 {
	if r.opts.ListenPort != nil {
		return r.opts.ListenPort(service, p)
	}
	return p.Declared()
}
