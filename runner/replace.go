package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Rerouter is what Replace needs from whoever owns the service's ports
// (the supervisor and its proxy) to start a new instance beside the live
// one and move the traffic over without refusing a request.
type Rerouter interface {
	// FreshPorts picks new private ports for the ports of service that the
	// proxy fronts, by target port. Nil or empty: the proxy fronts none of
	// them, and a second instance could not listen beside the first.
	FreshPorts(service string) (map[uint16]uint16, error)
	// Switch points the proxy's routes of service at ports (by target
	// port): requests from its return on go there, and instances started
	// later (restarts) listen there.
	Switch(service string, ports map[uint16]uint16) error
	// Drain returns once the requests sent to service before since are
	// answered, or ctx ends.
	Drain(ctx context.Context, service string, since time.Time)
}

// ReplaceOptions say what a Replace does and why.
type ReplaceOptions struct {
	// Rebuild runs the service's build first, while the old instance
	// keeps serving.
	Rebuild bool
	// Cause is shown in the log and carried on status changes
	// ("main.go changed").
	Cause string
	// Seen is when the change that asked for this was seen; the reload's
	// time is measured from it. Zero: from the call.
	Seen time.Time
}

// Reload is a finished Replace.
type Reload struct {
	// Took is from ReplaceOptions.Seen to the new instance answering
	// through the proxy's route; Build is the build's part of it.
	Took, Build time.Duration
	// Beside is true when the new instance started beside the old one
	// (zero downtime), false when the service restarted in place (the
	// proxy held requests meanwhile).
	Beside bool
}

// readyTimeout bounds the wait for a replacement to become ready when its
// healthcheck does not bound it.
const readyTimeout = 60 * time.Second

