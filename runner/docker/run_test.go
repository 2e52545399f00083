package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// healthy is a healthcheck the scratch image can run on itself.
const healthy = `
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://localhost:8080/healthz"]
      interval: 200ms
      timeout: 2s
      retries: 50`

// Services must reach each other by service name and by alias, on the
// default network and on declared ones, exactly as under Compose; ports
// are published on 127.0.0.1 and reachable from the host over loopback.
func TestNetworksAndPorts(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment:
      NAME: b
    ports: ["8080"]
    networks:
      default:
      back:
        aliases: [db-alias]`+healthy+`
  a:
    image: {{IMAGE}}
    command: ["fetch", "http://b:8080/", "http://db-alias:8080/"]
    networks: [back]
networks:
  back: {}
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bl := &logs{}
	b := s.start(ctx, "b", bl)
	if err := waitHealth(ctx, b, "healthy"); err != nil {
		t.Fatalf("b: %v\n%s", err, bl)
	}
	if err := bl.waitFor(ctx, "out b listening on :8080"); err != nil {
		t.Error(err)
	}
	if err := bl.waitFor(ctx, "err stderr works"); err != nil {
		t.Error(err) // stderr demultiplexed onto Stderr
	}

	// Published on loopback, on an ephemeral port since none was given.
	ins, err := s.b.cli.ContainerInspect(ctx, b.reps[0].id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bindings := ins.Container.NetworkSettings.Ports[network.MustParsePort("8080/tcp")]
	if len(bindings) == 0 || bindings[0].HostIP.String() != "127.0.0.1" {
		t.Fatalf("port 8080 bindings = %v; want one on 127.0.0.1", bindings)
	}
	body := httpGet(t, ctx, "http://127.0.0.1:"+bindings[0].HostPort+"/")
	if !strings.Contains(body, "hello from b") {
		t.Errorf("GET over loopback = %q", body)
	}

	al := &logs{}
	a := s.start(ctx, "a", al)
	if e := a.Wait(); !e.Success() {
		t.Fatalf("a could not reach b: %s\n%s", e, al)
	}
	if n := strings.Count(al.String(), "hello from b"); n != 2 {
		t.Errorf("a reached b %d times of 2 (by service name and by alias):\n%s", n, al)
	}

	nets, err := s.b.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nets.Items {
		names = append(names, n.Name)
		if n.Labels[composeProject] != s.p.Name || n.Labels[composeNetwork] == "" {
			t.Errorf("network %s lacks compose labels: %v", n.Name, n.Labels)
		}
	}
	slices.Sort(names)
	if want := []string{s.p.Name + "_back", s.p.Name + "_default"}; !slices.Equal(names, want) {
		t.Errorf("networks = %v, want %v", names, want)
	}

	// Stop signals, waits and removes: nothing of b is left.
	if err := b.Stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("stopping b: %v", err)
	}
	if e := b.Wait(); e.Code != 0 {
		t.Errorf("b exit after SIGTERM = %s; want 0 (testsvc exits cleanly on SIGTERM)", e)
	}
	if _, err := s.b.cli.ContainerInspect(ctx, b.reps[0].id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("container of b still there after Stop: %v", err)
	}
	if _, ok := <-b.Health(); ok {
		t.Error("health channel not closed after exit")
	}
}

