package docker

import (
	"slices"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// Wire adapts a spec the runner built as for a process on the host to a
// container (runner.Networked): the container publishes each port the
// proxy fronts on the private port, on loopback, instead of the declared
// one (see remapped). Its environment names other services by addresses
// that reach them from inside: the runner rewrote them already, as Reach
// (reach.go) says.
func (b *Backend) Wire(spec runner.Spec, st runner.Stack) runner.Spec {
	spec.Service = remapped(spec.Service, st)
	return spec
}

// Lasting reports that containers outlive the supervisor that started
// them (runner.Lasting): the engine runs them.
func (b *Backend) Lasting() bool { return true }

// remapped returns the service as the container must publish it: when the
// proxy owns a declared port, on the private port instead, on loopback.
func remapped(ps *project.Service, st runner.Stack) *project.Service {
	var ports []project.Port
	for i, p := range ps.Ports {
		lp := st.ListenPort(ps.Name, p)
		if lp == p.Declared() {
			continue
		}
		if ports == nil {
			ports = slices.Clone(ps.Ports)
		}
		ports[i].Published, ports[i].HostIP = lp, "127.0.0.1"
	}
	if ports == nil {
		return ps
	}
	c := *ps
	c.Ports = ports
	return &c
}

// What the runner and the supervisor ask of a container backend.
var (
	_ runner.Networked = (*Backend)(nil)
	_ runner.Lasting   = (*Backend)(nil)
)
