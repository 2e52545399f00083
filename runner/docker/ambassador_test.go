package docker

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/trace"
)

// devstackBuild is the devstack binary the ambassador tests put in the
// image, built once (with cgo when the toolchain has it, so dynamically
// linked) and removed by TestMain.
var devstackBuild struct {
	once      sync.Once
	dir, path string
	err       error
}

func devstackBinary(t *testing.T) string {
	t.Helper()
	devstackBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "devstack-bin")
		if err != nil {
			devstackBuild.err = err
			return
		}
		devstackBuild.dir = dir
		path := filepath.Join(dir, "devstack")
		out, err := exec.Command("go", "build", "-o", path, "../../cmd/devstack").CombinedOutput()
		if err != nil {
			devstackBuild.err = fmt.Errorf("building devstack: %w\n%s", err, out)
			return
		}
		devstackBuild.path = path
	})
	if devstackBuild.err != nil {
		t.Fatal(devstackBuild.err)
	}
	return devstackBuild.path
}

// ambassadorBackend is a backend of its own whose ambassadors run the
// built devstack binary (the test binary has no ambassador command).
func ambassadorBackend(t *testing.T) *Backend {
	t.Helper()
	needEngine(t)
	b, err := New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.ambExe = devstackBinary(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// The image must hold the binary and, for a dynamically linked one, its
// loader and every library it needs, at the paths the loader looks at; a
// binary that cannot run in the engine's containers must be refused as
// unsupported, so that Start goes on without an ambassador.
func TestAmbassadorRootfs(t *testing.T) {
	bin := devstackBinary(t)
	files, err := rootfsFor(bin, "linux", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if files[0].path != ambassadorBin || files[0].src != bin {
		t.Errorf("first file = %+v; want the binary at %s", files[0], ambassadorBin)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	interp, err := interpreter(f)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, rf := range files {
		paths = append(paths, rf.path)
		if fi, err := os.Stat(rf.src); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s comes from %s, which is not a regular file: %v", rf.path, rf.src, err)
		}
	}
	if interp == "" {
		t.Logf("%s is statically linked (no cgo here): nothing but the binary to copy", bin)
		if len(files) != 1 {
			t.Errorf("files of a static binary = %v; want only the binary", paths)
		}
	} else {
		if !slices.Contains(paths, interp) {
			t.Errorf("files %v lack the loader %s", paths, interp)
		}
		needed, _ := f.ImportedLibraries()
		for _, lib := range needed {
			if !slices.ContainsFunc(paths, func(p string) bool { return filepath.Base(p) == lib }) {
				t.Errorf("files %v lack %s, which the binary needs", paths, lib)
			}
		}
		if dirs := libDirs(files); len(dirs) == 0 {
			t.Error("no library directories for LD_LIBRARY_PATH")
		}
	}

	text := filepath.Join(t.TempDir(), "script")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	for _, tt := range []struct{ name, exe, goos, goarch string }{
		{"windows engine", bin, "windows", runtime.GOARCH},
		{"other architecture", bin, "linux", other},
		{"not ELF", text, "linux", runtime.GOARCH},
	} {
		if _, err := rootfsFor(tt.exe, tt.goos, tt.goarch); !errors.Is(err, errAmbassadorUnsupported) {
			t.Errorf("%s: rootfsFor = %v; want errAmbassadorUnsupported", tt.name, err)
		}
	}
}

// The ambassador image must be made once per binary, labelled, and then
// reused, by this backend and by the next one.
func TestAmbassadorImage(t *testing.T) {
	b := ambassadorBackend(t)
	ctx := t.Context()
	ref, id, err := b.ambassadorImage(ctx)
	if err != nil {
		t.Fatalf("making the ambassador image: %v", err)
	}
	sum, _ := fileSum(b.ambExe)
	if want := ambassadorRepo + ":" + sum[:12]; ref != want {
		t.Errorf("image = %s; want %s", ref, want)
	}
	img, err := b.cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Labels[LabelRole] != roleAmbassador {
		t.Errorf("image labels = %v; want %s=%s", img.Config.Labels, LabelRole, roleAmbassador)
	}
	if ep := img.Config.Entrypoint; !slices.Equal(ep, []string{ambassadorBin, "ambassador"}) {
		t.Errorf("entrypoint = %v", ep)
	}
	if _, id2, err := b.ambassadorImage(ctx); err != nil || id2 != id {
		t.Errorf("second call = %s, %v; want the same image %s", id2, err, id)
	}
	b2 := ambassadorBackend(t)
	if ref2, id2, err := b2.ambassadorImage(ctx); err != nil || ref2 != ref || id2 != id {
		t.Errorf("another backend made %s (%s), %v; want the existing %s (%s)", ref2, id2, err, ref, id)
	}
}

// fakeProxy stands for devstack's proxy on the host's bridge address: it
// records each connection's PROXY line and answers one HTTP request.
type fakeProxy struct {
	l     net.Listener
	lines chan string
}

func newFakeProxy(t *testing.T, gw netip.Addr) *fakeProxy {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
	if err != nil {
		t.Fatalf("listening on the bridge gateway: %v", err)
	}
	fp := &fakeProxy{l: l, lines: make(chan string, 64)}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { fp.serve(c) })
		}
	})
	return fp
}

