package docker

import (
	"slices"
	"testing"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

func TestReplaceAddrsMatchesWholePortsOnly(t *testing.T) {
	rp := map[string]string{"localhost:18082": "orders:8080", "127.0.0.1:18082": "orders:8080",
		"localhost:18083": "host.docker.internal:18083"}
	cases := map[string]string{
		"http://localhost:18082/x":                    "http://orders:8080/x",
		"http://127.0.0.1:18082":                      "http://orders:8080",
		"localhost:180821":                            "localhost:180821",
		"localhost:1808":                              "localhost:1808",
		"a=localhost:18082,b=localhost:18083":         "a=orders:8080,b=host.docker.internal:18083",
		"postgres://u:p@localhost:5432/db":            "postgres://u:p@localhost:5432/db",
		"no address here":                             "no address here",
		"http://localhost:18083/?next=localhost:1808": "http://host.docker.internal:18083/?next=localhost:1808",
	}
	for in, want := range cases {
		if got := replaceAddrs(rp, in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// fakeStack places services on backends and gives private ports to the
// ports the proxy fronts.
type fakeStack struct {
	backends map[string]runner.Backend
	private  map[string]uint16 // by service
}

func (s fakeStack) ListenPort(service string, p project.Port) uint16 {
	if pp, ok := s.private[service]; ok {
		return pp
	}
	return p.Declared()
}

func (s fakeStack) Backend(service string) runner.Backend { return s.backends[service] }

type otherBackend struct{ runner.Backend }

// A container calls a process, and a container the proxy fronts, through
// the host (the proxy); a container the proxy does not front, by name on
// the network. It publishes a fronted port on its private port, on
// loopback.
func TestWire(t *testing.T) {
	b := &Backend{}
	p := &project.Project{Name: "w", Services: []*project.Service{
		{Name: "web", Ports: []project.Port{{Published: 18080, Target: 8080, HostIP: "0.0.0.0"}}},
		{Name: "db", Ports: []project.Port{{Published: 15432, Target: 5432}}},
		{Name: "worker", Ports: []project.Port{{Published: 18081, Target: 8081}}},
	}}
	st := fakeStack{
		backends: map[string]runner.Backend{"web": b, "db": b, "worker": otherBackend{}},
		private:  map[string]uint16{"web": 40001, "worker": 40002},
	}
	spec := b.Wire(runner.Spec{Project: p, Service: p.Services[0], Env: []string{
		"DB=postgres://localhost:15432/x", "WORKER=http://127.0.0.1:18081", "SELF=localhost:18080", "DEVSTACK_SERVICE=localhost:15432",
	}}, st)
	want := []string{"DB=postgres://db:5432/x", "WORKER=http://host.docker.internal:18081", "SELF=host.docker.internal:18080", "DEVSTACK_SERVICE=localhost:15432"}
	if !slices.Equal(spec.Env, want) {
		t.Errorf("env = %q\nwant %q", spec.Env, want)
	}
	if got := spec.Service.Ports[0]; got.Published != 40001 || got.HostIP != "127.0.0.1" || got.Target != 8080 {
		t.Errorf("web publishes %+v; want 127.0.0.1:40001->8080", got)
	}
	if p.Services[0].Ports[0].Published != 18080 {
		t.Error("Wire changed the project's service")
	}
	if db := b.Wire(runner.Spec{Project: p, Service: p.Services[1]}, st); db.Service != p.Services[1] {
		t.Error("a service the proxy does not front was copied, not passed through")
	}
}
