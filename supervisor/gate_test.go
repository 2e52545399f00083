package supervisor

import (
	"net/netip"
	"testing"
)

// The gate lets in the project's containers and ambassadors, asks the
// engine once per container (not per connection), and asks again about an
// address it refused.
func TestContainerGate(t *testing.T) {
	svc, amb, other := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("172.17.0.9")
	asked := map[netip.Addr]int{}
	g := newContainerGate(
		func(ip netip.Addr) string {
			asked[ip]++
			if ip == svc {
				return "orders"
			}
			return ""
		},
		func(ip netip.Addr) bool { return ip == amb })
	for range 3 {
		if !g.allows(svc) || !g.allows(amb) {
			t.Fatal("a project container was refused")
		}
		if g.allows(other) {
			t.Fatal("another container was let in")
		}
	}
	if asked[svc] != 1 {
		t.Errorf("the engine was asked %d times about one container; want once", asked[svc])
	}
	if asked[other] != 3 {
		t.Errorf("a refused address was asked about %d times in 3 connections; want each time", asked[other])
	}
}
