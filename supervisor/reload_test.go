package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devstack/devstack/plugins/reload"
	"github.com/devstack/devstack/plugins/sdk"
	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// TestMain doubles the test binary as a service: with SUPTEST_SERVE set it
// answers every request on 127.0.0.1:$PORT with the contents $ANSWER had
// when it started (so a "new version" is a new instance) and dies at
// SIGTERM without draining anything, as a plain dev server does.
func TestMain(m *testing.M) {
	if os.Getenv("SUPTEST_SERVE") != "" {
		answer, err := os.ReadFile(os.Getenv("ANSWER"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if strings.TrimSpace(string(answer)) == "crash" {
			fmt.Fprintln(os.Stderr, "crashing at start, as asked")
			os.Exit(3)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(answer) }))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// reloadStack starts a supervisor over one process service "web" (the
// test binary) behind the proxy, and returns it with web's address.
func reloadStack(t *testing.T, answer string) (*Supervisor, string) {
	t.Helper()
	return reloadStackEv(t, answer, nil)
}

func reloadStackEv(t *testing.T, answer string, events func(runner.Event)) (*Supervisor, string) {
	t.Helper()
	t.Setenv("DEVSTACK_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	yaml := fmt.Sprintf(`name: rl%d
services:
  web:
    x-devstack: {run: [%q], port_env: PORT}
    ports: ["127.0.0.1:%d:%d"]
    environment: {SUPTEST_SERVE: "1", ANSWER: %q}
`, port, exe, port, port, filepath.Join(dir, "answer"))
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600)
	os.WriteFile(filepath.Join(dir, "answer"), []byte(answer), 0o600)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pb := &process.Backend{}
	sup, err := Start(t.Context(), Options{Project: p, Events: events, BackendFor: func(*project.Service) (runner.Backend, error) { return pb, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sup.Shutdown(ctx)
	})
	if err := sup.Up(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	return sup, fmt.Sprintf("http://127.0.0.1:%d/", port)
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// Reloads under a bounded load loop through the proxy: every request is
// answered (by the old instance or the new one), and after each reload
// the new code answers.
func TestReloadUnderLoadFailsNoRequest(t *testing.T) {
	var evMu sync.Mutex
	var msgs []string
	sup, url := reloadStackEv(t, "v0", func(ev runner.Event) {
		evMu.Lock()
		msgs = append(msgs, ev.Msg)
		evMu.Unlock()
	})
	answerFile := filepath.Join(sup.opts.Project.Dir, "answer")
	if got, err := get(http.DefaultClient, url); err != nil || got != "v0" {
		t.Fatalf("before any reload: %q, %v", got, err)
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < 200000; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				if _, err := get(c, url); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	const reloads = 5
	for i := 1; i <= reloads; i++ {
		want := fmt.Sprintf("v%d", i)
		os.WriteFile(answerFile, []byte(want), 0o600)
		res, err := sup.Reload(t.Context(), "web", runner.ReplaceOptions{Cause: "answer changed"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Beside {
			t.Fatalf("reload %d restarted in place; want the new instance started beside the old", i)
		}
		if got, err := get(http.DefaultClient, url); err != nil || got != want {
			t.Fatalf("after reload %d: %q, %v; want %q", i, got, err, want)
		}
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during %d reloads; first: %v", n, n+ok.Load(), reloads, firstErr.Load())
	}
	t.Logf("%d requests answered during %d reloads, none failed", ok.Load(), reloads)
	if ok.Load() < reloads {
		t.Fatalf("only %d requests ran during the reloads; the load loop did not load", ok.Load())
	}
	st := sup.Runner().Status()[0]
	if st.Reloads != reloads || st.ReloadP50 <= 0 || st.State != runner.StateRunning {
		t.Fatalf("status after %d reloads: %+v", reloads, st)
	}
	// The log says each reload's time and cause.
	evMu.Lock()
	n := 0
	for _, m := range msgs {
		if strings.HasPrefix(m, "reloaded in ") && strings.Contains(m, "(answer changed)") && strings.Contains(m, "started beside the old one") {
			n++
		}
	}
	evMu.Unlock()
	if n != reloads {
		t.Fatalf("%d log lines say a reload's time and cause, want %d: %q", n, reloads, msgs)
	}
	// Exactly one instance of web is left: each replaced one was stopped.
	out, _ := exec.Command("pgrep", "-f", "-c", "^"+regexp.QuoteMeta(mustExe(t))+"$").Output()
	if n := strings.TrimSpace(string(out)); n != "1" {
		t.Fatalf("%s instances of web run after the reloads, want 1", n)
	}
}

// A replacement that fails to start leaves the old instance serving, and
// says why in the status.
func TestFailedReloadKeepsTheOldInstance(t *testing.T) {
	sup, url := reloadStack(t, "v0")
	os.WriteFile(filepath.Join(sup.opts.Project.Dir, "answer"), []byte("crash"), 0o600)
	_, err := sup.Reload(t.Context(), "web", runner.ReplaceOptions{Cause: "answer changed"})
	if err == nil || !strings.Contains(err.Error(), "keeps serving") || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("reload to a crashing version: %v; want an error saying it exited and the old one keeps serving", err)
	}
	if got, err := get(http.DefaultClient, url); err != nil || got != "v0" {
		t.Fatalf("after the failed reload: %q, %v; want the old instance's v0", got, err)
	}
	st := sup.Runner().Status()[0]
	if st.ReloadError == "" || st.Reloads != 0 || st.State != runner.StateRunning {
		t.Fatalf("status after a failed reload: %+v", st)
	}
	// The next good version goes through and clears the error.
	os.WriteFile(filepath.Join(sup.opts.Project.Dir, "answer"), []byte("v2"), 0o600)
	if _, err := sup.Reload(t.Context(), "web", runner.ReplaceOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(http.DefaultClient, url); err != nil || got != "v2" {
		t.Fatalf("after the fixed reload: %q, %v", got, err)
	}
	if st := sup.Runner().Status()[0]; st.ReloadError != "" || st.Reloads != 1 {
		t.Fatalf("status after the fix: %+v", st)
	}
}

func mustExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// actHost is the plugin host's part in a hot reload, in-process: a
// plugin's action goes to the supervisor's reloadAction, as the host
// hands it over.
type actHost struct{ sup *Supervisor }

func (h actHost) PushRules(sdk.RuleSet) error { return nil }
func (h actHost) Act(a sdk.Action) error      { return h.sup.reloadAction("reload", a) }

// waitStatus waits until web's status satisfies ok.
func waitStatus(t *testing.T, sup *Supervisor, d time.Duration, ok func(runner.ServiceStatus) bool) runner.ServiceStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := sup.Runner().Status()[0]
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("web's status after %s: %+v", d, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Go service of a real `go build`: saving its main.go rebuilds it while
// the old binary serves, and the new code answers through the proxy.
func TestGoServiceHotReloadedOnSave(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain on PATH")
	}
	t.Setenv("DEVSTACK_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	port := freePort(t)
	main := func(answer string) string {
		return `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("` + answer + `")) })
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
}
`
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module web\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(main("old code")), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("bin/\n"), 0o644)
	yaml := fmt.Sprintf(`name: gosvc%d
