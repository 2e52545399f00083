package supervisor

import (
	"net/netip"
	"sync"
	"time"
)

// containerGate decides which non-loopback addresses the proxy serves:
// those of the project's containers (a service's, or an ambassador's),
// which the engine knows. A yes is remembered for a while, so that a
// container's connections cost one question to the engine, not one each;
// a no is asked again (a container just started).
type containerGate struct {
	service func(netip.Addr) string // the service of a project container, or ""
	relayer func(netip.Addr) bool   // an ambassador of the project

	mu  sync.Mutex
	yes map[netip.Addr]time.Time // until when the answer holds
}

// gateMemory is how long a yes is remembered: a container stopped within
// it and its address given to another's container is let in until then.
const gateMemory = 10 * time.Second

func newContainerGate(service func(netip.Addr) string, relayer func(netip.Addr) bool) *containerGate {
	return &containerGate{service: service, relayer: relayer, yes: map[netip.Addr]time.Time{}}
}

func (g *containerGate) allows(ip netip.Addr) bool {
	now := time.Now()
	g.mu.Lock()
	until, ok := g.yes[ip]
	g.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
	allowed := g.service != nil && g.service(ip) != "" || g.relayer != nil && g.relayer(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	if allowed {
		if len(g.yes) > 4096 {
			clear(g.yes) // bounded: addresses come from clients
		}
		g.yes[ip] = now.Add(gateMemory)
	} else {
		delete(g.yes, ip)
	}
	return allowed
}
