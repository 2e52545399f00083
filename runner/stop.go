package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopProgressEvery is how often a stop that is still waiting says so.
const stopProgressEvery = 2 * time.Second

// StopOptions tune one stop of services: Stop, Restart and Down take them.
// The zero value stops each service as its file says.
type StopOptions struct {
	// Grace, when not nil, replaces every stopped service's
	// stop_grace_period for this stop only: how long after its stop_signal
	// it is killed with SIGKILL. 0 kills right after the signal. This is
	// docker compose's stop/restart/down -t. Nil: each service's own
	// stop_grace_period (default 10s).
	Grace *time.Duration
}

// grace is the grace s gets from a stop with o. A negative Grace is 0:
// the engine would read it as no limit at all.
func (o StopOptions) grace(s *service) time.Duration {
	if o.Grace != nil {
		return max(*o.Grace, 0)
	}
	return s.grace
}

// Stop stops the named services (all when none), dependents before the
// services they depend on. Each gets its stop_signal, then SIGKILL after
// stop_grace_period (or o.Grace); cancelling ctx kills at once. Stopped
// services are not restarted by their policy.
func (r *Runner) Stop(ctx context.Context, names []string, o StopOptions) error {
	sel, err := r.lookup(names)
	if err != nil {
		return err
	}
	return r.stopOrdered(ctx, sel, false, o)
}

// Release stops supervising without stopping anything: no instance that
// ends from now on is restarted. The supervisor calls it when it exits
// and leaves its containers to the next one (a handover).
func (r *Runner) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.svcs {
		s.stopReq = true
	}
}

// Down stops every service in reverse dependency order. A service's
// dependencies are stopped as soon as it has ended: what it leaves (a
// container) is removed meanwhile (see Halter), and Down returns once
// all of it is gone.
func (r *Runner) Down(ctx context.Context, o StopOptions) error {
	r.mu.Lock()
	r.bgCancel() // under mu: no bg.Add after this
	r.mu.Unlock()
	r.bg.Wait()
	sel, _ := r.lookup(nil)
	return r.stopOrdered(ctx, sel, true, o)
}

// stopOrdered stops sel in reverse dependency order: a service stops once
// every selected service that depends on it has stopped (with early, once
// it has ended; its removal goes on beside the next stops). Independent
// services stop in parallel.
func (r *Runner) stopOrdered(ctx context.Context, sel []*service, early bool, o StopOptions) error {
	done := map[string]chan struct{}{}
	for _, s := range sel {
		done[s.spec.Name] = make(chan struct{})
	}
	// dependents[x] = selected services that depend on x.
	dependents := map[string][]string{}
	for _, s := range sel {
		for _, d := range s.spec.DependsOn {
			if _, ok := done[d.Service]; ok {
				dependents[d.Service] = append(dependents[d.Service], s.spec.Name)
			}
		}
	}
	var (
		wg, rest sync.WaitGroup // the stops in order; what goes on beside them
		mu       sync.Mutex
		errs     []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	stopCtx, cancelProgress := context.WithCancel(ctx)
	defer cancelProgress()
	go r.reportStopping(stopCtx, sel)
	for _, s := range sel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[s.spec.Name])
			for _, dep := range dependents[s.spec.Name] {
				<-done[dep]
			}
			var finish func() error
			if early {
				finish = r.haltOne(ctx, s, o)
			}
			if finish != nil {
				rest.Go(func() {
					if err := finish(); err != nil {
						fail(err)
					}
				})
				return
			}
			if err := r.stopOne(ctx, s, o); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	if early {
		r.quit()
	}
	rest.Wait()
	return errors.Join(errs...)
}

// quit tells each backend with project-wide helpers that every service
// has ended (see Quitter).
func (r *Runner) quit() {
	done := map[Backend]bool{}
	for _, ps := range r.p.Services {
		b := r.svcs[ps.Name].backend
		if q, ok := b.(Quitter); ok && !done[b] {
			done[b] = true
			q.Quit(r.p.Name)
		}
	}
}

// haltOne ends s's instance when it is a Halter and returns what is left
// to do: remove what the instance left and wait for s's supervise loop.
// It returns nil when s has nothing of the kind: stopOne then stops it.
func (r *Runner) haltOne(ctx context.Context, s *service, o StopOptions) func() error {
	r.mu.Lock()
	h, ok := s.inst.(Halter)
	if !ok || s.loopDone == nil {
		r.mu.Unlock()
		return nil
	}
	s.stopReq, s.stopGrace = true, o.grace(s)
	s.standby = nil // the backend drops it with the instance
	loopDone, cancel, grace := s.loopDone, s.cancel, s.stopGrace
	r.mu.Unlock()
	r.update(s, func(st *ServiceStatus) {
		if st.State == StateRunning {
			st.State = StateStopping
		}
	})
	r.event(s.spec.Name, "stopping: sent %s, SIGKILL after %s", sigName(s.stopSig), graceText(s, grace))
	remove, err := h.Halt(ctx, s.stopSig, grace)
	return func() error {
		if remove != nil {
			err = errors.Join(err, remove(ctx))
		}
		cancel()
		<-loopDone
		if err != nil {
			return fmt.Errorf("stopping service %q: %w", s.spec.Name, err)
		}
		return nil
	}
}