// Replace reloads a running service without downtime: it builds (when
// asked) while the old instance serves, starts a new instance on fresh
// private ports, waits for its healthcheck (or, without one, for its
// ports to accept), switches the proxy's routes to it, lets the requests
// the old one has answer, and stops it. If the build, the start or the
// healthcheck fails, the old instance keeps serving, the error goes to
// the log and to ServiceStatus.ReloadError, and Replace returns it.
//
// A service whose ports the proxy does not front, or whose backend runs
// instances in a network of their own, restarts in place instead (the
// proxy holds its requests meanwhile). A service that is not running
// (it crashed, or its first build failed) is started.
func (r *Runner) Replace(ctx context.Context, name string, o ReplaceOptions) (Reload, error) {
	res, err := r.replaceOne(ctx, name, o)
	if err != nil {
		return res, err
	}
	// Services that depend on it with restart: true are replaced too, as
	// a restart does; the others keep running.
	for _, d := range r.restartDependents(name) {
		if _, err := r.replaceOne(ctx, d, ReplaceOptions{Cause: name + " reloaded"}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// restartDependents are the services that depend on name with restart:
// true, transitively (in the project's order).
func (r *Runner) restartDependents(name string) []string {
	sel, _ := r.lookup([]string{name})
	var out []string
	for _, s := range r.withRestartDependents(sel)[1:] {
		out = append(out, s.spec.Name)
	}
	return out
}

func (r *Runner) replaceOne(ctx context.Context, name string, o ReplaceOptions) (Reload, error) {
	sel, err := r.lookup([]string{name})
	if err != nil {
		return Reload{}, err
	}
	s := sel[0]
	if o.Seen.IsZero() {
		o.Seen = time.Now()
	}
	select {
	case s.replacing <- struct{}{}:
	case <-ctx.Done():
		return Reload{}, ctx.Err()
	}
	// Whether it took over or not, the reload used up the standby (if
	// any): the next is readied for what runs now, the new instance or
	// the old, before another reload of s may start, which then finds it.
	defer func() {
		r.mu.Lock()
		cur := s.next
		if cur == nil {
			cur = s.inst
		}
		r.mu.Unlock()
		if cur == nil || !r.prepareStandby(s, cur, true) {
			<-s.replacing
		}
	}()
	r.setIntent(s, IntentComingBack, o.Cause)
	defer r.setIntent(s, IntentNone, "")
	what := "reloading"
	if o.Cause != "" {
		what += " (" + o.Cause + ")"
	}
	r.event(name, "%s", what)

	st, _ := r.snapshot(s)
	if st.State != StateRunning {
		return r.startAgain(ctx, s, o, st)
	}
	var res Reload
	spec := r.spec(s)
	if b, ok := s.backend.(Builder); ok && o.Rebuild {
		t0 := time.Now()
		build := b.Build
		if rb, ok := s.backend.(Rebuilder); ok {
			build = rb.Rebuild
		}
		if err := build(ctx, spec); err != nil {
			return res, r.reloadFailed(s, fmt.Errorf("build failed: %w", err))
		}
		res.Build = time.Since(t0)
		// The new build has the sources as they are: what was synced
		// into the old instances is in it.
		r.mu.Lock()
		s.synced = nil
		r.mu.Unlock()
	}
	r.mu.Lock()
	sb := s.standby
	s.standby = nil
	r.mu.Unlock()
	var ports map[uint16]uint16
	var gen int
	if sb != nil {
		// The backend's standby listens on these: StartBeside takes it
		// over when nothing else changed.
		ports, gen = sb.ports, sb.gen
	} else {
		if ports, err = r.freshPorts(s); err != nil {
			return res, r.reloadFailed(s, err)
		}
		if ports == nil {
			return r.restartInPlace(ctx, s, o, res)
		}
		r.mu.Lock()
		s.gen++
		gen = s.gen
		r.mu.Unlock()
	}
	nspec := r.specFor(s, ports, gen)
	var inst Instance
	bs, beside := s.backend.(Besider)
	if beside {
		r.mu.Lock()
		old := s.inst
		r.mu.Unlock()
		inst, err = bs.StartBeside(ctx, nspec, old)
		if errors.Is(err, ErrNotBeside) {
			r.event(name, "restarting in place: %v", err)
			return r.restartInPlace(ctx, s, o, res)
		}
	} else {
		inst, err = s.backend.Start(ctx, nspec)
	}
	if err != nil {
		return res, r.reloadFailed(s, fmt.Errorf("the new instance did not start: %w", err))
	}
	stopNew := func() { _ = inst.Stop(context.WithoutCancel(ctx), s.stopSig, s.grace) }
	if err := r.awaitReady(ctx, s, inst, ports); err != nil {
		stopNew()
		return res, r.reloadFailed(s, err)
	}
	switched := time.Now()
	if err := r.opts.Rerouter.Switch(name, ports); err != nil {
		stopNew()
		return res, r.reloadFailed(s, fmt.Errorf("switching the proxy to the new instance: %w", err))
	}
	res.Took, res.Beside = time.Since(o.Seen), true
	r.mu.Lock()
	if s.stopReq {
		// Stopped meanwhile: the new instance goes too.
		r.mu.Unlock()
		stopNew()
		return res, fmt.Errorf("service %q was stopped during its reload", name)
	}
	old := s.inst
	s.next, s.nextReady = inst, s.hc != nil
	r.mu.Unlock()
	r.reloaded(s, res, inst.ID(), o.Cause)
	if beside && old != nil {
		bs.Switched(ctx, old, inst)
	}
	// The old instance finishes what it was sent, then goes; the supervise
	// loop takes the new one over when it has exited. (Without an old
	// instance the loop is between two: it takes the new one next.)
	if old != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.grace)
		r.opts.Rerouter.Drain(dctx, name, switched)
		cancel()
		if err := old.Stop(context.WithoutCancel(ctx), s.stopSig, s.grace); err != nil {
			r.event(name, "stopping the replaced instance %s: %v", old.ID(), err)
		}
	}
	return res, nil
}

// PrepareStandbys has the backends of the named services that run now
// ready their next reload ahead (Standbyer), in the background: hot
// reload calls it when it starts watching, so that the first reload is
// as quick as the next ones.
func (r *Runner) PrepareStandbys(names []string) {
	sel, err := r.lookup(names)
	if err != nil {
		return
	}
	for _, s := range sel {
		r.mu.Lock()
		cur := s.inst
		r.mu.Unlock()
		if cur != nil {
			r.prepareStandby(s, cur, false)
		}
	}
}

// standbySpec is what a backend's standby (Standbyer) was prepared with.
type standbySpec struct {
	ports map[uint16]uint16
	gen   int
}

// prepareStandby has s's backend ready the instance that will take the
// next reload of s over from cur, in the background: after a reload, so
// that a service that is never reloaded costs nothing. It runs as one of
// s's reloads: holding says the caller holds s's turn (s.replacing) and
// hands it over; otherwise it waits for it. It reports whether it took
// the turn over (and will give it back).
func (r *Runner) prepareStandby(s *service, cur Instance, holding bool) bool {
	sb, ok := s.backend.(Standbyer)
	if !ok || r.opts.Rerouter == nil {
		return false
	}
	r.mu.Lock()
	if r.bgCtx.Err() != nil {
		r.mu.Unlock()
		return false // going down
	}
	r.bg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.bg.Done()
		if !holding {
			select {
			case s.replacing <- struct{}{}:
			case <-r.bgCtx.Done():
				return
			}
		}
		defer func() { <-s.replacing }()
		r.mu.Lock()
		live := s.next == cur || s.inst == cur
		skip := s.stopReq || s.standby != nil
		r.mu.Unlock()
		if !live || skip {
			return // replaced or stopped meanwhile, or ready already
		}
		ports, err := r.freshPorts(s)
		if err != nil || ports == nil {
			return
		}
		r.mu.Lock()
		s.gen++
		gen := s.gen
		r.mu.Unlock()
		if err := sb.PrepareStandby(r.bgCtx, r.specFor(s, ports, gen), cur); err != nil {
			r.event(s.spec.Name, "the next reload starts a new instance: %v", err)
			return
		}
		r.mu.Lock()
		s.standby = &standbySpec{ports: ports, gen: gen}
		r.mu.Unlock()
	}()
	return true
}

