package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// toolProject writes a project directory whose image is testdata/tool
// FROM scratch (built by devstack from build:), and returns the image
// name, which the test's cleanup removes.
func toolProject(t *testing.T, name, services string) (dir, image string) {
	t.Helper()
	dir = t.TempDir()
	ctx := filepath.Join(dir, "tool")
	if err := os.MkdirAll(ctx, 0o700); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(ctx, "tool"), "./testdata/tool")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the tool: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY tool /tool\nENTRYPOINT [\"/tool\"]\nCMD [\"serve\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o600); err != nil {
		t.Fatal(err)
	}
	image = "devstack-" + name + ":e2e"
	yaml := strings.ReplaceAll(services, "$IMAGE", image)
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, image
}

func removeImage(t *testing.T, cl *client.Client, image string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = cl.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
}

// exec runs in the service's container, run --rm in a new one that is
// removed, top lists the container's processes; exit codes come back.
func TestDockerExecRunTop(t *testing.T) {
	d := requireEngine(t)
	name := projectName("exec")
	dir, image := toolProject(t, name, `services:
  box:
    image: $IMAGE
    build: {context: ./tool}
    environment: {GREETING: hello-from-box}
  user:
    image: $IMAGE
`)
	removeImage(t, d.Client(), image)
	p := newDockerProject(t, dir, name, d)
	// user's image is the one box builds: it is built, not pulled (there
	// is no registry to pull it from).
	p.must("up", "-d", "user")
	p.must("up", "-d")
	if r := p.must("exec", "box", "/tool", "env", "GREETING"); r.stdout != "hello-from-box\n" {
		t.Errorf("exec printed %q", r.stdout)
	}
	if r := p.run("exec", "box", "/tool", "exit", "5"); r.code != 5 {
		t.Errorf("exec of exit 5: code %d, %s", r.code, r.stderr)
	}
	if r := p.must("run", "--rm", "box", "echo", "one-off"); r.stdout != "one-off\n" {
		t.Errorf("run printed %q (stderr %s)", r.stdout, r.stderr)
	}
	if r := p.run("run", "--rm", "box", "exit", "3"); r.code != 3 {
		t.Errorf("run of exit 3: code %d, %s", r.code, r.stderr)
	}
	if r := p.must("top", "box"); !strings.Contains(r.stdout, "/tool serve") {
		t.Errorf("top does not show the container's process:\n%s", r.stdout)
	}
	// The one-off containers are gone: only the services' are left.
	if left := p.leftovers(t.Context()); len(left) != 3 { // two containers and the network
		t.Errorf("after run --rm, the project has %v", left)
	}
	// A volume docker compose made for the project goes with down -v.
	vol := name + "_composemade"
	if _, err := d.Client().VolumeCreate(t.Context(), client.VolumeCreateOptions{Name: vol, Labels: map[string]string{"com.docker.compose.project": name}}); err != nil {
		t.Fatal(err)
	}
	p.must("down", "-v")
	if _, err := d.Client().VolumeInspect(t.Context(), vol, client.VolumeInspectOptions{}); err == nil {
		t.Errorf("down -v left the volume %s that Compose labelled as the project's", vol)
		_, _ = d.Client().VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true})
	}
}

// Secrets and configs (file, environment and content sources), resource
// limits, ulimits, logging options, links and volumes_from reach the
// containers.
func TestDockerLimitsLinksVolumesFrom(t *testing.T) {
	d := requireEngine(t)
	name := projectName("limits")
	dir, image := toolProject(t, name, `services:
  box:
    image: $IMAGE
    build: {context: ./tool}
    mem_limit: 64m
    cpus: 0.5
    pids_limit: 40
    ulimits: {nofile: {soft: 1234, hard: 2345}}
    logging: {driver: json-file, options: {max-size: 1m}}
    volumes: [data:/data]
    secrets: [db_password, token]
    configs: [{source: app, target: /etc/app.conf}]
  peer:
    image: $IMAGE
    links: ["box:database"]
    volumes_from: [box]
    depends_on: [box]
volumes:
  data: {}
secrets:
  db_password: {file: ./pw.txt}
  token: {environment: API_TOKEN}
configs:
  app: {content: "level=debug"}
`)
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("API_TOKEN", "tok-123")
	removeImage(t, d.Client(), image)
	p := newDockerProject(t, dir, name, d)
	p.must("up", "-d")
	for file, want := range map[string]string{"/run/secrets/db_password": "s3cret", "/run/secrets/token": "tok-123", "/etc/app.conf": "level=debug"} {
		if r := p.must("exec", "box", "/tool", "cat", file); r.stdout != want {
			t.Errorf("box's %s holds %q, want %q", file, r.stdout, want)
		}
	}
	// The hard limit: Go raises its soft limit to it.
	if r := p.must("exec", "box", "/tool", "cat", "/proc/self/limits"); !regexp.MustCompile(`Max open files\s+\d+\s+2345\s`).MatchString(r.stdout) {
		t.Errorf("box's nofile limit is not 2345:\n%s", r.stdout)
	}
	st := p.ps()
	info, err := d.Client().ContainerInspect(t.Context(), st["box"].ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := info.Container.HostConfig
	if hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 40 {
		t.Errorf("box's resources: memory %d, nano cpus %d, pids %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit)
	}
	if lc := hc.LogConfig; lc.Type != "json-file" || lc.Config["max-size"] != "1m" {
		t.Errorf("box's log config is %+v", lc)
	}
	p.must("exec", "box", "/tool", "write", "/data/shared", "from-box")
	if r := p.must("exec", "peer", "/tool", "cat", "/data/shared"); r.stdout != "from-box" {
		t.Errorf("peer reads %q through volumes_from", r.stdout)
	}
	if r := p.run("exec", "peer", "/tool", "lookup", "database"); r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("peer cannot resolve its link alias database: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
