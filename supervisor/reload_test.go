package supervisor

import (
	"context"
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
	sup, err := Start(t.Context(), Options{Project: p, BackendFor: func(*project.Service) (runner.Backend, error) { return pb, nil }})
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
	sup, url := reloadStack(t, "v0")
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