// Sync copies files into the running instance of service, for backends
// whose instances do not see the host's files (containers).
func (r *Runner) Sync(ctx context.Context, service string, files []FileCopy) error {
	sel, err := r.lookup([]string{service})
	if err != nil {
		return err
	}
	s := sel[0]
	sy, ok := s.backend.(Syncer)
	if !ok {
		return fmt.Errorf("service %q runs on the %s backend, which takes no sync: its files are on this host", service, s.backend.Name())
	}
	r.mu.Lock()
	inst := s.inst
	r.mu.Unlock()
	if inst == nil {
		return fmt.Errorf("service %q is not running; nothing to sync into", service)
	}
	if err := sy.Sync(ctx, inst, files); err != nil {
		r.event(service, "%v", err)
		return err
	}
	r.mu.Lock()
	if s.synced == nil {
		s.synced = map[string]FileCopy{}
	}
	for _, f := range files {
		if f.Removed {
			delete(s.synced, f.Dst)
		} else {
			s.synced[f.Dst] = f
		}
	}
	r.mu.Unlock()
	return nil
}

// freshPorts asks for the replacement's ports; nil when it cannot run
// beside the old instance: every TCP port the service declares must be
// fronted by the proxy, and a backend whose instances run in a network of
// their own must be able to start one beside another (Besider).
func (r *Runner) freshPorts(s *service) (map[uint16]uint16, error) {
	_, networked := s.backend.(Networked)
	_, beside := s.backend.(Besider)
	if networked && !beside || r.opts.Rerouter == nil || len(s.spec.Ports) == 0 {
		return nil, nil
	}
	ports, err := r.opts.Rerouter.FreshPorts(s.spec.Name)
	if err != nil {
		return nil, fmt.Errorf("finding ports for the new instance: %w", err)
	}
	for _, p := range s.spec.Ports {
		if _, ok := ports[p.Target]; !ok && p.Protocol != "udp" {
			return nil, nil
		}
	}
	return ports, nil
}