func (fp *fakeProxy) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	select {
	case fp.lines <- line:
	default:
	}
	if _, err := http.ReadRequest(br); err != nil {
		return
	}
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nvia the host\n")
}

// A container calling another by service name must reach the proxy on the
// host through the callee's ambassador, which names the caller in a PROXY
// line; ports the proxy does not front must still answer by name, and
// the service's own container must keep only its private alias. Stop
// removes the ambassador; a start without one gives the names back.
// frontedSpec makes s's backend one that can make ambassadors and
// returns the spec of service svc with its target port fronted by a fake
// proxy on the host's bridge address, as the supervisor would give it.
func (s *stack) frontedSpec(ctx context.Context, svc string, port uint16, l *logs) (runner.Spec, *fakeProxy) {
	s.t.Helper()
	s.b = ambassadorBackend(s.t)
	gw, err := s.b.HostGateway(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	fp := newFakeProxy(s.t, gw)
	spec := specFor(s.p, svc, l)
	spec.Ambassador = &runner.Ambassador{Relay: map[uint16]string{port: fp.l.Addr().String()}}
	return spec, fp
}

func TestAmbassadorFrontsServiceName(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment: {NAME: b, PORT: "9090"}
    ports: ["8080"]
    expose: ["9090"]
  a:
    image: {{IMAGE}}
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://b:8080/healthz"]
      interval: 300ms
      timeout: 2s
      retries: 50
  c:
    image: {{IMAGE}}
    command: ["fetch", "http://b:9090/", "http://devstack-real-b:9090/"]
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bl := &logs{}
	bspec, fp := s.frontedSpec(ctx, "b", 8080, bl)
	start := func(spec runner.Spec) *Instance {
		t.Helper()
		inst, err := s.b.Start(ctx, spec)
		if err != nil {
			t.Fatalf("starting %s: %v\n%s", spec.Service.Name, err, bl)
		}
		di := inst.(*Instance)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = di.Stop(ctx, syscall.SIGKILL, 0)
		})
		return di
	}
	b := start(bspec)
	if b.amb == nil {
		t.Fatalf("b started without an ambassador:\n%s", bl)
	}
	if !strings.Contains(bl.String(), "ambassador: "+ReadyLine) {
		t.Errorf("b's status log lacks the ambassador's ready line:\n%s", bl)
	}
	netName := s.p.Name + "_default"
	aliases := func(id string) []string {
		t.Helper()
		res, err := s.b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Container.NetworkSettings.Networks[netName].Aliases
	}
	if al := aliases(b.reps[0].id); slices.Contains(al, "b") || !slices.Contains(al, realAlias("b")) {
		t.Errorf("b's own container has aliases %v; want %s and not b", al, realAlias("b"))
	}
	if al := aliases(b.amb.id); !slices.Contains(al, "b") {
		t.Errorf("the ambassador has aliases %v; want b", al)
	}

	// a's healthcheck calls http://b:8080 by name: it reaches the host.
	al := &logs{}
	a := s.start(ctx, "a", al)
	if err := waitHealth(ctx, a, runner.HealthHealthy); err != nil {
		t.Fatalf("a never reached b by name through the ambassador: %v\n%s\nb:\n%s", err, al, bl)
	}
	ip := func(id string) netip.Addr {
		t.Helper()
		res, err := s.b.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Container.NetworkSettings.Networks[netName].IPAddress
	}
	aIP, ambIP := ip(a.reps[0].id), ip(b.amb.id)
	// Only the ambassador's connections are trusted to carry a PROXY line.
	if !s.b.IsAmbassador(ctx, s.p.Name, ambIP) {
		t.Errorf("IsAmbassador(%s), b's ambassador = false", ambIP)
	}
	if s.b.IsAmbassador(ctx, s.p.Name, aIP) {
		t.Errorf("IsAmbassador(%s), a's own container = true", aIP)
	}
	var line string
	select {
	case line = <-fp.lines:
	case <-ctx.Done():
		t.Fatal("the fake proxy got no connection")
	}
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "PROXY" || f[1] != "TCP4" || f[2] != aIP.String() || f[3] != ambIP.String() || f[5] != "8080" {
		t.Errorf("PROXY line = %q; want PROXY TCP4 %s %s <port> 8080", line, aIP, ambIP)
	}
	if got := s.b.ServiceAt(ctx, s.p.Name, aIP); got != "a" {
		t.Errorf("ServiceAt(a's address %s) = %q; want a", aIP, got)
	}
	if got := s.b.ServiceAt(ctx, s.p.Name, ambIP); got != "" {
		t.Errorf("ServiceAt(the ambassador's address %s) = %q; want none: it never calls for itself", ambIP, got)
	}

	// Ports the proxy does not front answer by name, straight from b.
	cl := &logs{}
	c := s.start(ctx, "c", cl)
	if e := c.Wait(); !e.Success() {
		t.Fatalf("c could not reach b:9090 by name or by private alias: %s\n%s", e, cl)
	}
	if n := strings.Count(cl.String(), "hello from b"); n != 2 {
		t.Errorf("c reached b %d times of 2:\n%s", n, cl)
	}

	// A second start adopts both containers.
	b2 := start(bspec)
	if !b2.Adopted() || b2.amb == nil || !b2.amb.adopted || b2.amb.id != b.amb.id {
		t.Errorf("second start: adopted=%v ambassador=%+v; want both adopted", b2.Adopted(), b2.amb)
	}

	if err := b2.Stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("stopping b: %v", err)
	}
	if _, err := s.b.cli.ContainerInspect(ctx, b.amb.id, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("the ambassador is still there after Stop: %v", err)
	}

	// Without an ambassador, b's container answers to b again.
	b3 := start(specFor(s.p, "b", bl))
	if b3.amb != nil {
		t.Fatal("started with an ambassador though none was asked for")
	}
	if al := aliases(b3.reps[0].id); !slices.Contains(al, "b") {
		t.Errorf("b's container has aliases %v without an ambassador; want b", al)
	}
}