// stopOne stops one service and waits for its supervise loop to end.
func (r *Runner) stopOne(ctx context.Context, s *service, o StopOptions) error {
	r.mu.Lock()
	// A stop that finds no instance yet (one starting) leaves its grace
	// to the supervise loop, which stops the instance once it has one.
	s.stopReq, s.stopGrace = true, o.grace(s)
	s.standby = nil // the backend drops it with the instance
	inst, loopDone, cancel, grace := s.inst, s.loopDone, s.cancel, s.stopGrace
	r.mu.Unlock()
	if loopDone == nil {
		return nil // never started
	}
	if inst != nil {
		r.update(s, func(st *ServiceStatus) {
			if st.State == StateRunning {
				st.State = StateStopping
			}
		})
		r.event(s.spec.Name, "stopping: sent %s, SIGKILL after %s", sigName(s.stopSig), graceText(s, grace))
		if err := inst.Stop(ctx, s.stopSig, grace); err != nil {
			return fmt.Errorf("stopping service %q: %w", s.spec.Name, err)
		}
	}
	// Ends waits on dependencies and restart backoff.
	cancel()
	<-loopDone
	return nil
}

// graceText says how long s gets before SIGKILL in a stop with grace,
// and, when the stop shortened or lengthened it, that its file says
// otherwise: a user who forgot a -t in their history sees why.
func graceText(s *service, grace time.Duration) string {
	if grace == s.grace {
		return grace.String()
	}
	return fmt.Sprintf("%s (this stop's timeout; its stop_grace_period is %s)", grace, s.grace)
}

// reportStopping says, every few seconds, which services a stop still
// waits on, so a slow shutdown never looks like a hang.
func (r *Runner) reportStopping(ctx context.Context, sel []*service) {
	t := time.NewTicker(stopProgressEvery)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var waiting []string
		for _, s := range sel {
			st, _ := r.snapshot(s)
			r.mu.Lock()
			grace := s.stopGrace
			r.mu.Unlock()
			if st.State == StateStopping {
				left := grace - time.Since(start)
				waiting = append(waiting, fmt.Sprintf("%s (%s %s, SIGKILL in %s)", s.spec.Name, s.backend.Name(), st.ID, max(left, 0).Round(time.Second)))
			}
		}
		if len(waiting) > 0 && r.opts.Events != nil {
			slices.Sort(waiting)
			// No "press Ctrl-C": a stop runs in the supervisor, which no
			// key press reaches; the foreground up says it itself.
			r.opts.Events(Event{Msg: "waiting on " + strings.Join(waiting, ", ")})
		}
	}
}

// Start starts stopped services again (and what they depend on), waiting
// until they are ready. A named service that the user runs (external) is
// taken back: devstack runs it from now on. Nothing may listen on a named
// service's private ports, as a run of it outside devstack would.
//
// With no service named, it means the services this runner has started
// (see started), as docker compose's start means the containers it
// created: a service that no up asked for stays as it is, so its ports
// stay the user's.
func (r *Runner) Start(ctx context.Context, names []string) error {
	if len(names) == 0 {
		if names = r.started(); len(names) == 0 {
			return nil
		}
	}
	if err := r.takeBack(names); err != nil {
		return err
	}
	return r.Up(ctx, names)
}

// Restart stops and starts the named services. Services that depend on one
// of them with `restart: true` are restarted too, as Compose does. With
// no service named, and for those dependents, only services this runner
// has started count (see Start). o tunes the stop, as for Stop.
func (r *Runner) Restart(ctx context.Context, names []string, o StopOptions) error {
	if len(names) == 0 {
		if names = r.started(); len(names) == 0 {
			return nil
		}
	}
	sel, err := r.lookup(names)
	if err != nil {
		return err
	}
	was := r.started()
	all := slices.DeleteFunc(r.withRestartDependents(sel), func(s *service) bool {
		return !slices.Contains(names, s.spec.Name) && !slices.Contains(was, s.spec.Name)
	})
	if err := r.stopOrdered(ctx, all, false, o); err != nil {
		return err
	}
	var ns []string
	for _, s := range all {
		ns = append(ns, s.spec.Name)
	}
	return r.Up(ctx, ns)
}

// withRestartDependents adds, transitively, every service that depends on
// one in sel with restart: true.
func (r *Runner) withRestartDependents(sel []*service) []*service {
	in := map[string]bool{}
	out := slices.Clone(sel)
	for _, s := range sel {
		in[s.spec.Name] = true
	}
	for changed := true; changed; {
		changed = false
		for _, ps := range r.p.Services {
			if in[ps.Name] {
				continue
			}
			for _, d := range ps.DependsOn {
				if d.Restart && in[d.Service] {
					in[ps.Name] = true
					out = append(out, r.svcs[ps.Name])
					changed = true
					break
				}
			}
		}
	}
	return out
}

func sigName(s syscall.Signal) string { return unix.SignalName(s) }

// started names the services this runner has launched at some point, in
// the project's order, whatever their state now.
func (r *Runner) started() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ps := range r.p.Services {
		if r.svcs[ps.Name].loopDone != nil {
			out = append(out, ps.Name)
		}
	}
	return out
}
