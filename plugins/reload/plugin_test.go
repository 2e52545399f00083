package reload

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/plugins/reload/watch"
	"github.com/devstack/devstack/plugins/sdk"
)

// host records the plugin's actions.
type host struct {
	actions chan sdk.Action
}

func (h *host) PushRules(sdk.RuleSet) error { return nil }
func (h *host) Act(a sdk.Action) error      { h.actions <- a; return nil }

func startPlugin(t *testing.T, o Options) (*Plugin, *host) {
	t.Helper()
	b, _ := json.Marshal(o)
	p := New()
	p.Log = io.Discard
	h := &host{actions: make(chan sdk.Action, 10)}
	ctx, cancel := context.WithCancel(t.Context())
	if err := p.Start(ctx, sdk.Config{Project: "p", Options: b}, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.setWatch(false); cancel() })
	return p, h
}

func action(t *testing.T, h *host) sdk.Action {
	t.Helper()
	select {
	case a := <-h.actions:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no action within 5s")
		return sdk.Action{}
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q (%v), want %q", path, b, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEachActionOfDevelopWatch(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"src", "static", "conf", "www", "out/www", "hooks", "boxhooks", "boxconf"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	work := filepath.Join(dir, "out")
	p, h := startPlugin(t, Options{Root: dir, Watch: true,
		Services: map[string]Service{"web": {}, "box": {Container: true}},
		Rules: []watch.Rule{
			{Service: "web", Path: filepath.Join(dir, "src"), Action: watch.Rebuild},
			{Service: "web", Path: filepath.Join(dir, "conf"), Action: watch.Restart},
			{Service: "web", Path: filepath.Join(dir, "www"), Action: watch.Sync, Target: filepath.Join(work, "www")},
			{Service: "web", Path: filepath.Join(dir, "static"), Action: watch.SyncRestart, Target: filepath.Join(work, "static")},
			{Service: "web", Path: filepath.Join(dir, "hooks"), Action: watch.SyncExec, Target: filepath.Join(work, "hooks"),
				Exec: []string{"sh", "-c", "cat hooks/h > exec-ran"}, ExecDir: work, ExecEnv: []string{"A=1"}},
			{Service: "box", Path: filepath.Join(dir, "www"), Action: watch.Sync, Target: "/srv/www"},
			{Service: "box", Path: filepath.Join(dir, "boxhooks"), Action: watch.SyncExec, Target: "/srv/hooks",
				Exec: []string{"/srv/hooks/run"}, ExecUser: "nobody"},
			{Service: "box", Path: filepath.Join(dir, "boxconf"), Action: watch.SyncRestart, Target: "/etc/box"},
		}})

	// rebuild
	os.WriteFile(filepath.Join(dir, "src", "main.go"), []byte("x"), 0o644)
	a := action(t, h)
	if a.Kind != sdk.Rebuild || a.Services[0] != "web" || !strings.Contains(a.Reason, "main.go") || a.Seen.IsZero() || time.Since(a.Seen) > 5*time.Second {
		t.Fatalf("rebuild: %+v", a)
	}
	// restart
	os.WriteFile(filepath.Join(dir, "conf", "app.toml"), []byte("x"), 0o644)
	if a = action(t, h); a.Kind != sdk.Restart || a.Services[0] != "web" {
		t.Fatalf("restart: %+v", a)
	}
	// sync: copied for the process, sent to devstack for the container
	os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("<h1>v2</h1>"), 0o644)
	waitFile(t, filepath.Join(work, "www", "index.html"), "<h1>v2</h1>")
	if a = action(t, h); a.Kind != sdk.Sync || a.Services[0] != "box" || len(a.Files) != 1 || a.Files[0].Dst != "/srv/www/index.html" {
		t.Fatalf("container sync: %+v", a)
	}
	// sync+restart: the file is there before the restart is asked
	os.WriteFile(filepath.Join(dir, "static", "app.css"), []byte("body{}"), 0o644)
	if a = action(t, h); a.Kind != sdk.Restart {
		t.Fatalf("sync+restart: %+v", a)
	}
	waitFile(t, filepath.Join(work, "static", "app.css"), "body{}")
	// sync+exec: a process's file is here before devstack is asked to
	// run the command in the service
	os.WriteFile(filepath.Join(dir, "hooks", "h"), []byte("hooked"), 0o644)
	a = action(t, h)
	if a.Kind != sdk.Exec || a.Services[0] != "web" || len(a.Files) != 0 || len(a.Exec) != 1 ||
		a.Exec[0].Command[2] != "cat hooks/h > exec-ran" || a.Exec[0].WorkingDir != work || a.Exec[0].Env[0] != "A=1" {
		t.Fatalf("sync+exec: %+v", a)
	}
	waitFile(t, filepath.Join(work, "hooks", "h"), "hooked")
	// sync+exec into a container: the files go with the command, so
	// devstack copies them in before it runs it
	os.WriteFile(filepath.Join(dir, "boxhooks", "run"), []byte("#!/bin/sh\n"), 0o755)
	a = action(t, h)
	if a.Kind != sdk.Exec || a.Services[0] != "box" || len(a.Files) != 1 || a.Files[0].Dst != "/srv/hooks/run" ||
		len(a.Exec) != 1 || a.Exec[0].Command[0] != "/srv/hooks/run" || a.Exec[0].User != "nobody" {
		t.Fatalf("container sync+exec: %+v", a)
	}
	// sync+restart of a container: the files go with the restart, so that
	// devstack copies them in before it starts the new container
	os.WriteFile(filepath.Join(dir, "boxconf", "box.conf"), []byte("x"), 0o644)
	if a = action(t, h); a.Kind != sdk.Restart || a.Services[0] != "box" || len(a.Files) != 1 || a.Files[0].Dst != "/etc/box/box.conf" {
		t.Fatalf("container sync+restart: %+v", a)
	}
	// a removed synced file goes from the target too
	os.Remove(filepath.Join(dir, "www", "index.html"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(work, "www", "index.html")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed file is still in the target")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a = action(t, h); a.Kind != sdk.Sync || !a.Files[0].Removed {
		t.Fatalf("container removal: %+v", a)
	}
	out, err := p.Command(t.Context(), "status", nil)
	var st Status
	if err != nil || json.Unmarshal(out, &st) != nil || !st.Watching || st.Batches < 6 || st.LastErr != "" {
		t.Fatalf("status: %s %v", out, err)
	}
}

func TestWatchCommandAndInitialSync(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	os.WriteFile(filepath.Join(dir, "www", "a.txt"), []byte("a"), 0o644)
	target := filepath.Join(dir, "target")
	p, h := startPlugin(t, Options{Root: dir, Services: map[string]Service{"web": {}},
		Rules: []watch.Rule{{Service: "web", Path: filepath.Join(dir, "www"), Action: watch.SyncRestart, Target: target, InitialSync: true}}})
	// Not watching until told.
	if _, err := os.Stat(filepath.Join(target, "a.txt")); !os.IsNotExist(err) {
		t.Fatalf("synced before watching: %v", err)
	}
	if _, err := p.Command(t.Context(), "watch", []byte(`{"on":true}`)); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(target, "a.txt"), "a") // initial_sync
	os.WriteFile(filepath.Join(dir, "www", "b.txt"), []byte("b"), 0o644)
	if a := action(t, h); a.Kind != sdk.Restart {
		t.Fatalf("%+v", a)
	}
	if _, err := p.Command(t.Context(), "watch", []byte(`{"on":false}`)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "www", "c.txt"), []byte("c"), 0o644)
	select {
	case a := <-h.actions:
		t.Fatalf("an action after watching stopped: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := p.Command(t.Context(), "reboot", nil); err == nil || !strings.Contains(err.Error(), "watch and status") {
		t.Fatalf("unknown command: %v", err)
	}
}

// A failed reload reaches the plugin's state: the event that carries it
// names the error, and the next event without one clears it.
func TestStatusShowsAFailedReloadUntilTheNextGoodOne(t *testing.T) {
	p, _ := startPlugin(t, Options{Root: t.TempDir()})
	status := func() Status {
		t.Helper()
		out, err := p.Command(t.Context(), "status", nil)
		var st Status
		if err != nil || json.Unmarshal(out, &st) != nil {
			t.Fatalf("status: %s %v", out, err)
		}
		return st
	}
	p.HandleEvent(t.Context(), sdk.Event{Service: "web", Kind: "running", Message: `reload of "web" failed, the running instance keeps serving: build failed`})
	if st := status(); !strings.Contains(st.Errors["web"], "build failed") || st.States["web"] != "running" {
		t.Fatalf("after a failed reload: %+v", st)
	}
	p.HandleEvent(t.Context(), sdk.Event{Service: "web", Kind: "running", Intent: "coming back"})
	if st := status(); st.Errors["web"] != "" || st.States["web"] != "running (coming back)" {
		t.Fatalf("after the next reload: %+v", st)
	}
}
