package holder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketEnv, set, makes the test binary a holder listening there, with
// its arguments as the command: the tests run the real thing as a process
// of its own (it reaps every child of its process, signals end it).
const socketEnv = "HOLDER_TEST_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(socketEnv); sock != "" {
		os.Exit(serveForTest(sock, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// serveForTest closes fd 3 once the socket listens (before any fork, so
// no child inherits it): the test reads EOF there.
func serveForTest(sock string, argv []string) int {
	ready := os.NewFile(3, "ready")
	code, err := Serve(context.Background(), Options{Socket: sock, Argv: argv, Ready: func() { ready.Close() }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 111
	}
	return code
}

// wait bounds every wait of these tests.
const wait = 5 * time.Second

type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	sock   string
	lines  chan string // the holder's stdout (its child's), line by line
	stderr string      // file
	done   chan struct{}
	err    error // cmd.Wait's, once done
}

// startHolder runs a holder with argv as its command, env added to the
// test's environment, and waits until it listens.
func startHolder(t *testing.T, sock string, env []string, argv ...string) *proc {
	t.Helper()
	if sock == "" {
		sock = filepath.Join(t.TempDir(), "holder.sock")
	}
	p := &proc{t: t, sock: sock, lines: make(chan string, 100), stderr: filepath.Join(t.TempDir(), "stderr"), done: make(chan struct{})}
	cmd := exec.Command(os.Args[0], argv...)
	// Under -race, an exit 0 sleeps a second first (atexit_sleep_ms).
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(append(os.Environ(), socketEnv+"="+sock, "GORACE="+gorace), env...)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(p.stderr)
	if err != nil {
		t.Fatal(err)
	}
	// Files, not writers: no copying goroutine for Wait to wait on,
	// whatever a child leaves running with them.
	cmd.Stdout, cmd.Stderr = outW, errF
	cmd.ExtraFiles = []*os.File{readyW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errF.Close()
	readyW.Close()
	p.cmd = cmd
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		outR.Close()
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	readyDone := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = readyR.Read(b[:]) // EOF once closed: listening, or dead
		readyR.Close()
		close(readyDone)
	}()
	select {
	case <-readyDone:
	case <-time.After(wait):
		t.Fatalf("holder not listening after %s", wait)
	}
	return p
}

func (p *proc) dial() *Client {
	p.t.Helper()
	c, err := Dial(p.t.Context(), p.sock)
	if err != nil {
		p.t.Fatalf("%v\nholder's stderr: %s", err, p.stderrText())
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

func (p *proc) stderrText() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// line waits for the holder's child to print want.
func (p *proc) line(want string) {
	p.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("stdout ended before %q", want)
			}
			if l == want {
				return
			}
		case <-deadline:
			p.t.Fatalf("no %q on stdout within %s", want, wait)
		}
	}
}

// output waits for stdout to end (the holder and every child gone).
func (p *proc) output() []string {
	p.t.Helper()
	var got []string
	deadline := time.After(wait)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return got
			}
			got = append(got, l)
		case <-deadline:
			p.t.Fatalf("stdout still open after %s; so far %q", wait, got)
		}
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// exit waits for the holder to exit and returns its code.
func (p *proc) exit() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(wait):
		p.t.Fatalf("holder still running after %s", wait)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

// exitWith checks the holder's code, that it printed nothing of its own,
// and that it removed its socket.
func (p *proc) exitWith(want int) {
	p.t.Helper()
	if got := p.exit(); got != want {
		p.t.Errorf("holder exited %d, want %d; stderr: %s", got, want, p.stderrText())
	}
	if s := p.stderrText(); s != "" {
		p.t.Errorf("stderr: %q, want nothing", s)
	}
	if _, err := os.Lstat(p.sock); !errors.Is(err, fs.ErrNotExist) {
		p.t.Errorf("socket left behind (%v)", err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return c
}

func write(t *testing.T, path, data string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// gone waits until pid no longer exists, zombie included: killed and
// reaped.
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Fatalf("pid %d still there after %s: %s", pid, wait, stat)
		}
		time.Sleep(time.Millisecond) // polls a condition, under the deadline
	}
}

