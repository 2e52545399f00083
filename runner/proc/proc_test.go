//go:build linux

package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// child is a process started by a test, killed (with its group) and reaped
// at cleanup.
type child struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	done   chan struct{} // closed when Wait returned
	err    error         // Wait's result, valid after done
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// wait returns Wait's result, failing the test after a deadline.
func (c *child) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d did not exit", c.pid())
		return nil
	}
}

// readLine reads one line of the child's stdout.
func (c *child) readLine(t *testing.T) string {
	t.Helper()
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("reading stdout of pid %d: %v", c.pid(), err)
	}
	return strings.TrimSpace(line)
}

// start runs argv in its own process group with MarkerEnv=marker.
func start(t *testing.T, marker string, argv ...string) *child {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), MarkerEnv+"="+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", argv, err)
	}
	c := &child{cmd: cmd, stdout: bufio.NewReader(out), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
	})
	return c
}

// newMarker returns a marker no other test or test binary uses.
func newMarker(t *testing.T, parts ...string) string {
	return fmt.Sprintf("devstack-test-%d-%d-%s/%s", os.Getpid(), time.Now().UnixNano(), t.Name(), strings.Join(parts, "/"))
}

// waitUntil re-checks cond until it holds, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

func TestParseStat(t *testing.T) {
	rest := " 101 102 0 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 200"
	tests := []struct {
		name  string
		in    string
		want  stat
		isErr bool
	}{
		{name: "plain", in: "100 (sleep) S" + rest, want: stat{state: 'S', ppid: 101, pgrp: 102, startTime: 987654}},
		{name: "spaces in comm", in: "100 (my proc) R" + rest, want: stat{state: 'R', ppid: 101, pgrp: 102, startTime: 987654}},
		{name: "parens in comm", in: "100 (a) b (c)) Z" + rest, want: stat{state: 'Z', ppid: 101, pgrp: 102, startTime: 987654}},
		{name: "no comm", in: "100 sleep S" + rest, isErr: true},
		{name: "truncated", in: "100 (sleep) S 101 102", isErr: true},
		{name: "bad starttime", in: "100 (sleep) S" + strings.Replace(rest, "987654", "x", 1), isErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in + "\n"))
			if tt.isErr {
				if err == nil {
					t.Fatalf("parseStat(%q) = %+v, want error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStat(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestStartTimeAndAlive(t *testing.T) {
	// No Wait goroutine here: the test reaps the child itself, to see it as a
	// zombie first.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	st, err := StartTime(pid)
	if err != nil || st == 0 {
		t.Fatalf("StartTime(%d) = %d, %v", pid, st, err)
	}
	id, err := Lookup(pid)
	if err != nil || id != (Identity{PID: pid, StartTime: st}) {
		t.Fatalf("Lookup(%d) = %v, %v", pid, id, err)
	}
	if self := Self(); self.PID != os.Getpid() || self.StartTime == 0 || self.StartTime > st || !self.Alive() {
		t.Fatalf("Self() = %v, child start %d", self, st)
	}
	if !id.Alive() {
		t.Fatalf("%v not alive", id)
	}
	if wrong := (Identity{PID: id.PID, StartTime: id.StartTime + 1}); wrong.Alive() {
		t.Fatalf("%v alive with wrong start time", wrong)
	}

	// Zombie: exited but not reaped. WNOWAIT leaves it for cmd.Wait.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatalf("waitid: %v", err)
	}
	if id.Alive() {
		t.Fatalf("zombie %v alive", id)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("Wait = nil after SIGKILL")
	}
	if id.Alive() {
		t.Fatalf("reaped %v alive", id)
	}
	if _, err := StartTime(pid); !errors.Is(err, ErrNoProcess) {
		t.Fatalf("StartTime of reaped pid: %v, want ErrNoProcess", err)
	}
	if (Identity{}).Alive() {
		t.Fatal("zero Identity alive")
	}
}

func TestFindByMarker(t *testing.T) {
	base := newMarker(t)
	a, b := base+"/a/1", base+"/b/2"
	a1 := start(t, a, "sleep", "60")
	a2 := start(t, a, "sh", "-c", "sleep 60 & echo $!; wait")
	grandchild, err := strconv.Atoi(a2.readLine(t))
	if err != nil {
		t.Fatal(err)
	}
	b1 := start(t, b, "sleep", "60")
	start(t, base+"x/a/1", "sleep", "60") // shares the prefix without the separator

	want := []int{a1.pid(), a2.pid(), grandchild}
	slices.Sort(want)
	// The grandchild may still be between fork and exec; wait for it.
	var got []int
	waitUntil(t, "FindByMarker finds all of "+fmt.Sprint(want), func() bool {
		got, err = FindByMarker(a)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Equal(got, want)
	})

	all, err := FindByMarkerPrefix(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || !slices.Equal(all[a], want) || !slices.Equal(all[b], []int{b1.pid()}) {
		t.Fatalf("FindByMarkerPrefix = %v, want %s: %v, %s: [%d]", all, a, want, b, b1.pid())
	}

	if got, err := FindByMarker(base + "/nobody"); err != nil || len(got) != 0 {
		t.Fatalf("FindByMarker(unused) = %v, %v", got, err)
	}
	if _, err := FindByMarker(""); !errors.Is(err, ErrEmptyMarker) {
		t.Fatalf("FindByMarker(\"\") error = %v", err)
	}
	if _, err := FindByMarkerPrefix(""); !errors.Is(err, ErrEmptyMarker) {
		t.Fatalf("FindByMarkerPrefix(\"\") error = %v", err)
	}
}

func TestFindByMarkerExcludesSelf(t *testing.T) {
	// Re-run this test in a child whose start environment has the marker
	// (t.Setenv would not show in /proc/self/environ).
	if marker := os.Getenv("PROC_TEST_SELF_MARKER"); marker != "" {
		got, err := FindByMarker(marker)
		if err != nil || len(got) != 0 {
			t.Fatalf("in child %d: FindByMarker = %v, %v; want none", os.Getpid(), got, err)
		}
		return
	}
	marker := newMarker(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFindByMarkerExcludesSelf$", "-test.count=1")
	cmd.Env = append(os.Environ(), MarkerEnv+"="+marker, "PROC_TEST_SELF_MARKER="+marker)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestKillTree(t *testing.T) {
	marker := newMarker(t)
	leader := start(t, marker, "sh", "-c", "sleep 60 & echo $!; wait")
	gcPID, err := strconv.Atoi(leader.readLine(t))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "grandchild runs sleep", func() bool {
		b, _ := os.ReadFile(procPath(gcPID, "comm"))
		return strings.TrimSpace(string(b)) == "sleep"
	})
	gc, err := Lookup(gcPID)
	if err != nil {
		t.Fatal(err)
	}
	other := start(t, marker, "sleep", "60")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	began := time.Now()
	// Only the leader and the other sleep are named; the grandchild must go
	// with the leader's group.
	if err := KillTree(ctx, []int{leader.pid(), other.pid()}, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatalf("KillTree: %v", err)
	}
	if d := time.Since(began); d > 4*time.Second {
		t.Errorf("KillTree took %v; SIGTERM should have been enough", d)
	}
	if gc.Alive() {
		t.Errorf("grandchild %v still alive", gc)
	}
	for _, c := range []*child{leader, other} {
		var ee *exec.ExitError
		if err := c.wait(t); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("pid %d: Wait = %v, want killed by SIGTERM", c.pid(), err)
		}
	}
}

func TestKillTreeEscalates(t *testing.T) {
	// SIG_IGN survives exec, so sleep ignores SIGTERM too.
	c := start(t, newMarker(t), "sh", "-c", "trap '' TERM; echo ready; exec sleep 60")
	c.readLine(t)
	if err := KillTree(t.Context(), []int{c.pid()}, syscall.SIGTERM, 100*time.Millisecond); err != nil {
		t.Fatalf("KillTree: %v", err)
	}
	var ee *exec.ExitError
	if err := c.wait(t); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Wait = %v, want killed by SIGKILL", err)
	}
}

func TestKillTreeCanceled(t *testing.T) {
	c := start(t, newMarker(t), "sh", "-c", "trap '' TERM; echo ready; exec sleep 60")
	c.readLine(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := KillTree(ctx, []int{c.pid()}, syscall.SIGTERM, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("KillTree = %v, want context.Canceled", err)
	}
	var ee *exec.ExitError
	if err := c.wait(t); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Wait = %v, want killed by SIGKILL", err)
	}
}

func TestKillTreeGone(t *testing.T) {
	// Above PID_MAX_LIMIT (2^22), so no process can have it.
	const impossible = 1<<22 + 1
	if err := KillTree(t.Context(), []int{impossible}, syscall.SIGTERM, time.Second); err != nil {
		t.Fatalf("KillTree(nonexistent) = %v", err)
	}
	if err := KillTree(t.Context(), nil, syscall.SIGTERM, time.Second); err != nil {
		t.Fatalf("KillTree(nil) = %v", err)
	}
}

func TestExpandTree(t *testing.T) {
	// 10 leads group 10 with member 11 (a sibling, not a child); 12 is a
	// child of 11 that moved to group 12 (setsid); 20 is a non-leader in
	// group 30 (the caller's group); 40 is unrelated; 1 is init.
	snap := map[int]stat{
		1:  {ppid: 0, pgrp: 1},
		5:  {ppid: 1, pgrp: 30}, // caller
		10: {ppid: 5, pgrp: 10},
		11: {ppid: 5, pgrp: 10},
		12: {ppid: 11, pgrp: 12},
		20: {ppid: 5, pgrp: 30},
		21: {ppid: 20, pgrp: 30},
		30: {ppid: 1, pgrp: 30},
		40: {ppid: 1, pgrp: 40},
	}
	tests := []struct {
		name               string
		pids               []int
		wantPIDs, wantGrps []int
	}{
		{"group leader takes group and descendants", []int{10}, []int{10, 11, 12}, []int{10}},
		{"non-leader takes descendants only", []int{20}, []int{20, 21}, nil},
		{"caller's group is not signalled", []int{30}, []int{30}, nil},
		{"never init or self", []int{1, 5}, nil, nil},
		{"duplicates", []int{10, 10, 11}, []int{10, 11, 12}, []int{10}},
		{"unknown pid is still tried", []int{99}, []int{99}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pids, groups := expandTree(tt.pids, snap, 5, 30)
			if !slices.Equal(pids, tt.wantPIDs) || !slices.Equal(groups, tt.wantGrps) {
				t.Fatalf("expandTree(%v) = %v, %v; want %v, %v", tt.pids, pids, groups, tt.wantPIDs, tt.wantGrps)
			}
		})
	}
}

func TestPortHolder(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen("tcp", network)
			if err != nil {
				t.Skipf("listening on %s: %v", network, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port

			pid, cmd, ok := PortHolder(port)
			if !ok || pid != os.Getpid() {
				t.Fatalf("PortHolder(%d) = %d, %q, %v; want pid %d", port, pid, cmd, ok, os.Getpid())
			}
			full := commandLine(pid)
			if cmd == "" || len([]rune(cmd)) > maxCmdLen || cmd != full {
				t.Fatalf("cmd = %q, want the first %d characters of our command line", cmd, maxCmdLen)
			}

			err = PortFree(ln.Addr().(*net.TCPAddr).IP.String(), port)
			if !errors.Is(err, ErrPortInUse) {
				t.Fatalf("PortFree on a bound port = %v, want ErrPortInUse", err)
			}
			ln.Close()
			if _, _, ok := PortHolder(port); ok {
				t.Fatalf("PortHolder(%d) found a holder after close", port)
			}
			if err := PortFree(ln.Addr().(*net.TCPAddr).IP.String(), port); err != nil {
				t.Fatalf("PortFree after close = %v", err)
			}
		})
	}
}

