package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

func TestRewriteAddrsMatchesWholeHostAndPort(t *testing.T) {
	repl := map[string]string{"fraud:8080": "127.0.0.1:18084", "db.internal:5432": "127.0.0.1:15432", "localhost:18082": "orders:8080"}
	cases := map[string]string{
		"http://fraud:8080/score":              "http://127.0.0.1:18084/score",
		"fraud:8080":                           "127.0.0.1:18084",
		"http://antifraud:8080":                "http://antifraud:8080",
		"http://fraud:80800":                   "http://fraud:80800",
		"http://fraud:808":                     "http://fraud:808",
		"postgres://u:p@db.internal:5432/x":    "postgres://u:p@127.0.0.1:15432/x",
		"a=fraud:8080,b=fraud:8080":            "a=127.0.0.1:18084,b=127.0.0.1:18084",
		"http://fraud/score":                   "http://fraud/score",
		"no address here":                      "no address here",
		"fraud.example.com:8080":               "fraud.example.com:8080",
		"x:fraud:8080":                         "x:127.0.0.1:18084",
		"http://fraud:8080/?next=fraud:8080&a": "http://127.0.0.1:18084/?next=127.0.0.1:18084&a",
		"http://localhost:18082/x":             "http://orders:8080/x",
		"localhost:180821":                     "localhost:180821",
		"localhost:1808":                       "localhost:1808",
		"postgres://u:p@localhost:5432/db":     "postgres://u:p@localhost:5432/db",
	}
	for in, want := range cases {
		if got := runner.RewriteAddrs(repl, in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// hostBackend is a specBackend whose instances see the host (Reacher).
type hostBackend struct{ specBackend }

func (*hostBackend) Reach(p runner.PeerPort) (string, []string, bool) { return runner.HostReacher(p) }

// frontBackend is a specBackend that can front services of other
// backends (Fronter); it records what it was asked.
type frontBackend struct {
	specBackend
	fronted map[string]*runner.Ambassador
}

// Wire makes it Networked: its instances have networks of their own.
func (b *frontBackend) Wire(spec runner.Spec, _ runner.Stack) runner.Spec { return spec }

func (b *frontBackend) Front(_ context.Context, spec runner.Spec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fronted[spec.Service.Name] = spec.Ambassador
	return nil
}

// A process calling services by name, the Compose way, gets the host
// address of each: the proxy's declared port for a container with a
// published port; names it cannot reach are left alone.
func TestProcessEnvReachesServicesByName(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  fraud:
    image: fraud
    ports: ["127.0.0.1:18084:8080"]
    networks: {default: {aliases: [scoring]}}
  search:
    image: search
    ports: ["9200"]
  worker:
    x-devstack: {run: sleep 1000}
  inventory:
    x-devstack: {run: sleep 1000, port_env: PORT}
    ports: ["18081:8081"]
  payments:
    x-devstack: {run: sleep 1000, port_env: PORT}
    ports: ["18083:8083"]
    depends_on: [fraud, inventory, search, worker]
    environment:
      FRAUD_URL: http://fraud:8080/score
      SCORING: scoring:8080
      INVENTORY: inventory:8081
      SEARCH_URL: http://search:9200
      ANTIFRAUD: http://antifraud:8080
      HOST_URL: http://localhost:18084
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "reach"})
	if err != nil {
		t.Fatal(err)
	}
	docker := &frontBackend{specBackend: specBackend{name: "docker", specs: map[string]runner.Spec{}}, fronted: map[string]*runner.Ambassador{}}
	proc := &hostBackend{specBackend{name: "process", specs: map[string]runner.Spec{}}}
	var mu sync.Mutex
	asked := map[string]bool{}
	r, err := runner.New(p, runner.Options{
		BackendFor: func(s *project.Service) (runner.Backend, error) {
			if s.Compose.Image != "" {
				return docker, nil
			}
			return proc, nil
		},
		Logs:  &memSink{},
		RunID: testRunID(),
		ListenPort: func(service string, p project.Port) uint16 {
			if p.Published == 0 {
				return p.Target
			}
			return p.Published + 10000 // every published port is proxied
		},
		Ambassador: func(service string) *runner.Ambassador {
			mu.Lock()
			defer mu.Unlock()
			asked[service] = true
			if service != "inventory" {
				return nil
			}
			return &runner.Ambassador{Relay: map[uint16]string{8081: "172.17.0.1:18081"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	defer r.Down(context.Background(), runner.StopOptions{})
	env := proc.specs["payments"].Env
	for _, want := range []string{
		"FRAUD_URL=http://127.0.0.1:18084/score",
		"SCORING=127.0.0.1:18084",
		"INVENTORY=127.0.0.1:18081",
		"SEARCH_URL=http://search:9200", // no host port to reach it at
		"ANTIFRAUD=http://antifraud:8080",
		"HOST_URL=http://localhost:18084",
		"PORT=28083",
		// Discovery: each dependency with a port the host reaches.
		"DEVSTACK_URL_FRAUD=http://127.0.0.1:18084",
		"DEVSTACK_ADDR_FRAUD=127.0.0.1:18084",
		"DEVSTACK_URL_INVENTORY=http://127.0.0.1:18081",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("payments' environment lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "DEVSTACK_URL_SEARCH=") || strings.HasPrefix(kv, "DEVSTACK_URL_WORKER=") {
			t.Errorf("payments got %s, for a dependency it cannot reach at a known address", kv)
		}
	}
	if env := proc.specs["inventory"].Env; slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "DEVSTACK_URL_") }) {
		t.Errorf("inventory, which depends on nothing, got discovery variables: %v", env)
	}
	// The container backend makes inventory answer to its name there;
	// payments, which Options.Ambassador gives none, is not fronted.
	if a := docker.fronted["inventory"]; a == nil || a.Relay[8081] != "172.17.0.1:18081" {
		t.Errorf("inventory was fronted with %+v; want the relay Options.Ambassador gave", a)
	}
	if _, ok := docker.fronted["payments"]; ok {
		t.Error("payments was fronted, but Options.Ambassador gave it no ambassador")
	}
	// A container's own environment is not the host's view.
	if env := docker.specs["fraud"].Env; slices.ContainsFunc(env, func(kv string) bool { return strings.Contains(kv, "127.0.0.1:") }) {
		t.Errorf("fraud (a container) got host addresses: %v", env)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"orders": "ORDERS", "my-svc.v2": "MY_SVC_V2", "a_b": "A_B"} {
		if got := runner.EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}