// ppid reads pid's parent from /proc.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...; comm may hold spaces, not ')'.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

func TestHolderStartPlacesFiles(t *testing.T) {
	dir := t.TempDir()
	shared, root := filepath.Join(dir, "shared"), filepath.Join(dir, "root")
	// The image's files as the standby sees them.
	write(t, filepath.Join(root, "bin/svc"), "#!/bin/sh\nexit 9\n", 0o755)
	write(t, filepath.Join(root, "bin/tool"), "#!/bin/sh\necho old-tool\n", 0o755)
	write(t, filepath.Join(root, "app/old.txt"), "old", 0o644)
	// The reload's files, prepared by devstack.
	write(t, filepath.Join(shared, "1"), "#!/bin/sh\necho new-tool\n", 0o755)
	write(t, filepath.Join(shared, "2"), "hello", 0o600)
	write(t, filepath.Join(shared, "3"), `#!/bin/sh
tool
cat "$ROOT/app/sub/a.txt"; echo
test -e "$ROOT/app/old.txt" || echo old-gone
echo "var=$HOLDER_TEST_VAR"
`, 0o600)

	// svc is found on PATH, and only after the placement is it the new one.
	p := startHolder(t, "", []string{"ROOT=" + root, "HOLDER_TEST_VAR=x", "PATH=" + filepath.Join(root, "bin") + ":/usr/bin:/bin"}, "svc")
	pid, err := p.dial().Start(ctx(t), []Place{
		{Dst: filepath.Join(root, "bin/tool"), Src: filepath.Join(shared, "1"), Link: true},
		{Dst: filepath.Join(root, "app/sub/a.txt"), Src: filepath.Join(shared, "2"), Mode: 0o640},
		{Dst: filepath.Join(root, "bin/svc"), Src: filepath.Join(shared, "3"), Mode: 0o755},
	}, []string{filepath.Join(root, "app/old.txt")})
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Errorf("pid %d", pid)
	}
	want := []string{"new-tool", "hello", "old-gone", "var=x"}
	if got := p.output(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("child printed %q, want %q", got, want)
	}
	p.exitWith(0)

	if l, err := os.Readlink(filepath.Join(root, "bin/tool")); err != nil || l != filepath.Join(shared, "1") {
		t.Errorf("bin/tool: link to %q (%v), want %q", l, err, filepath.Join(shared, "1"))
	}
	for path, mode := range map[string]fs.FileMode{"app/sub/a.txt": 0o640, "bin/svc": 0o755, "app/sub": fs.ModeDir | 0o755} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(root, "bin"))
	if len(ents) != 2 {
		t.Errorf("bin holds %v, want svc and tool only (no temp file left)", ents)
	}
}

