package docker

import (
	"strconv"

	"github.com/devstack/devstack/runner"
)

var _ runner.Reacher = (*Backend)(nil)

// Reach implements runner.Reacher: how a container reaches a port of a
// service. One file serves both backends: a file that has services call
// each other at localhost:<published port>, which is right for
// processes, means that port, where a container's localhost is itself.
//
//	localhost:18082 (a process, or a container behind the proxy) → host.docker.internal:18082
//	localhost:18082 (a container the proxy does not front)       → orders:<target port>
//
// Through host.docker.internal the call reaches the proxy (which also
// listens on the host's bridge address), so a container's calls are hops
// that are traced like any other. A container calls a service this
// backend runs by name (orders:8080) as it is: it is on the container's
// networks, under its name, behind its ambassador when it has one.
func (b *Backend) Reach(p runner.PeerPort) (addr string, written []string, ok bool) {
	target, declared := strconv.Itoa(int(p.Target)), strconv.Itoa(int(p.Declared))
	onNetwork := p.Backend == runner.Backend(b)
	if onNetwork && !p.Published {
		return p.Service + ":" + target, nil, true // no address on the host
	}
	addr = "host.docker.internal:" + declared
	if onNetwork && !p.Proxied {
		addr = p.Service + ":" + target
	}
	return addr, []string{"localhost:" + declared, "127.0.0.1:" + declared}, true
}
