package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/project"
)

// A service the user runs is not started, counts as ready for the
// services that depend on it, says how to run it in devstack's place,
// and Start takes it back.
func TestExternalServiceIsLeftToTheUserUntilStarted(t *testing.T) {
	dir := t.TempDir()
	yaml := `services:
  api:
    x-devstack: {run: [bin/api, serve], port_env: PORT, workdir: sub}
    ports: ["18301:8301"]
    environment: {WORKER: "http://worker:8302"}
  worker:
    x-devstack: {run: sleep 1000, port_env: PORT}
    ports: ["18302:8302"]
  web:
    x-devstack: {run: sleep 1000}
    depends_on: [api]
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	proc := &hostBackend{specBackend{name: "process", specs: map[string]runner.Spec{}}}
	r, err := runner.New(p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return proc, nil },
		Logs:       &memSink{}, RunID: "test",
		ListenPort: func(_ string, p project.Port) uint16 { return p.Published + 10000 },
		External:   []string{"api"},
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
	st := map[string]runner.ServiceStatus{}
	for _, s := range r.Status() {
		st[s.Name] = s
	}
	if st["api"].State != runner.StateExternal || st["web"].State != runner.StateRunning {
		t.Errorf("api %s, web %s; want api external, web (which depends on it) running", st["api"].State, st["web"].State)
	}
	if _, started := proc.specs["api"]; started {
		t.Error("api was started, but the user runs it")
	}

	hr, err := r.HostRun("api")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "sub"); hr.Dir != want || !slices.Equal(hr.Argv, []string{filepath.Join(want, "bin/api"), "serve"}) {
		t.Errorf("HostRun: dir %q argv %q; want %q and the program relative to it", hr.Dir, hr.Argv, want)
	}
	for _, want := range []string{"PORT=28301", "WORKER=http://127.0.0.1:18302", "DEVSTACK_SERVICE=api"} {
		if !slices.Contains(hr.Env, want) {
			t.Errorf("HostRun env lacks %s: %v", want, hr.Env)
		}
	}
	if slices.ContainsFunc(hr.Env, func(kv string) bool { return strings.HasPrefix(kv, "DEVSTACK_INSTANCE=") }) {
		t.Errorf("HostRun env has the instance marker, by which orphan cleanup would kill the user's run: %v", hr.Env)
	}
	if !slices.Equal(hr.Listen, []string{"127.0.0.1:28301"}) || !slices.Equal(hr.Declared, []uint16{18301}) {
		t.Errorf("HostRun listen %v declared %v; want 127.0.0.1:28301 for 18301", hr.Listen, hr.Declared)
	}
	if p.Service("api").X.Run.Args[0] != "bin/api" {
		t.Error("HostRun changed the project's command line")
	}

	if err := r.Start(ctx, []string{"api"}); err != nil {
		t.Fatal(err)
	}
	if _, started := proc.specs["api"]; !started || r.External("api") {
		t.Errorf("after Start, api started: %v, external: %v; want devstack to run it", started, r.External("api"))
	}
}