services:
  web:
    x-devstack:
      build: [go, build, -o, bin/web, .]
      run: [bin/web]
      port_env: PORT
    ports: ["127.0.0.1:%d:%d"]
    develop:
      watch:
        - path: .
          action: rebuild
`, port, port, port)
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o644)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pb := &process.Backend{}
	backendFor := func(*project.Service) (runner.Backend, error) { return pb, nil }
	sup, err := Start(t.Context(), Options{Project: p, BackendFor: backendFor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sup.Shutdown(ctx)
	})
	upCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := sup.Up(upCtx, nil); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if got, err := get(http.DefaultClient, url); err != nil || got != "old code" {
		t.Fatalf("before the save: %q, %v", got, err)
	}

	opts := ReloadOptions(p, backendFor, true)
	if len(opts.Rules) != 1 || opts.Rules[0].Path != dir {
		t.Fatalf("reload options from develop.watch: %+v", opts)
	}
	b, _ := json.Marshal(opts)
	plug := reload.New()
	plug.Log = io.Discard
	h := actHost{sup: sup}
	pctx, pcancel := context.WithCancel(t.Context())
	defer pcancel()
	if err := plug.Start(pctx, sdk.Config{Project: p.Name, Options: b}, h); err != nil {
		t.Fatal(err)
	}
	defer plug.Command(context.Background(), "watch", []byte(`{"on":false}`))

	os.WriteFile(filepath.Join(dir, "main.go"), []byte(main("new code")), 0o644)
	waitStatus(t, sup, 2*time.Minute, func(st runner.ServiceStatus) bool { return st.Reloads == 1 })
	if got, err := get(http.DefaultClient, url); err != nil || got != "new code" {
		t.Fatalf("after the save: %q, %v", got, err)
	}
	// A save that does not compile: the old code keeps answering, and the
	// status says why.
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefined() }\n"), 0o644)
	st := waitStatus(t, sup, 2*time.Minute, func(st runner.ServiceStatus) bool { return st.ReloadError != "" })
	if !strings.Contains(st.ReloadError, "build failed") || st.Reloads != 1 {
		t.Fatalf("after a broken save: %+v", st)
	}
	if got, err := get(http.DefaultClient, url); err != nil || got != "new code" {
		t.Fatalf("after the broken save: %q, %v; want the last good code", got, err)
	}
	// The builds wrote bin/web, which .gitignore ignores: no reload came
	// of them.
	if st := sup.Runner().Status()[0]; st.Reloads != 1 {
		t.Fatalf("reloads: %d", st.Reloads)
	}
}

// A sync+exec rule of a process service: the changed file is copied into
// the workdir, then the command runs there, in the service's environment
// (its environment: and the rule's exec.environment), after the copy.
func TestSyncExecRunsInTheProcessServicesWorkdirAndEnvironment(t *testing.T) {
	t.Setenv("DEVSTACK_STATE_DIR", t.TempDir())
	dir := t.TempDir()
	port := freePort(t)
	os.MkdirAll(filepath.Join(dir, "hooks"), 0o755)
	os.MkdirAll(filepath.Join(dir, "work"), 0o755)
	os.WriteFile(filepath.Join(dir, "answer"), []byte("v0"), 0o600)
	yaml := fmt.Sprintf(`name: syncexec%d
