package docker

import (
	"slices"
	"testing"

	"github.com/devstack/devstack/runner"
)

// A container reaches a process, or a container behind the proxy, at
// host.docker.internal and the declared port, and a container the proxy
// does not front by name; localhost:<declared> in its environment means
// that address.
func TestReachFromAContainer(t *testing.T) {
	b := &Backend{}
	cases := []struct {
		name    string
		p       runner.PeerPort
		addr    string
		written []string
	}{
		{"process", runner.PeerPort{Service: "inventory", Target: 8081, Declared: 18081, Published: true, Proxied: true, Backend: otherBackend{}},
			"host.docker.internal:18081", []string{"localhost:18081", "127.0.0.1:18081"}},
		{"proxied container", runner.PeerPort{Service: "orders", Target: 8080, Declared: 18082, Published: true, Proxied: true, Backend: b},
			"host.docker.internal:18082", []string{"localhost:18082", "127.0.0.1:18082"}},
		{"container not proxied", runner.PeerPort{Service: "orders", Target: 8080, Declared: 18082, Published: true, Backend: b},
			"orders:8080", []string{"localhost:18082", "127.0.0.1:18082"}},
		{"container without a host port", runner.PeerPort{Service: "search", Target: 9200, Declared: 9200, Backend: b},
			"search:9200", nil},
	}
	for _, c := range cases {
		addr, written, ok := b.Reach(c.p)
		if !ok || addr != c.addr || !slices.Equal(written, c.written) {
			t.Errorf("%s: Reach = %q, %q, %v; want %q, %q, true", c.name, addr, written, ok, c.addr, c.written)
		}
	}
}
