package supervisor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/logstore"
)

// takeOverTimeout bounds the engine calls of a takeover that a later up
// starts (the runner's Hold has no context of its own).
const takeOverTimeout = time.Minute

// hold is runner.Options.Hold: before the runner starts services, what
// docker compose runs for them is cleared (once per service) and their
// ports are bound.
func (s *Supervisor) hold(services []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), takeOverTimeout)
	defer cancel()
	if err := s.takeOver(ctx, services); err != nil {
		return err
	}
	return s.ports.hold(services)
}

// takeOver runs Options.TakeOver for the services not taken over yet.
func (s *Supervisor) takeOver(ctx context.Context, services []string) error {
	if s.opts.TakeOver == nil {
		return nil
	}
	s.takenMu.Lock()
	defer s.takenMu.Unlock()
	var fresh []string
	for _, name := range services {
		if !s.taken[name] {
			fresh = append(fresh, name)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	err := s.opts.TakeOver(ctx, fresh, func(service, msg string) {
		fmt.Fprintln(s.logs.Writer(service, logstore.System), msg)
		// Not a service event: those reach a foreground up through the
		// log, which it follows only once Start returns.
		s.emit(runner.Event{Msg: service + ": " + msg})
	})
	if err != nil {
		return err
	}
	if s.taken == nil {
		s.taken = map[string]bool{}
	}
	for _, name := range fresh {
		s.taken[name] = true
	}
	return nil
}

// routesOf are the routes of services.
func (t *portTable) routesOf(services []string) []proxy.Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []proxy.Route
	for _, r := range t.routes {
		if slices.Contains(services, r.Service) {
			out = append(out, r)
		}
	}
	return out
}

// heldOf is the routes of held services among routes.
func (t *portTable) heldOf(routes []proxy.Route) []proxy.Route {
	var out []proxy.Route
	for _, r := range routes {
		if t.held[r.Service] {
			out = append(out, r)
		}
	}
	return out
}

// hold has the proxy listen on the routes of services too (runner
// Options.Hold): a port is checked and bound when a service that
// declares it is started, not before. The error names every taken one.
func (t *portTable) hold(services []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var fresh []proxy.Route
	for _, r := range t.routes {
		if slices.Contains(services, r.Service) && !t.held[r.Service] {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := checkRoutes(fresh); err != nil {
		return err
	}
	was := maps.Clone(t.held)
	for _, r := range fresh {
		t.held[r.Service] = true
	}
	if t.proxy == nil {
		return nil
	}
	if err := t.proxy.SetRoutes(t.heldOf(t.routes)); err != nil {
		t.held = was
		return err
	}
	return nil
}
