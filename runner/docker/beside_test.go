package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

func loopbackPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// publishedOn is svc publishing its ports on the given host ports, in
// order, as Wire publishes a replacement's fresh private ports.
func publishedOn(svc *project.Service, ports ...uint16) *project.Service {
	c := *svc
	c.Ports = slices.Clone(svc.Ports)
	for i := range c.Ports {
		c.Ports[i].Published = ports[i]
	}
	return &c
}

// names lists the service's replica containers (not its ambassador) by
// name.
func (s *stack) names(ctx context.Context, svc string) []string {
	s.t.Helper()
	res, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name, LabelService+"="+svc)})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, c := range res.Items {
		if c.Labels[LabelRole] == "" {
			out = append(out, firstName(c.Names))
		}
	}
	slices.Sort(out)
	return out
}

func answer(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A replacement container starts beside the running one (its own name,
// its own published port, the same labels), answers once ProbePort says
// its port does, takes the replica's name over at Switched, and stays
// when the old one is stopped. A devstack killed between the two leaves
// both: the next Start keeps the replica's own and removes the other.
func TestStartBesideSwitchedAndLeftovers(t *testing.T) {
	p1, dead1 := loopbackPort(t), loopbackPort(t)
	s := newStack(t, fmt.Sprintf(`services:
  web:
    image: {{IMAGE}}
    environment: {NAME: web}
    ports: ["127.0.0.1:%d:8080", "127.0.0.1:%d:9999"]
`, p1, dead1))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	first := s.start(ctx, "web", &logs{})
	canonical := s.p.Name + "-web-1"

	p2, dead2 := loopbackPort(t), loopbackPort(t)
	spec := specFor(s.p, "web", &logs{})
	spec.Service = publishedOn(spec.Service, p2, dead2)
	ni, err := s.b.StartBeside(ctx, spec, first)
	if err != nil {
		t.Fatal(err)
	}
	next := ni.(*Instance)
	t.Cleanup(func() { _ = next.Stop(context.Background(), 9, 0) })
	if got := s.names(ctx, "web"); len(got) != 2 || got[0] != canonical || !strings.HasPrefix(got[1], canonical+"-next-") {
		t.Fatalf("containers while both run: %v; want %s and a -next- one", got, canonical)
	}
	// Ready once its port answers; a published port with nothing behind
	// it never does, though the engine accepts connections on it.
	deadline := time.Now().Add(30 * time.Second)
	for next.ProbePort(ctx, 8080, p2) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("port 8080 of the new container never answered: %v", next.ProbePort(ctx, 8080, p2))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := next.ProbePort(ctx, 9999, dead2); err == nil {
		t.Fatal("ProbePort said port 9999 answers; nothing listens on it in the container")
	}
	for _, port := range []uint16{p1, p2} {
		if got, err := answer(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || !strings.HasPrefix(got, "hello from web") {
			t.Fatalf("port %d while both run: %q, %v", port, got, err)
		}
	}

	s.b.Switched(ctx, first, next)
	if got := s.names(ctx, "web"); len(got) != 2 || got[0] != canonical || got[1] != canonical+"-old-"+shortID(first.reps[0].id) {
		t.Fatalf("containers after the switch: %v", got)
	}
	if err := first.Stop(ctx, 15, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := s.names(ctx, "web"); !slices.Equal(got, []string{canonical}) {
		t.Fatalf("containers after the old one stopped: %v", got)
	}
	if got, err := answer(fmt.Sprintf("http://127.0.0.1:%d/", p2)); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Fatalf("the new container after the old one stopped: %q, %v", got, err)
	}

	// Killed mid-reload: a -next- container is left beside the replica.
	p3, dead3 := loopbackPort(t), loopbackPort(t)
	spec3 := specFor(s.p, "web", &logs{})
	spec3.Service = publishedOn(spec3.Service, p3, dead3)
	left, err := s.b.StartBeside(ctx, spec3, next)
	if err != nil {
		t.Fatal(err)
	}
	left.(*Instance).cancel() // forgotten, as by a killed devstack
	l := &logs{}
	spec.Marker, spec.Stdout, spec.Stderr, spec.Status = "again", l.writer("out"), l.writer("err"), l.writer("sys")
	again, err := s.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !again.(*Instance).Adopted() || again.ID() != next.ID() {
		t.Fatalf("Start after a killed reload: adopted %v, %s; want the replica %s adopted\n%s", again.(*Instance).Adopted(), again.ID(), next.ID(), l)
	}
	if got := s.names(ctx, "web"); !slices.Equal(got, []string{canonical}) {
		t.Fatalf("containers after a Start: %v; want the leftover gone\n%s", got, l)
	}
}

// A service that cannot run twice at once says so, and nothing is made.
func TestStartBesideRefusesFixedContainerName(t *testing.T) {
	s := newStack(t, "services:\n  web:\n    image: {{IMAGE}}\n    container_name: dst-fixed-"+randHex(3)+"\n")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	first := s.start(ctx, "web", &logs{})
	_, err := s.b.StartBeside(ctx, specFor(s.p, "web", &logs{}), first)
	if !errors.Is(err, runner.ErrNotBeside) || !strings.Contains(err.Error(), "container_name") {
		t.Fatalf("StartBeside with container_name: %v; want ErrNotBeside naming container_name", err)
	}
	res, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name)})
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("containers after a refused StartBeside: %d, %v", len(res.Items), err)
	}
}

