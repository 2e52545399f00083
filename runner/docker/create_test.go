package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

func loadProject(t *testing.T, yaml string) *project.Project {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "hash"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The config hash decides between adopting and recreating: it must not
// change with the run marker or the order of the environment, and must
// change with anything that makes a different container.
func TestConfigHash(t *testing.T) {
	base := loadProject(t, "services:\n  web:\n    image: img\n    ports: [\"8080\"]\n")
	hash := func(p *project.Project, imageID string, env ...string) string {
		t.Helper()
		pl, err := planFor(runner.Spec{Project: p, Service: p.Service("web"), Env: env}, imageID)
		if err != nil {
			t.Fatal(err)
		}
		return pl.hash
	}
	ref := hash(base, "sha256:1", "A=1", "B=2", "DEVSTACK_INSTANCE=hash/run1/web")
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{"other run marker and env order", hash(base, "sha256:1", "DEVSTACK_INSTANCE=hash/run2/web", "B=2", "A=1"), true},
		{"changed env", hash(base, "sha256:1", "A=1", "B=3"), false},
		{"rebuilt image", hash(base, "sha256:2", "A=1", "B=2"), false},
		{"other port", hash(loadProject(t, "services:\n  web:\n    image: img\n    ports: [\"9090\"]\n"), "sha256:1", "A=1", "B=2"), false},
		{"command", hash(loadProject(t, "services:\n  web:\n    image: img\n    ports: [\"8080\"]\n    command: [x]\n"), "sha256:1", "A=1", "B=2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.got == ref) != tt.same {
				t.Errorf("hash equal = %v, want %v", tt.got == ref, tt.same)
			}
		})
	}
}

// The plan must follow Compose: loopback publishing by default, the
// service name as alias on every network, host.docker.internal, and the
// healthcheck handed to the engine.
func TestPlan(t *testing.T) {
	p := loadProject(t, `
services:
  web:
    image: img
    ports: ["8080", "0.0.0.0:9000:9000/udp"]
    extra_hosts: ["db.local:10.0.0.2"]
    networks:
      front:
        aliases: [www]
      default:
    healthcheck:
      test: ["CMD-SHELL", "true"]
      interval: 1s
networks:
  front:
    name: custom-front
`)
	pl, err := planFor(runner.Spec{Project: p, Service: p.Service("web")}, "sha256:1")
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for port, bs := range pl.host.PortBindings {
		for _, b := range bs {
			ports = append(ports, b.HostIP.String()+":"+b.HostPort+"->"+port.String())
		}
	}
	slices.Sort(ports)
	if want := []string{"0.0.0.0:9000->9000/udp", "127.0.0.1:->8080/tcp"}; !slices.Equal(ports, want) {
		t.Errorf("ports = %v, want %v", ports, want)
	}
	if want := []string{"db.local:10.0.0.2", hostGateway}; !slices.Equal(pl.host.ExtraHosts, want) {
		t.Errorf("extra hosts = %v, want %v", pl.host.ExtraHosts, want)
	}
	var nets []string
	for _, a := range pl.nets {
		nets = append(nets, a.Name+"="+strings.Join(a.Aliases, ","))
	}
	if want := []string{"custom-front=web,www", "hash_default=web"}; !slices.Equal(slices.Sorted(slices.Values(nets)), want) {
		t.Errorf("networks = %v, want %v", nets, want)
	}
	if hc := pl.config.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD-SHELL", "true"}) || hc.Interval.Seconds() != 1 || hc.Retries != 3 {
		t.Errorf("healthcheck = %+v", hc)
	}
	if pl.host.RestartPolicy.Name != "no" {
		t.Errorf("restart policy = %q", pl.host.RestartPolicy.Name)
	}
}

// The engine is found through DOCKER_HOST, else the current context.
func TestEngineHost(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	write := func(path, data string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := engineHost(); err != nil || h != "unix:///var/run/docker.sock" {
		t.Errorf("no config: host %q, %v", h, err)
	}
	write(filepath.Join(dir, "config.json"), `{"currentContext": "remote"}`)
	sum := sha256.Sum256([]byte("remote"))
	write(filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json"),
		`{"Name":"remote","Endpoints":{"docker":{"Host":"tcp://127.0.0.1:2375","SkipTLSVerify":false}}}`)
	if h, err := engineHost(); err != nil || h != "tcp://127.0.0.1:2375" {
		t.Errorf("context remote: host %q, %v", h, err)
	}
	t.Setenv("DOCKER_CONTEXT", "missing")
	if _, err := engineHost(); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("missing context: error %v", err)
	}
	t.Setenv("DOCKER_HOST", "unix:///elsewhere.sock")
	if h, _ := engineHost(); h != "unix:///elsewhere.sock" {
		t.Errorf("DOCKER_HOST ignored: %q", h)
	}
}