// awaitReady waits until inst passes s's healthcheck, or without one,
// until every port in ports accepts a connection. An exit, a healthcheck
// that fails for good, or the timeout are errors.
func (r *Runner) awaitReady(ctx context.Context, s *service, inst Instance, ports map[uint16]uint16) error {
	timeout := readyTimeout
	if hc := s.hc; hc != nil {
		timeout = max(timeout, hc.StartPeriod+time.Duration(hc.Retries+1)*(hc.Interval+hc.Timeout))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := make(chan Exit, 1)
	go func() { exited <- inst.Wait() }()
	probe := r.readyProbe(s, inst, ports)
	wait := 2 * time.Millisecond
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, errNeverReady) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case e := <-exited:
			t.Stop()
			return fmt.Errorf("the new instance %s exited (%s) before it was ready; see `devstack logs %s`", inst.ID(), e, s.spec.Name)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("the new instance %s was not ready after %s (last: %v)", inst.ID(), timeout, err)
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

var errNeverReady = errors.New("the new instance's healthcheck failed for good")

// A replacement's readiness runs its healthcheck itself (HealthProber)
// while its engine has not said it is healthy: first at once, then after
// probeFirst, doubling up to probePace between the end of one probe and
// the next. The first probe may come before the new process listens (an
// exec into a container that has just started can be quicker than the
// process's own start, which is slow on some storage drivers): a flat
// 100 ms pace would then add up to 100 ms to the reload, a probe (about
// 50 ms through exec here) not much more than its own time.
const (
	probeFirst = 10 * time.Millisecond
	probePace  = 100 * time.Millisecond
)

// readyProbe is one readiness check of a replacement.
func (r *Runner) readyProbe(s *service, inst Instance, ports map[uint16]uint16) func(context.Context) error {
	if hr, ok := inst.(HealthReporter); ok && s.hc != nil {
		ch := hr.Health()
		hp, _ := inst.(HealthProber)
		var next time.Time
		pace := probeFirst
		// verdict takes one of the engine's: done when it says healthy
		// (nil) or unhealthy for good (errNeverReady).
		verdict := func(h Health, ok bool) (done bool, err error) {
			switch {
			case !ok:
				// It exited (awaitReady says how), or its engine's verdicts
				// stopped: the probe still answers.
				ch = nil
			case h == HealthUnhealthy:
				// Its engine saw the healthcheck fail retries times after
				// start_period.
				return true, errNeverReady
			case h == HealthHealthy:
				return true, nil
			}
			return false, nil
		}
		return func(ctx context.Context) error {
			for {
				select {
				case h, ok := <-ch:
					if done, err := verdict(h, ok); done {
						return err
					}
					continue
				default:
				}
				break
			}
			if hp == nil {
				return errors.New("not healthy yet")
			}
			// Wait for the probe's time here rather than in awaitReady,
			// whose backoff would delay it; a verdict may come meanwhile.
			for d := time.Until(next); d > 0; d = time.Until(next) {
				t := time.NewTimer(d)
				select {
				case h, ok := <-ch:
					t.Stop()
					if done, err := verdict(h, ok); done {
						return err
					}
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
			}
			pctx, cancel := context.WithTimeout(ctx, s.hc.Timeout)
			defer cancel()
			err := hp.ProbeHealth(pctx)
			next, pace = time.Now().Add(pace), min(2*pace, probePace)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			return nil
		}
	}
	if ex, ok := inst.(Execer); ok && s.hc != nil {
		return func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, s.hc.Timeout)
			defer cancel()
			code, out, err := ex.Exec(pctx, s.hc.Test.Argv())
			if err != nil {
				return err
			}
			if code != 0 {
				return fmt.Errorf("healthcheck: exit code %d: %s", code, out)
			}
			return nil
		}
	}
	targets := slices.Sorted(func(yield func(uint16) bool) {
		for t := range ports {
			if !yield(t) {
				return
			}
		}
	})
	pp, _ := inst.(PortProber)
	return func(ctx context.Context) error {
		for _, t := range targets {
			if pp != nil {
				if err := pp.ProbePort(ctx, t, ports[t]); err != nil {
					return err
				}
				continue
			}
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[t]))))
			if err != nil {
				return fmt.Errorf("port %d (for %d): %w", ports[t], t, err)
			}
			c.Close()
		}
		return nil
	}
}