// ProbeHealth runs the service's healthcheck in the container now, as the
// engine would: a replacement need not wait for the engine's first
// verdict, a whole interval after its start on older engines.
func TestProbeHealthRunsTheHealthcheckNow(t *testing.T) {
	s := newStack(t, `services:
  web:
    image: {{IMAGE}}
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://localhost:8080/healthz"]
      interval: 1h
  broken:
    image: {{IMAGE}}
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://localhost:9/healthz"]
      interval: 1h
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	web := s.start(ctx, "web", &logs{})
	deadline := time.Now().Add(30 * time.Second)
	for err := web.ProbeHealth(ctx); err != nil; err = web.ProbeHealth(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("web's healthcheck never passed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	broken := s.start(ctx, "broken", &logs{})
	if err := broken.ProbeHealth(ctx); err == nil || !strings.Contains(err.Error(), "exit code 1") {
		t.Fatalf("a failing healthcheck: %v; want its exit code", err)
	}
}

// switchTo is a Rerouter that hands out one fresh port and records the
// switch, as the supervisor's port table does.
type switchTo struct {
	fresh    uint16
	switched map[uint16]uint16
}

func (s *switchTo) FreshPorts(string) (map[uint16]uint16, error) {
	return map[uint16]uint16{8080: s.fresh}, nil
}
func (s *switchTo) Switch(_ string, ports map[uint16]uint16) error { s.switched = ports; return nil }
func (s *switchTo) Drain(context.Context, string, time.Time)       {}

// upBeside brings s up on a runner whose proxy (rr) hands out one fresh
// port for a replacement, with the first instance listening on first; the
// runner goes down at the end of the test.
func upBeside(t *testing.T, s *stack, first uint16) (*runner.Runner, *logs, *switchTo, context.Context) {
	t.Helper()
	l := &logs{}
	rr := &switchTo{fresh: loopbackPort(t)}
	r, err := runner.New(s.p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return s.b, nil },
		Logs:       sink{l}, RunID: randHex(3), Rerouter: rr,
		ListenPort: func(string, project.Port) uint16 { return first },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = r.Down(ctx, runner.StopOptions{})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := r.Up(ctx, nil); err != nil {
		t.Fatalf("up: %v\n%s", err, l)
	}
	return r, l, rr, ctx
}

// The runner reloads a container with a healthcheck beside the running
// one: the replacement is ready once its healthcheck passes, the switch
// goes to its fresh port, and the old container goes.
func TestRunnerReloadsAContainerWithAHealthcheckBesideIt(t *testing.T) {
	first := loopbackPort(t)
	// The declared port is the proxy's (none here): the container
	// publishes ListenPort's.
	s := newStack(t, fmt.Sprintf(`services:
  web:
    image: {{IMAGE}}
    environment: {NAME: web}
    ports: ["127.0.0.1:%d:8080"]`, loopbackPort(t))+healthy+`
`)
	r, l, rr, ctx := upBeside(t, s, first)
	before := status(r, "web").ID
	res, err := r.Replace(ctx, "web", runner.ReplaceOptions{Cause: "test"})
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, l)
	}
	if !res.Beside || rr.switched[8080] != rr.fresh {
		t.Fatalf("reload %+v, switched to %v; want beside, to port %d", res, rr.switched, rr.fresh)
	}
	if got, err := answer(fmt.Sprintf("http://127.0.0.1:%d/healthz", rr.fresh)); err != nil || got != "ok\n" {
		t.Fatalf("the new container on its fresh port: %q, %v", got, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for st := status(r, "web"); st.ID == before || st.State != runner.StateRunning; st = status(r, "web") {
		if time.Now().After(deadline) {
			t.Fatalf("web after the reload: %+v (before: %s)", st, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.names(ctx, "web"); !slices.Equal(got, []string{s.p.Name + "-web-1"}) {
		t.Fatalf("containers after the reload: %v", got)
	}
	if st := status(r, "web"); st.Reloads != 1 || st.Health != runner.HealthHealthy {
		t.Fatalf("web after the reload: %+v", st)
	}
}

// A service the project's shared ambassador answers for keeps it through
// reload after reload: each replacement answers only to its private
// alias, never to the service's names (which would take calls by name
// past the proxy).
func TestStartBesideKeepsTheSharedAmbassadorsNames(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment: {NAME: b}
    ports: ["8080"]
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l := &logs{}
	spec, _ := s.frontedSpec(ctx, "b", 8080, l)
	spec.Ambassadors = map[string]*runner.Ambassador{"b": spec.Ambassador}
	inst, err := s.b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("starting b: %v\n%s", err, l)
	}
	cur := inst.(*Instance)
	t.Cleanup(func() { _ = cur.Stop(context.Background(), syscall.SIGKILL, 0) })
	if !cur.shared {
		t.Fatal("b is not served by the shared ambassador; the test needs it")
	}
	netName := s.p.Name + "_default"
	for i := range 2 {
		ni, err := s.b.StartBeside(ctx, spec, cur)
		if err != nil {
			t.Fatalf("reload %d: %v\n%s", i+1, err, l)
		}
		next := ni.(*Instance)
		res, err := s.b.cli.ContainerInspect(ctx, next.reps[0].id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		al := res.Container.NetworkSettings.Networks[netName].Aliases
		if !next.shared || slices.Contains(al, "b") || !slices.Contains(al, realAlias("b")) {
			t.Fatalf("reload %d: shared %v, aliases %v; want the shared ambassador kept and only %s", i+1, next.shared, al, realAlias("b"))
		}
		s.b.Switched(ctx, cur, next)
		if err := cur.Stop(ctx, syscall.SIGTERM, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	if _, err := s.b.cli.ContainerInspect(ctx, s.p.Name+"-ambassador", client.ContainerInspectOptions{}); err != nil {
		t.Fatalf("the project's ambassador is gone after the reloads: %v", err)
	}
}

// A rebuilt image whose container exits at start: the reload fails
// saying it exited, and the old container keeps serving.
func TestRunnerReloadToAnExitingContainerKeepsTheOldOne(t *testing.T) {
	first := loopbackPort(t)
	s := newStack(t, fmt.Sprintf(`services:
  web:
    build: ./web
    ports: ["127.0.0.1:%d:8080"]`, loopbackPort(t))+healthy+`
`)
	os.MkdirAll(filepath.Join(s.dir, "web"), 0o755)
	dockerfile := func(cmd string) {
		os.WriteFile(filepath.Join(s.dir, "web", "Dockerfile"), []byte("FROM "+testImage+"\nCMD "+cmd+"\n"), 0o644)
	}
	dockerfile(`["serve"]`)
	tag := s.p.Name + "-web"
	var images []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, img := range append(images, tag) {
			_, _ = s.b.cli.ImageRemove(ctx, img, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})
	r, l, rr, ctx := upBeside(t, s, first)
	if img, err := s.b.cli.ImageInspect(ctx, tag); err == nil {
		images = append(images, img.ID)
	}
	before := status(r, "web").ID
	dockerfile(`["exit", "3"]`)
	_, err := r.Replace(ctx, "web", runner.ReplaceOptions{Rebuild: true, Cause: "Dockerfile changed"})
	if err == nil || !strings.Contains(err.Error(), "exited (exit code 3)") || !strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("reload to an exiting container: %v; want it to say it exited with code 3\n%s", err, l)
	}
	if st := status(r, "web"); st.ID != before || st.State != runner.StateRunning || st.ReloadError == "" || rr.switched != nil {
		t.Fatalf("web after the failed reload: %+v (switched %v); want the old container running", st, rr.switched)
	}
	if got, err := answer(fmt.Sprintf("http://127.0.0.1:%d/healthz", first)); err != nil || got != "ok\n" {
		t.Fatalf("the old container after the failed reload: %q, %v", got, err)
	}
	if got := s.names(ctx, "web"); !slices.Equal(got, []string{s.p.Name + "-web-1"}) {
		t.Fatalf("containers after the failed reload: %v; want the old one only", got)
	}
}
