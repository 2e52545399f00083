package supervisor

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/runner/project"
)

// Each container service's ambassador must relay every port the proxy
// fronts, by target port, to the proxy's route on the gateway, and only
// those; without a gateway (no containers) there are none.
func TestAmbassadors(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  orders:
    image: orders
    ports: ["18082:8080", "18090:9090", "7000", "5353:53/udp"]
  db:
    image: db
    expose: ["5432"]
    environment:
      ORDERS_URL: http://orders:8080/
  web:
    image: web
    ports: ["18000:80"]
  forced:
    image: forced
    ports: ["18001:80"]
    x-devstack: {ambassador: always}
  never:
    image: never
    ports: ["18002:80"]
    x-devstack: {ambassador: never}
    environment:
      SELF: never
  caller:
    image: caller
    command: ["curl", "http://never:80", "http://web-admin:80"]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "amb"})
	if err != nil {
		t.Fatal(err)
	}
	docker := func(*project.Service) bool { return true }
	// A port that a running container of forced already publishes is
	// kept, though it is taken (by that container, here by l).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	held := func(service string, target uint16) (uint16, bool) {
		return taken, service == "forced" && target == 80
	}
	private, _, err := plan(p, docker, "172.17.0.1", held, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := private[portKey{"forced", 80}]; got != taken {
		t.Errorf("forced's private port is %d; want %d, the one its running container publishes", got, taken)
	}
	if got := private[portKey{"never", 80}]; got == taken || got == 0 {
		t.Errorf("never's private port is %d; want a free one of its own", got)
	}
	got := ambassadors(p, private, "172.17.0.1")
	// orders: named by db's environment. web: only "web-admin" is named,
	// another host. forced: always. never: named, but never.
	if len(got) != 2 || got["orders"] == nil || got["forced"] == nil {
		t.Fatalf("ambassadors = %v; want orders (named by db) and forced (always)", got)
	}
	want := map[uint16]string{8080: "172.17.0.1:18082", 9090: "172.17.0.1:18090"}
	if !maps.Equal(got["orders"].Relay, want) {
		t.Errorf("orders relays %v; want %v", got["orders"].Relay, want)
	}
	if got := ambassadors(p, private, ""); got != nil {
		t.Errorf("ambassadors without a gateway = %v; want none", got)
	}
}

// No two ports of a project get the same private port, and none gets a
// port the project declares: a probe sees only ports bound now, and the
// proxy binds the declared ones after the plan.
func TestPlanNeverSharesAPrivatePort(t *testing.T) {
	// a's private port when nothing else is in the way.
	natural, err := privatePort("pp", "a", 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := privatePort("pp", "a", 80, map[uint16]bool{natural: true}); again == natural {
		t.Fatalf("privatePort gave %d though it was taken", again)
	}
	// A service whose first candidate is a's: the two would share it.
	twin := ""
	for i := range 1_000_000 {
		if n := fmt.Sprintf("t%d", i); candidate("pp", n, 80, 0) == candidate("pp", "a", 80, 0) {
			twin = n
			break
		}
	}
	if twin == "" {
		t.Fatal("no service name found whose first candidate port is a's")
	}
	dir := t.TempDir()
	// b declares a's natural private port.
	yaml := fmt.Sprintf(`services:
  a:
    x-devstack: {run: "true", port_env: PORT}
    ports: ["80"]
  b:
    x-devstack: {run: "true", port_env: PORT}
    ports: ["%d:81"]
  %s:
    x-devstack: {run: "true", port_env: PORT}
    ports: ["18191:80"]
  d:
    image: d
    ports: ["18190:90"]
`, natural, twin)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "pp"})
	if err != nil {
		t.Fatal(err)
	}
	backend := func(s *project.Service) bool { return s.Name == "d" }
	// d's running container keeps a port it published before, a's second
	// candidate: a port that a probe may find free (Docker may publish it
	// by DNAT, with no socket bound).
	kept := candidate("pp", "a", 80, 1)
	held := func(service string, target uint16) (uint16, bool) { return kept, service == "d" && target == 90 }
	private, _, err := plan(p, backend, "", held, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]portKey{}
	for k, port := range private {
		if port == natural {
			t.Errorf("%v got private port %d, which b declares", k, port)
		}
		if other, dup := seen[port]; dup {
			t.Errorf("%v and %v share private port %d", k, other, port)
		}
		seen[port] = k
	}
	if len(private) != 4 || private[portKey{"d", 90}] != kept {
		t.Errorf("private ports %v; want one for each of a, b, %s and d, d's the one its container keeps (%d)", private, twin, kept)
	}
}