// devstack up of two containers, a calling b by its service name, must
// record the hop a → b: the whole path through the CLI, the supervisor's
// proxy and an ambassador made from the devstack binary.
func TestAmbassadorTracesCallsByName(t *testing.T) {
	b := ambassadorBackend(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	gw, err := b.HostGateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, tcpPort := freePort(t, gw), freePort(t, gw)
	name := "dst-amb-traces-" + randHex(3)
	dir := t.TempDir()
	yaml := fmt.Sprintf(`name: %s
services:
  b:
    image: %s
    pull_policy: never
    environment: {NAME: b}
    ports: ["%d:8080"]
    healthcheck:
      test: ["CMD", "/testsvc", "check", "http://localhost:8080/healthz"]
      interval: 200ms
      timeout: 2s
      retries: 50
  c:
    # Proxied as opaque TCP: the hop is one span per connection, and the
    # ambassador's PROXY line still names the caller. The protocol is
    # given per port: a's call is HTTP, so it comes out as a tcp span
    # only if the route of port 8080 got it.
    image: %s
    pull_policy: never
    environment: {NAME: c}
    ports: ["%d:8080"]
    x-devstack: {protocol: {"8080": tcp}}
  a:
    image: %s
    pull_policy: never
    environment: {NAME: a}
    depends_on:
      b: {condition: service_healthy}
      c: {condition: service_started}
    healthcheck:
      test: ["CMD", "/testsvc", "fetch", "http://b:8080/by-name", "http://c:8080/raw"]
      interval: 300ms
      timeout: 2s
      retries: 50
`, name, testImage, port, testImage, tcpPort, testImage)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	run := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, b.ambExe, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DEVSTACK_STATE_DIR="+state, "NO_COLOR=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("devstack %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &out, &errb)
		}
		return out.String(), nil
	}
	devstack := func(args ...string) (string, error) { return run(ctx, args...) }
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := run(ctx, "down"); err != nil {
			t.Logf("cleanup: %v", err)
		}
		if err := b.Down(ctx, name, true); err != nil {
			t.Errorf("cleanup: down %s: %v", name, err)
		}
	})
	if _, err := devstack("up", "-d", "--backend", "docker"); err != nil {
		logs, _ := devstack("logs")
		t.Fatalf("%v\nlogs:\n%s", err, logs)
	}
	// b and c (the names a calls) are served by the project's
	// ambassadors (shared.go): both listen on 8080, so c has a second one.
	for k, svc := range []string{"b", "c"} {
		n := name + "-ambassador"
		if k > 0 {
			n += "-2"
		}
		amb, err := b.cli.ContainerInspect(ctx, n, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("%s has no ambassador: %v", svc, err)
		}
		if al := amb.Container.NetworkSettings.Networks[name+"_default"].Aliases; !slices.Contains(al, svc) {
			t.Errorf("%s has aliases %v; want %s", n, al, svc)
		}
	}

	// a is healthy, so it has called b by name at least once.
	out, err := devstack("traces", "--format", "json", "--route", "/by-name", "-n", "5")
	if err != nil {
		t.Fatal(err)
	}
	var list []trace.Summary
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) == 0 {
		t.Fatalf("traces --format json: %v; want at least one trace of /by-name:\n%s", err, out)
	}
	out, err = devstack("trace", list[0].TraceID.String(), "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var spans []trace.Span
	if err := json.Unmarshal([]byte(out), &spans); err != nil {
		t.Fatalf("trace --format json: %v\n%s", err, out)
	}
	if !slices.ContainsFunc(spans, func(sp trace.Span) bool {
		return sp.Caller == "a" && sp.Callee == "b" && sp.Route == "/by-name" && sp.Status == http.StatusOK
	}) {
		t.Errorf("trace %s has no hop a → b GET /by-name 200:\n%s", list[0].TraceID, out)
	}

	// The TCP service's hop names its caller too (from the PROXY line).
	out, err = devstack("traces", "--format", "json", "--service", "c", "-n", "20")
	if err != nil {
		t.Fatal(err)
	}
	list = nil
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) == 0 {
		t.Fatalf("traces --service c: %v; want at least one trace:\n%s", err, out)
	}
	found := false
	for _, tr := range list {
		out, err = devstack("trace", tr.TraceID.String(), "--format", "json")
		if err != nil {
			t.Fatal(err)
		}
		spans = nil
		if err := json.Unmarshal([]byte(out), &spans); err != nil {
			t.Fatalf("trace --format json: %v\n%s", err, out)
		}
		found = found || slices.ContainsFunc(spans, func(sp trace.Span) bool {
			return sp.Caller == "a" && sp.Callee == "c" && sp.Protocol == "tcp" && sp.BytesIn > 0 && sp.BytesOut > 0
		})
	}
	if !found {
		t.Errorf("no tcp hop a → c among c's traces:\n%s", out)
	}

	if _, err := devstack("down"); err != nil {
		t.Fatal(err)
	}
	res, err := b.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", LabelProject+"="+name)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Items {
		t.Errorf("container %s left after down", firstName(c.Names))
	}
}

