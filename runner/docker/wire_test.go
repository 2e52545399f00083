package docker

import (
	"testing"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

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

// A container publishes a fronted port on its private port, on loopback
// (how it reaches the others is Reach's: reach_test.go).
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
	spec := b.Wire(runner.Spec{Project: p, Service: p.Services[0]}, st)
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