func TestPortHolderChild(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	c := start(t, newMarker(t), py, "-c", fmt.Sprintf(
		"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',%d)); s.listen(); print('ready', flush=True); time.sleep(60)", port))
	if line := c.readLine(t); line != "ready" {
		t.Fatalf("child said %q", line)
	}
	pid, cmd, ok := PortHolder(port)
	if !ok || pid != c.pid() || !strings.Contains(cmd, "python3 -c import socket") || len([]rune(cmd)) != maxCmdLen || !strings.HasSuffix(cmd, "...") {
		t.Fatalf("PortHolder(%d) = %d, %q, %v; want pid %d running python, cut to %d", port, pid, cmd, ok, c.pid(), maxCmdLen)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"this is too long", 10, "this is..."},
		{"ééééééééééé", 10, "ééééééé..."},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestMarkerValue(t *testing.T) {
	tests := []struct {
		env    string
		want   string
		wantOK bool
	}{
		{"A=1\x00DEVSTACK_INSTANCE=p/s/1\x00B=2\x00", "p/s/1", true},
		{"DEVSTACK_INSTANCE=first\x00DEVSTACK_INSTANCE=second", "first", true},
		{"XDEVSTACK_INSTANCE=p\x00DEVSTACK_INSTANCEX=q\x00", "", false},
		{"DEVSTACK_INSTANCE=\x00", "", true},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := markerValue([]byte(tt.env))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("markerValue(%q) = %q, %v; want %q, %v", tt.env, got, ok, tt.want, tt.wantOK)
		}
	}
}

// A process in another pid namespace (a container's, here one made with
// unshare) is never found by marker: the engine owns it.
func TestFindByMarkerSkipsOtherPIDNamespaces(t *testing.T) {
	if err := exec.Command("unshare", "--pid", "--fork", "true").Run(); err != nil {
		t.Skipf("cannot make a pid namespace here (unshare --pid: %v)", err)
	}
	marker := newMarker(t, "ns")
	inNS := start(t, marker, "unshare", "--pid", "--fork", "sh", "-c", "echo ready; exec sleep 60")
	if line := inNS.readLine(t); line != "ready" {
		t.Fatalf("child said %q", line)
	}
	here := start(t, marker, "sleep", "60")
	var got []int
	waitUntil(t, "FindByMarker finds the process in our namespace", func() bool {
		var err error
		if got, err = FindByMarker(marker); err != nil {
			t.Fatal(err)
		}
		return slices.Contains(got, here.pid())
	})
	// unshare itself stays in our namespace; its child, the shell turned
	// sleep, is pid 1 of the new one and must not be found.
	for _, pid := range got {
		if pid != here.pid() && pid != inNS.pid() {
			t.Errorf("FindByMarker found pid %d, which runs in another pid namespace", pid)
		}
	}
}