// freePort is a port free on both loopback and the bridge gateway, where
// the proxy will listen.
func freePort(t *testing.T, gw netip.Addr) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort(gw.String(), strconv.Itoa(port)))
		l.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no port free on both loopback and the bridge gateway")
	return 0
}

// Which services get an ambassador, and what it changes in the plan of
// their own container: the private alias only, and a hash that follows
// the relays, so a change of them recreates the container.
func TestAmbassadorPlan(t *testing.T) {
	relay := func(to string) *runner.Ambassador { return &runner.Ambassador{Relay: map[uint16]string{8080: to}} }
	for _, tt := range []struct {
		name, yaml string
		amb        *runner.Ambassador
		want       bool
	}{
		{"fronted", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n", relay("gw:18080"), true},
		{"not asked", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n", nil, false},
		{"no relays", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n", &runner.Ambassador{}, false},
		{"udp port", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\", \"53:53/udp\"]\n", relay("gw:18080"), false},
		{"udp expose", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n    expose: [\"53/udp\"]\n", relay("gw:18080"), false},
		{"network_mode", "services:\n  web:\n    image: i\n    network_mode: host\n    ports: [\"18080:8080\"]\n", relay("gw:18080"), false},
		{"internal only", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n    networks: [in]\nnetworks:\n  in:\n    internal: true\n", relay("gw:18080"), false},
		{"internal and not", "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n    networks: [in, out]\nnetworks:\n  in:\n    internal: true\n  out: {}\n", relay("gw:18080"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := loadProject(t, tt.yaml)
			spec := runner.Spec{Project: p, Service: p.Service("web"), Ambassador: tt.amb}
			if got := wantsAmbassador(spec); got != tt.want {
				t.Fatalf("wantsAmbassador = %v; want %v", got, tt.want)
			}
			pl, err := planFor(spec, "sha256:1")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range pl.nets {
				if private := slices.Equal(n.Aliases, []string{realAlias("web")}); private != tt.want {
					t.Errorf("network %s aliases %v with ambassador=%v", n.Name, n.Aliases, tt.want)
				}
			}
		})
	}

	p := loadProject(t, "services:\n  web:\n    image: i\n    ports: [\"18080:8080\"]\n")
	hash := func(a *runner.Ambassador) string {
		pl, err := planFor(runner.Spec{Project: p, Service: p.Service("web"), Ambassador: a}, "sha256:1")
		if err != nil {
			t.Fatal(err)
		}
		return pl.hash
	}
	none, one, other := hash(nil), hash(relay("172.17.0.1:18080")), hash(relay("172.17.0.1:18081"))
	if none == one || one == other {
		t.Errorf("hashes without, with and with other relays: %s %s %s; want all different", none, one, other)
	}
	if hash(relay("172.17.0.1:18080")) != one {
		t.Error("the same relays hash differently")
	}
}