func TestHolderProbe(t *testing.T) {
	p := startHolder(t, "", []string{"HOLDER_TEST_VAR=probe-env"}, "sh", "-c", "exit 0")
	c := p.dial()
	cwd, _ := os.Getwd() // the holder's too

	probe := func(t *testing.T, argv []string, timeout time.Duration) (int, string) {
		t.Helper()
		code, out, err := c.Probe(ctx(t), argv, timeout)
		if err != nil {
			t.Fatal(err)
		}
		return code, out
	}
	t.Run("code and output", func(t *testing.T) {
		code, out := probe(t, []string{"/bin/sh", "-c", "echo out; echo err >&2; echo $HOLDER_TEST_VAR; pwd; exit 7"}, 3*time.Second)
		if want := "out\nerr\nprobe-env\n" + cwd + "\n"; code != 7 || out != want {
			t.Errorf("got %d %q, want 7 %q", code, out, want)
		}
	})
	t.Run("on PATH", func(t *testing.T) {
		if code, out := probe(t, []string{"sh", "-c", "echo hi"}, 0); code != 0 || out != "hi\n" {
			t.Errorf("got %d %q", code, out)
		}
	})
	t.Run("killed", func(t *testing.T) {
		if code, _ := probe(t, []string{"/bin/sh", "-c", "kill -USR1 $$"}, 3*time.Second); code != 128+int(syscall.SIGUSR1) {
			t.Errorf("code %d, want %d", code, 128+int(syscall.SIGUSR1))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		code, out := probe(t, []string{"/bin/sh", "-c", "echo started; exec sleep 30"}, 200*time.Millisecond)
		if code != -1 || out != "Health check exceeded timeout (200ms)" {
			t.Errorf("got %d %q", code, out)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("answered after %s", d)
		}
	})
	t.Run("leftovers killed and reaped", func(t *testing.T) {
		// The background sleep keeps the output pipe open: without the
		// group kill the answer would wait for the timeout.
		start := time.Now()
		code, out := probe(t, []string{"/bin/sh", "-c", "sleep 30 & echo $!"}, 10*time.Second)
		if d := time.Since(start); code != 0 || d > 3*time.Second {
			t.Fatalf("got %d %q after %s", code, out, d)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		gone(t, pid)
	})
	t.Run("output capped", func(t *testing.T) {
		code, out := probe(t, []string{"/bin/sh", "-c", `head -c 100000 /dev/zero | tr '\0' x`}, 3*time.Second)
		if code != 0 || out != strings.Repeat("x", 4096) {
			t.Errorf("got %d and %d bytes, want 0 and 4096 x", code, len(out))
		}
	})
	t.Run("cannot run", func(t *testing.T) {
		for _, argv := range [][]string{{"no-such-command-xyz"}, {"/no/such/probe"}, {}} {
			_, _, err := c.Probe(ctx(t), argv, time.Second)
			var he *Error
			if !errors.As(err, &he) {
				t.Errorf("%q: %v, want an *Error", argv, err)
			}
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		// Each answer carries its own probe's code: the reaper hands each
		// exit to the right waiter.
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				c := p.dial()
				code, _, err := c.Probe(ctx(t), []string{"/bin/sh", "-c", fmt.Sprintf("exit %d", i)}, 3*time.Second)
				if err != nil || code != i {
					t.Errorf("probe %d: code %d, %v", i, code, err)
				}
			})
		}
		wg.Wait()
	})
	t.Run("ctx bounds the call", func(t *testing.T) {
		c := p.dial()
		short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := c.Probe(short, []string{"sleep", "30"}, 10*time.Second)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Errorf("after %s: %v, want the deadline", time.Since(start), err)
		}
		// The answer may still come: the client does not read it as the
		// next call's.
		if _, _, err := c.Probe(ctx(t), []string{"true"}, time.Second); !errors.Is(err, ErrClosed) {
			t.Errorf("next call: %v, want ErrClosed", err)
		}
	})
	p.signal(syscall.SIGTERM) // before the start: nothing to stop
	p.exitWith(0)
}

