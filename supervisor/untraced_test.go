package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// What the file leaves untraced is said per service, with the fix, and
// nothing is said of what is traced.
func TestUntracedCallsAreNamedWithTheirFix(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  worker:
    x-devstack: {run: "sleep 100"}
    ports: ["18301:18301"]
  api:
    x-devstack: {run: "sleep 100", port_env: PORT}
    ports: ["18302:18302"]
  quiet:
    x-devstack: {run: "sleep 100"}
  db:
    image: db
    expose: ["5432"]
  web:
    image: web
    ports: ["18303:80"]
  cache:
    image: cache
  loner:
    image: loner
    expose: ["9000"]
  app:
    image: app
    environment:
      DB: postgres://db:5432/x
      WEB: http://web:80
      CACHE: cache:6379
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "untr"})
	if err != nil {
		t.Fatal(err)
	}
	networked := func(s *project.Service) bool { return s.Compose.Image != "" }
	private, _, err := plan(p, networked, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := untraced(p, networked, private)
	want := map[string][]string{
		"worker": {"port_env", "port 18301"},
		"db":     {"db:5432", `publish it (ports: ["5432"])`},
		"cache":  {"cache by name", "publishes no port"},
	}
	for name, parts := range want {
		if len(got[name]) != 1 {
			t.Errorf("%s: %q; want one message", name, got[name])
			continue
		}
		for _, part := range parts {
			if !strings.Contains(got[name][0], part) {
				t.Errorf("%s: %q does not say %q", name, got[name][0], part)
			}
		}
	}
	for name, msgs := range got {
		if want[name] == nil {
			t.Errorf("%s is traced, yet: %q", name, msgs)
		}
	}
}

// A port whose listener keeps a silent connection open is reachable; one
// closed at once (Docker's forwarding with nothing on the container's
// address), or refused, is not, and is reported once per instance.
func TestReachFindsAContainerNothingReaches(t *testing.T) {
	listen := func(closeAtOnce bool) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				if closeAtOnce {
					c.Close()
					continue
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return l.Addr().String()
	}
	open, closing := listen(false), listen(true)
	nobody := freeTCPAddr(t)
	if err := closedAtOnce(open); err != nil {
		t.Errorf("a listening port: %v", err)
	}
	for _, a := range []string{closing, nobody} {
		if err := closedAtOnce(a); err == nil {
			t.Errorf("%s: reachable, though nothing answers there", a)
		}
	}
	r := reach{grace: 300 * time.Millisecond}
	var mu sync.Mutex
	reports := map[string]int{}
	report := func(service, msg string) {
		mu.Lock()
		defer mu.Unlock()
		reports[service]++
		if !strings.Contains(msg, "0.0.0.0") || !strings.Contains(msg, "127.0.0.1 inside its container") {
			t.Errorf("the finding does not say the fix: %q", msg)
		}
	}
	up := runner.ServiceStatus{Name: "orders", State: runner.StateRunning, Health: runner.HealthHealthy, ID: "c1"}
	ok := runner.ServiceStatus{Name: "web", State: runner.StateRunning, ID: "c2"}
	for range 3 { // once per instance, however often the status changes
		r.check(up, []string{open, closing}, report)
		r.check(ok, []string{open}, report)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.finding("orders") == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if reports["orders"] != 1 || reports["web"] != 0 || r.finding("web") != "" {
		t.Errorf("reports %v; want one about orders, none about web", reports)
	}
}

func freeTCPAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The example shop says nothing: every hop of it is traced, on either
// backend.
func TestTheShopHasNoUntracedCalls(t *testing.T) {
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: filepath.Join("..")})
	if err != nil {
		t.Fatal(err)
	}
	for _, docker := range []bool{false, true} {
		networked := func(s *project.Service) bool { return docker && s.Name != "build" }
		private, _, err := plan(p, networked, "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := untraced(p, networked, private); len(got) != 0 {
			t.Errorf("containers %v: %q", docker, got)
		}
	}
}
