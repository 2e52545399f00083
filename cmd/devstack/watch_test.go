package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// goService writes a Go web service answering answer, with a develop.watch
// rule that rebuilds it on any change, and returns its directory and URL.
func goService(t *testing.T) (dir, url string, write func(answer string)) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir = writeProject(t, fmt.Sprintf(`name: watch%d
services:
  web:
    x-devstack:
      build: go build -o bin/web .
      run: bin/web
      port_env: PORT
    ports: ["127.0.0.1:%d:%d"]
    develop:
      watch:
        - path: .
          action: rebuild
`, port, port, port))
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module web\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("bin/\n"), 0o644)
	write = func(answer string) {
		// As an editor that saves by rename does.
		tmp := filepath.Join(dir, ".main.go.tmp")
		src := `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("` + answer + `")) })
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
}
`
		if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "main.go")); err != nil {
			t.Fatal(err)
		}
	}
	write("v1")
	return dir, fmt.Sprintf("http://127.0.0.1:%d/", port), write
}

// waitAnswer waits until url answers want.
func waitAnswer(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = string(b); last == want {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered %q (last: %q)", url, want, last)
}

func TestUpWatchAndWatchHotReloadAGoService(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain on PATH")
	}
	dir, url, write := goService(t)
	c := newCLI(t, dir)
	c.must("up", "-d", "--watch")
	waitAnswer(t, url, "v1")
	write("v2")
	waitAnswer(t, url, "v2")
	st := c.ps()
	if len(st) != 1 || st[0].Reloads != 1 || st[0].ReloadP50 <= 0 {
		t.Fatalf("ps after one reload: %+v", st)
	}
	if ps := c.must("ps").stdout; !strings.Contains(ps, "RELOADS") || !strings.Contains(ps, "1 p50 ") {
		t.Fatalf("ps shows no reload count and p50:\n%s", ps)
	}
	logs := c.must("logs", "web").stdout
	if !strings.Contains(logs, "reloaded in ") || !strings.Contains(logs, "(main.go changed)") {
		t.Fatalf("the log does not say the reload's time and cause:\n%s", logs)
	}

	// devstack watch on the running stack: it prints the reloads, and
	// Ctrl-C stops watching, leaving the stack up.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := c.command(ctx, "watch")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errLines := lines(stderr)
	outLines := lines(stdout)
	waitLine(t, errLines, "devstack: watching 1 develop.watch rule(s)")
	write("v3")
	waitLine(t, outLines, "reloaded in ")
	waitAnswer(t, url, "v3")
	cmd.Process.Signal(syscall.SIGINT)
	waitLine(t, errLines, "stopped watching")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after Ctrl-C: %v", err)
	}
	// Not watching any more: a save changes nothing.
	write("v4")
	// An absence: wait well past the debounce for a reload to have begun.
	time.Sleep(time.Second)
	waitAnswer(t, url, "v3")
	if st := c.ps(); st[0].State != "running" || st[0].Reloads != 2 {
		t.Fatalf("the stack after watch ended: %+v", st)
	}
}

func TestWatchSaysWhatIsMissing(t *testing.T) {
	c := newCLI(t, writeProject(t, "name: nowatch\nservices:\n  a:\n    x-devstack: {run: [sleep, '300']}\n"))
	if r := c.run("watch"); r.code == 0 || !strings.Contains(r.stderr, "is not running; `devstack up --watch`") {
		t.Fatalf("watch without a running stack: %d %s", r.code, r.stderr)
	}
	c.must("up", "-d")
	if r := c.run("watch"); r.code == 0 || !strings.Contains(r.stderr, "no service of this project has a develop.watch section") {
		t.Fatalf("watch without develop.watch: %d %s", r.code, r.stderr)
	}
}

// lines sends r's lines.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 1000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

func waitLine(t *testing.T, ch <-chan string, sub string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before a line with %q", sub)
			}
			if strings.Contains(l, sub) {
				return
			}
		case <-deadline:
			t.Fatalf("no line with %q within 2 minutes", sub)
		}
	}
}