services:
  web:
    x-devstack: {run: [%q], port_env: PORT, workdir: work}
    ports: ["127.0.0.1:%d:%d"]
    environment: {SUPTEST_SERVE: "1", ANSWER: %q, GREETING: hello}
    develop:
      watch:
        - path: ./hooks
          action: sync+exec
          target: /hooks
          exec:
            command: ["sh", "-c", "echo \"$$GREETING $$HOOK $$(pwd)\" > ../out.txt && cat h >> ../out.txt"]
            working_dir: /hooks
            environment: {HOOK: from-rule}
`, port, mustExe(t), port, port, filepath.Join(dir, "answer"))
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o644)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pb := &process.Backend{}
	backendFor := func(*project.Service) (runner.Backend, error) { return pb, nil }
	sup, err := Start(t.Context(), Options{Project: p, BackendFor: backendFor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		sup.Shutdown(ctx)
	})
	if err := sup.Up(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ReloadOptions(p, backendFor, true))
	plug := reload.New()
	plug.Log = io.Discard
	pctx, pcancel := context.WithCancel(t.Context())
	defer pcancel()
	if err := plug.Start(pctx, sdk.Config{Project: p.Name, Options: b}, actHost{sup: sup}); err != nil {
		t.Fatal(err)
	}
	defer plug.Command(context.Background(), "watch", []byte(`{"on":false}`))

	os.WriteFile(filepath.Join(dir, "hooks", "h"), []byte("synced first"), 0o644)
	out := filepath.Join(dir, "work", "out.txt")
	want := "hello from-rule " + filepath.Join(dir, "work", "hooks") + "\nsynced first"
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := os.ReadFile(out)
		if err == nil && string(got) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %q (%v); want %q", out, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The command ran in the running instance: nothing was restarted.
	if st := sup.Runner().Status()[0]; st.State != runner.StateRunning || st.Reloads != 0 {
		t.Fatalf("web after a sync+exec: %+v; it must keep running, not reload", st)
	}
}

// networked is a backend whose instances run in a network of their own,
// as containers do.
type networked struct{ process.Backend }

func (*networked) Wire(spec runner.Spec, _ runner.Stack) runner.Spec { return spec }

// A container service's watch ignores what .dockerignore keeps out of its
// image, unless its image is made of what the host builds: the sources
// x-devstack.build reads are then what counts.
func TestReloadOptionsDockerignoreOnlyWithoutAHostBuild(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src"), 0o755)
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(`services:
  image:
    build: .
    develop: {watch: [{path: ./src, action: rebuild}]}
  hostbuilt:
    build: .
    x-devstack: {build: go build -o bin/app ./src}
    develop: {watch: [{path: ./src, action: rebuild}]}
`), 0o644)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "dockerignore"})
	if err != nil {
		t.Fatal(err)
	}
	o := ReloadOptions(p, func(*project.Service) (runner.Backend, error) { return &networked{}, nil }, false)
	got := map[string]bool{}
	for _, r := range o.Rules {
		got[r.Service] = r.DockerIgnore
	}
	if !got["image"] || got["hostbuilt"] || len(got) != 2 {
		t.Fatalf("DockerIgnore by service: %v; want image true, hostbuilt false", got)
	}
}