func TestHolderSignalForwarded(t *testing.T) {
	p := startHolder(t, "", nil, "/bin/sh", "-c", `trap 'kill $! 2>/dev/null; exit 3' TERM
sleep 30 </dev/null >/dev/null 2>&1 &
echo ready
wait`)
	if _, err := p.dial().Start(ctx(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	p.line("ready")
	p.signal(syscall.SIGTERM)
	p.exitWith(3)
}

func TestHolderChildKilledBySignal(t *testing.T) {
	p := startHolder(t, "", nil, "/bin/sh", "-c", "echo ready; exec sleep 30")
	if _, err := p.dial().Start(ctx(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	p.line("ready")
	p.signal(syscall.SIGUSR1) // forwarded; the default action kills
	p.exitWith(128 + int(syscall.SIGUSR1))
}

func TestHolderSecondStartRefused(t *testing.T) {
	p := startHolder(t, "", nil, "/bin/sh", "-c", "echo ready; exec sleep 30")
	c := p.dial()
	if _, err := c.Start(ctx(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	p.line("ready")
	for _, c := range []*Client{c, p.dial()} {
		_, err := c.Start(ctx(t), nil, nil)
		var he *Error
		if !errors.As(err, &he) || !strings.Contains(he.Msg, "once") {
			t.Errorf("second start: %v, want a refusal", err)
		}
	}
	p.signal(syscall.SIGTERM)
	p.exitWith(128 + int(syscall.SIGTERM))
}

func TestHolderPlacementErrorLeavesChildUnstarted(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "started")
	p := startHolder(t, "", []string{"MARK=" + mark}, "/bin/sh", "-c", `touch "$MARK"; exec sleep 30`)
	c := p.dial()
	missing := filepath.Join(dir, "shared/missing")
	_, err := c.Start(ctx(t), []Place{{Dst: filepath.Join(dir, "app/x"), Src: missing}}, nil)
	var he *Error
	if !errors.As(err, &he) || !strings.Contains(he.Msg, missing) || !strings.Contains(he.Msg, filepath.Join(dir, "app/x")) {
		t.Fatalf("start: %v, want an *Error naming %s", err, missing)
	}
	// The holder still answers, and nothing started.
	if code, _, err := c.Probe(ctx(t), []string{"test", "-e", mark}, time.Second); err != nil || code != 1 {
		t.Errorf("probe for %s: code %d, %v; want 1 (absent)", mark, code, err)
	}
	if _, err := c.Start(ctx(t), nil, nil); !errors.As(err, &he) {
		t.Errorf("start after a failed one: %v, want a refusal", err)
	}
	p.signal(syscall.SIGTERM)
	p.exitWith(0)
	if _, err := os.Stat(mark); err == nil {
		t.Error("the command ran")
	}
}

func TestHolderStartCommandNotFound(t *testing.T) {
	p := startHolder(t, "", nil, "no-such-command-xyz")
	_, err := p.dial().Start(ctx(t), nil, nil)
	var he *Error
	if !errors.As(err, &he) || !strings.Contains(he.Msg, "no-such-command-xyz") {
		t.Fatalf("start: %v, want an *Error naming the command", err)
	}
	p.signal(syscall.SIGINT)
	p.exitWith(0)
}

func TestHolderStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "holder.sock")
	// A socket whose holder is gone: the file stays, nobody answers.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(ctx(t), sock); err == nil {
		t.Fatal("the stale socket answers")
	}
	p := startHolder(t, sock, nil, "sh", "-c", "exit 0")
	// Anyone who can reach the directory may connect: devstack on the
	// host is not always the container's uid.
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("socket: %v, %v; want mode 0777", fi.Mode(), err)
	}
	if code, _, err := p.dial().Probe(ctx(t), []string{"true"}, time.Second); err != nil || code != 0 {
		t.Fatalf("probe: %d, %v", code, err)
	}
	p.signal(syscall.SIGQUIT)
	p.exitWith(0)
}

func TestHolderReapsOrphans(t *testing.T) {
	dir := t.TempDir()
	// The inner sh exits at once: its sleep is an orphan, reparented to
	// the holder.
	p := startHolder(t, "", []string{"DIR=" + dir}, "/bin/sh", "-c", `sh -c 'sleep 30 </dev/null >/dev/null 2>&1 & echo $! >"$DIR/orphan"'
echo ready
exec sleep 30`)
	if _, err := p.dial().Start(ctx(t), nil, nil); err != nil {
		t.Fatal(err)
	}
	p.line("ready")
	b, err := os.ReadFile(filepath.Join(dir, "orphan"))
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := ppid(t, orphan); got != p.cmd.Process.Pid {
		t.Fatalf("orphan %d has parent %d, want the holder %d", orphan, got, p.cmd.Process.Pid)
	}
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone(t, orphan) // reaped, not left a zombie
	// And the service's own status was not taken with it.
	p.signal(syscall.SIGTERM)
	p.exitWith(128 + int(syscall.SIGTERM))
}