// The file loader checks x-devstack.trace.formats against its own list of
// names; the proxy must read each of them, and together they must be every
// format the proxy writes, so that what the loader lets through runs and
// nothing the proxy can do is refused.
func TestTraceFormatNamesAgreeWithTheProxy(t *testing.T) {
	var all propagate.Formats
	for _, name := range project.TraceFormats {
		f, err := propagate.ParseFormats(name)
		if err != nil || f == 0 {
			t.Errorf("the loader accepts %q, the proxy reads it as %v (err %v)", name, f, err)
		}
		all |= f
	}
	want := propagate.FormatW3C | propagate.FormatSentry | propagate.FormatB3 | propagate.FormatB3Multi
	if all != want {
		t.Errorf("the loader's names cover %v; the proxy writes %v", all, want)
	}
	p := &project.Project{X: project.ProjectExt{Trace: project.TraceExt{Formats: "none"}}}
	if o, err := traceOptions(p, nil); err != nil || !o.NoFormats {
		t.Errorf("formats none: NoFormats %v, err %v", o.NoFormats, err)
	}
}

// Private ports stay out of the kernel's ephemeral range, where any
// outgoing connection may hold them.
func TestPrivatePortsAreOutsideTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range")
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		port, err := privatePort("eph", fmt.Sprintf("s%d", i), 80, nil)
		if err != nil {
			t.Fatal(err)
		}
		if int(port) >= lo && int(port) <= hi {
			t.Fatalf("private port %d is in the ephemeral range %d-%d", port, lo, hi)
		}
	}
	for _, tt := range []struct {
		lo, hi uint32
		want   portWindow
	}{
		{32768, 60999, portWindow{10000, 22768}},
		{1024, 65535, portWindow{10000, 55536}},
		{10000, 20000, portWindow{20001, 45535}},
		{49152, 65535, portWindow{10000, 39152}},
	} {
		if got := windowOutside(tt.lo, tt.hi); got != tt.want {
			t.Errorf("windowOutside(%d, %d) = %v, want %v", tt.lo, tt.hi, got, tt.want)
		}
	}
}

// A service the user runs is fronted whatever it declares, so that the
// proxy keeps its port: one named by --except and one marked in the file,
// neither told its port, and a container service run by the user.
func TestPlanFrontsServicesTheUserRuns(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  a:
    x-devstack: {run: "true"}
    ports: ["18201:81"]
  b:
    x-devstack: {run: "true", external: true}
    ports: ["18202:82"]
  c:
    image: c
    ports: ["83"]
  d:
    x-devstack: {run: "true"}
    ports: ["18204:84"]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	networked := func(s *project.Service) bool { return s.Name == "c" }
	private, routes, err := plan(p, networked, "", nil, []string{"a", "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []portKey{{"a", 81}, {"b", 82}, {"c", 83}} {
		if _, ok := private[k]; !ok {
			t.Errorf("%v has no private port; the proxy must keep the port of a service the user runs", k)
		}
	}
	if _, ok := private[portKey{"d", 84}]; ok {
		t.Error("d, which devstack runs and cannot tell its port, got a private port")
	}
	listens := map[string]bool{}
	for _, r := range routes {
		listens[r.Listen] = true
	}
	for _, l := range []string{"127.0.0.1:18201", "127.0.0.1:18202", "127.0.0.1:83"} {
		if !listens[l] {
			t.Errorf("the proxy does not listen on %s: %v", l, routes)
		}
	}
}
