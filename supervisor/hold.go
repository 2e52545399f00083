package supervisor

import (
	"maps"
	"slices"

	"github.com/devstack/devstack/proxy"
)

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