// Containers must carry devstack's and Compose's labels, restart policy
// "no", the host gateway, and Down must remove whatever a killed devstack
// left behind: containers, networks and, when asked, named volumes.
func TestDownRemovesLeftovers(t *testing.T) {
	s := newStack(t, `
services:
  web:
    image: {{IMAGE}}
    restart: always
    volumes:
      - data:/data
      - /anon
    tmpfs: [/scratch]
    stop_signal: SIGINT
  worker:
    image: {{IMAGE}}
    networks: [back]
networks:
  back: {}
volumes:
  data: {}
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Started and never stopped: as if devstack had been SIGKILLed.
	web, err := s.b.Start(ctx, specFor(s.p, "web", &logs{}))
	if err != nil {
		t.Fatal(err)
	}
	worker, err := s.b.Start(ctx, specFor(s.p, "worker", &logs{}))
	if err != nil {
		t.Fatal(err)
	}
	w := web.(*Instance)
	ins, err := s.b.cli.ContainerInspect(ctx, w.reps[0].id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ins.Container
	if c.Name != "/"+s.p.Name+"-web-1" {
		t.Errorf("container name = %s, want %s-web-1", c.Name, s.p.Name)
	}
	for k, want := range map[string]string{
		LabelProject: s.p.Name, LabelService: "web",
		composeProject: s.p.Name, composeService: "web", composeNumber: "1", composeOneoff: "False",
		composeConfigHash: c.Config.Labels[LabelConfigHash],
	} {
		if got := c.Config.Labels[k]; got != want || got == "" {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if c.HostConfig.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart policy = %q; the runner restarts, the engine must not", c.HostConfig.RestartPolicy.Name)
	}
	if !slices.Contains(c.HostConfig.ExtraHosts, hostGateway) {
		t.Errorf("extra hosts %v lack %s", c.HostConfig.ExtraHosts, hostGateway)
	}
	if c.Config.StopSignal != "SIGINT" {
		t.Errorf("stop signal = %q", c.Config.StopSignal)
	}
	if _, ok := c.HostConfig.Tmpfs["/scratch"]; !ok {
		t.Errorf("tmpfs = %v", c.HostConfig.Tmpfs)
	}
	vols, err := s.b.cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols.Items) != 1 || vols.Items[0].Name != s.p.Name+"_data" || vols.Items[0].Labels[composeVolume] != "data" {
		t.Errorf("named volumes = %+v; want %s_data with compose labels", vols.Items, s.p.Name)
	}

	// A new backend, as a new devstack process would have.
	b2, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.Down(ctx, s.p.Name, true); err != nil {
		t.Fatalf("down: %v", err)
	}
	f := make(client.Filters).Add("label", LabelProject+"="+s.p.Name)
	cs, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil || len(cs.Items) != 0 {
		t.Errorf("containers left after down: %d (%v)", len(cs.Items), err)
	}
	ns, err := s.b.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil || len(ns.Items) != 0 {
		t.Errorf("networks left after down: %d (%v)", len(ns.Items), err)
	}
	vs, err := s.b.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil || len(vs.Items) != 0 {
		t.Errorf("volumes left after down: %d (%v)", len(vs.Items), err)
	}
	// The instances see their containers go.
	for _, inst := range []*Instance{w, worker.(*Instance)} {
		done := make(chan struct{})
		go func() { inst.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("Wait did not return after down removed %s", inst.ID())
		}
	}
}

// A second Start with the same configuration must adopt the running
// container; a changed environment must recreate it; a stopped container
// is replaced.
func TestReattachAndRecreate(t *testing.T) {
	const yaml = `
services:
  web:
    image: {{IMAGE}}
    environment:
      FOO: %s
`
	s := newStack(t, fmt.Sprintf(yaml, "one"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	first := s.start(ctx, "web", &logs{})

	// specFor gives a new DEVSTACK_INSTANCE, as a new run of devstack does;
	// that alone must not recreate.
	l := &logs{}
	again := s.start(ctx, "web", l)
	if !again.Adopted() || again.ID() != first.ID() {
		t.Fatalf("second start with the same config: adopted=%v id %s vs %s; want the running container adopted\n%s", again.Adopted(), again.ID(), first.ID(), l)
	}

	s.p = s.load(s.p.Name, fmt.Sprintf(yaml, "two"))
	l = &logs{}
	changed := s.start(ctx, "web", l)
	if changed.Adopted() || changed.ID() == first.ID() {
		t.Fatalf("start with changed env adopted %s; want it recreated\n%s", changed.ID(), l)
	}
	if !strings.Contains(l.String(), "recreating container "+s.p.Name+"-web-1: its configuration changed") {
		t.Errorf("no recreate message:\n%s", l)
	}
	// The old container was removed, so the old instances ended.
	first.Wait()
	again.Wait()
	ins, err := s.b.cli.ContainerInspect(ctx, changed.reps[0].id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ins.Container.Config.Env, "FOO=two") {
		t.Errorf("recreated container env = %v", ins.Container.Config.Env)
	}

	// Exited, same config: replaced, not adopted.
	if _, err := s.b.cli.ContainerStop(ctx, changed.reps[0].id, client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	changed.Wait()
	l = &logs{}
	restarted := s.start(ctx, "web", l)
	if restarted.Adopted() || !strings.Contains(l.String(), "it is exited") {
		t.Errorf("exited container was not replaced (adopted=%v):\n%s", restarted.Adopted(), l)
	}
}

// scale: 2 must run two containers, -1 and -2, under one Instance: both
// reachable, Wait returning when both have exited, Stop stopping both. A
// fixed host port cannot be shared by replicas.
func TestScale(t *testing.T) {
	s := newStack(t, `
services:
  web:
    image: {{IMAGE}}
    scale: 2
    environment:
      NAME: web
    ports: ["8080"]`+healthy+`
  fixed:
    image: {{IMAGE}}
    deploy:
      replicas: 2
    ports: ["18080:8080"]
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l := &logs{}
	web := s.start(ctx, "web", l)
	if got, want := web.Containers(), []string{s.p.Name + "-web-1", s.p.Name + "-web-2"}; !slices.Equal(got, want) {
		t.Fatalf("containers = %v, want %v", got, want)
	}
	if err := waitHealth(ctx, web, "healthy"); err != nil {
		t.Fatalf("web: %v\n%s", err, l)
	}
	for _, r := range web.reps {
		ins, err := s.b.cli.ContainerInspect(ctx, r.id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		port := ins.Container.NetworkSettings.Ports[network.MustParsePort("8080/tcp")][0].HostPort
		if body := httpGet(t, ctx, "http://127.0.0.1:"+port+"/"); !strings.Contains(body, "hello from web") {
			t.Errorf("replica %d answered %q", r.num, body)
		}
	}
	for _, want := range []string{"[1] web listening", "[2] web listening"} {
		if err := l.waitFor(ctx, want); err != nil {
			t.Error(err)
		}
	}
	if err := web.Stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	web.Wait()
	cs, err := s.b.serviceContainers(ctx, s.p.Name, "web")
	if err != nil || len(cs) != 0 {
		t.Errorf("containers left after Stop: %v (%v)", cs, err)
	}

	_, err = s.b.Start(ctx, specFor(s.p, "fixed", &logs{}))
	if err == nil || !strings.Contains(err.Error(), "2 replicas") || !strings.Contains(err.Error(), "18080") {
		t.Errorf("starting 2 replicas on host port 18080: error = %v; want one that names the replicas and the port", err)
	}
}

func httpGet(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
