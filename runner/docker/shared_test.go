package docker

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
)

// When the runner says which services get an ambassador, one container,
// <project>-ambassador, must answer to all their names and relay each
// call to the proxy with the caller named; a service whose port collides
// with one already served must get a second, <project>-ambassador-2. It
// must stay through the stop of one service and go with Down.
func TestSharedAmbassador(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment: {NAME: b}
    ports: ["8080"]
  c:
    image: {{IMAGE}}
    environment: {NAME: c, PORT: "8081"}
    ports: ["8081"]
  d:
    image: {{IMAGE}}
    environment: {NAME: d}
    ports: ["8080"]
  a:
    image: {{IMAGE}}
    healthcheck:
      test: ["CMD", "/testsvc", "fetch", "http://b:8080/", "http://c:8081/", "http://d:8080/"]
      interval: 300ms
      timeout: 2s
      retries: 50
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l := &logs{}
	bspec, fp := s.frontedSpec(ctx, "b", 8080, l)
	all := map[string]*runner.Ambassador{
		"b": bspec.Ambassador,
		"c": {Relay: map[uint16]string{8081: fp.l.Addr().String()}},
		"d": {Relay: map[uint16]string{8080: fp.l.Addr().String()}},
	}
	start := func(name string) *Instance {
		t.Helper()
		spec := specFor(s.p, name, l)
		spec.Ambassador, spec.Ambassadors = all[name], all
		inst, err := s.b.Start(ctx, spec)
		if err != nil {
			t.Fatalf("starting %s: %v\n%s", name, err, l)
		}
		di := inst.(*Instance)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = di.Stop(ctx, syscall.SIGKILL, 0)
		})
		return di
	}
	b, c, d := start("b"), start("c"), start("d")
	for _, i := range []*Instance{b, c, d} {
		if !i.shared || i.ambassador() != nil {
			t.Errorf("%s: shared %v, own ambassador %v; want the project's", i.spec.Service.Name, i.shared, i.ambassador())
		}
	}
	netName := s.p.Name + "_default"
	aliases := func(name string) []string {
		t.Helper()
		res, err := s.b.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("inspecting %s: %v", name, err)
		}
		return res.Container.NetworkSettings.Networks[netName].Aliases
	}
	if al := aliases(s.p.Name + "-ambassador"); !slices.Contains(al, "b") || !slices.Contains(al, "c") || slices.Contains(al, "d") {
		t.Errorf("%s-ambassador has aliases %v; want b and c (d's port collides with b's)", s.p.Name, al)
	}
	if al := aliases(s.p.Name + "-ambassador-2"); !slices.Contains(al, "d") {
		t.Errorf("%s-ambassador-2 has aliases %v; want d", s.p.Name, al)
	}
	if al := aliases(b.reps[0].id); slices.Contains(al, "b") || !slices.Contains(al, realAlias("b")) {
		t.Errorf("b's own container has aliases %v; want %s and not b", al, realAlias("b"))
	}
	if n, err := s.b.Containers(ctx, s.p.Name); err != nil || n != 5 {
		t.Errorf("the project has %d containers (%v); want 5: b, c, d and two ambassadors", n, err)
	}

	// a calls all three by name: three PROXY lines, each naming a.
	a := s.start(ctx, "a", &logs{})
	if err := waitHealth(ctx, a, runner.HealthHealthy); err != nil {
		t.Fatalf("a never reached b, c and d by name: %v\n%s", err, l)
	}
	for range 3 {
		select {
		case line := <-fp.lines:
			if f := strings.Fields(line); len(f) != 6 || f[0] != "PROXY" {
				t.Errorf("PROXY line = %q", line)
			}
		case <-ctx.Done():
			t.Fatal("the fake proxy got fewer than three connections")
		}
	}

	// Stopping one service leaves the others' ambassador.
	if err := b.Stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.cli.ContainerInspect(ctx, s.p.Name+"-ambassador", client.ContainerInspectOptions{}); err != nil {
		t.Errorf("the project's ambassador is gone after stopping b: %v", err)
	}
	if err := s.b.Down(ctx, s.p.Name, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"-ambassador", "-ambassador-2"} {
		if _, err := s.b.cli.ContainerInspect(ctx, s.p.Name+n, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s%s is still there after Down: %v", s.p.Name, n, err)
		}
	}
}