// restartInPlace is Replace for a service that cannot run twice at once.
func (r *Runner) restartInPlace(ctx context.Context, s *service, o ReplaceOptions, res Reload) (Reload, error) {
	// Only s: Replace sees to its dependents itself.
	err := r.stopOrdered(ctx, []*service{s}, false, StopOptions{})
	if err == nil {
		err = r.Up(ctx, []string{s.spec.Name})
	}
	if err != nil {
		return res, r.reloadFailed(s, err)
	}
	res.Took = time.Since(o.Seen)
	st, _ := r.snapshot(s)
	r.reloaded(s, res, st.ID, o.Cause)
	return res, nil
}

// startAgain is Replace for a service that is not running: it starts,
// built again when asked (a fix after a failed build).
func (r *Runner) startAgain(ctx context.Context, s *service, o ReplaceOptions, st ServiceStatus) (Reload, error) {
	if st.State == StateStopping || st.State == StateStopped {
		return Reload{}, fmt.Errorf("service %q is %s; `devstack start %s` starts it", s.spec.Name, st.State, s.spec.Name)
	}
	r.mu.Lock()
	if o.Rebuild {
		s.built, s.synced = false, nil
	}
	r.mu.Unlock()
	// A loop still waiting to restart it takes the new build at its next
	// start; one that ended is launched again.
	r.launch(s)
	if err := r.waitReady(ctx, s); err != nil {
		return Reload{}, r.reloadFailed(s, err)
	}
	res := Reload{Took: time.Since(o.Seen)}
	st, _ = r.snapshot(s)
	r.reloaded(s, res, st.ID, o.Cause)
	return res, nil
}

// setIntent changes why s's status changes, and says so on the stream of
// changes (OnStatus).
func (r *Runner) setIntent(s *service, in Intent, cause string) {
	r.update(s, func(*ServiceStatus) { s.intent, s.cause = in, cause })
}

// reloadFailed records and reports a failed reload.
func (r *Runner) reloadFailed(s *service, err error) error {
	err = fmt.Errorf("reload of %q failed, the running instance keeps serving: %w", s.spec.Name, err)
	r.update(s, func(st *ServiceStatus) { st.ReloadError = err.Error() })
	r.event(s.spec.Name, "%v", err)
	return err
}

// reloaded records and reports a reload that went through.
func (r *Runner) reloaded(s *service, res Reload, id, cause string) {
	r.mu.Lock()
	s.reload.add(res.Took)
	p50 := s.reload.p50()
	r.mu.Unlock()
	r.update(s, func(st *ServiceStatus) {
		st.Reloads++
		st.ReloadP50, st.ReloadError = p50, ""
	})
	how := "started beside the old one, proxy switched"
	if !res.Beside {
		how = "restarted in place"
	}
	build := ""
	if res.Build > 0 {
		build = fmt.Sprintf(", build %s", res.Build.Round(time.Millisecond))
	}
	if cause != "" {
		cause = " (" + cause + ")"
	}
	r.event(s.spec.Name, "reloaded in %s%s%s: %s %s is answering, %s", res.Took.Round(time.Millisecond), build, cause, s.backend.Name(), id, how)
}

// reloadStats keeps a service's last reload times for their median.
type reloadStats struct{ last []time.Duration }

const reloadWindow = 64

func (rs *reloadStats) add(d time.Duration) {
	if len(rs.last) == reloadWindow {
		rs.last = rs.last[1:]
	}
	rs.last = append(rs.last, d)
}

func (rs *reloadStats) p50() time.Duration {
	if len(rs.last) == 0 {
		return 0
	}
	s := slices.Clone(rs.last)
	slices.Sort(s)
	return s[len(s)/2]
}
