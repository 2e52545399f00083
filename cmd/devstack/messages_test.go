package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A supervisor killed while `up -d` waits for the stack is reported as
// gone, not as running "so you can look".
func TestUpDetachedSaysWhenItsSupervisorWasKilled(t *testing.T) {
	c := newCLI(t, writeProject(t, `
services:
  slow:
    x-devstack: {run: "sleep 300"}
    healthcheck: {test: ["CMD", "false"], interval: 10s, start_period: 60s, retries: 100}
`))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, "up", "-d")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var sup int
	for deadline := time.Now().Add(30 * time.Second); sup == 0; {
		matches, _ := filepath.Glob(filepath.Join(c.state, "*", "state.json"))
		if len(matches) == 1 {
			sup = supervisorPID(t, c)
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervisor never recorded itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	out := errb.String()
	if strings.Contains(out, "keeps running") || !strings.Contains(out, "stopped while the stack was coming up") {
		t.Errorf("up -d whose supervisor was SIGKILLed said:\n%s", out)
	}
}

// Another user is told that the stack is not theirs, not that none runs
// or that no project of that name has run.
func TestAnotherUserIsToldPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run devstack as another user")
	}
	// A binary, a project file and a working directory the other user
	// can read; the state is this user's, private.
	// (Not t.TempDir: its parent is private.)
	pub, err := os.MkdirTemp("", "devstack-public")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	os.Chmod(pub, 0o755)
	bin := filepath.Join(pub, "devstack")
	var b []byte
	b, err = os.ReadFile(devstackBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	proj := filepath.Join(pub, "proj")
	os.Mkdir(proj, 0o755)
	os.WriteFile(filepath.Join(proj, "devstack.yaml"), []byte("name: mine\nservices:\n  a:\n    x-devstack: {run: \"sleep 300\"}\n"), 0o644)
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, "mine"), 0o700); err != nil {
		t.Fatal(err)
	}
	as := func(dir string, args ...string) string {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Dir = dir
		cmd.Env = []string{"DEVSTACK_STATE_DIR=" + state, "HOME=" + pub, "PATH=/usr/bin:/bin", "NO_COLOR=1"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatalf("running devstack as another user: %v", err)
		}
		return string(out)
	}
	for _, tc := range []struct {
		dir  string
		args []string
	}{
		{proj, []string{"ps"}},
		{proj, []string{"down"}},
		{"/", []string{"-p", "mine", "logs"}},
		{"/", []string{"-p", "mine", "traces"}},
	} {
		if out := as(tc.dir, tc.args...); !strings.Contains(out, "permission denied") || !strings.Contains(out, "another user") {
			t.Errorf("another user's `devstack %s` said:\n%s", strings.Join(tc.args, " "), out)
		}
	}
}

// daemonStack's service leaves three processes outside its process group:
// one in a session of its own (setsid), a daemon (double fork), and one
// that also cleared its environment (env -i), which only a cgroup knows.
const daemonStack = `
name: daemons
services:
  worker:
    x-devstack:
      run: ["sh", "-c", "setsid sleep 300 & echo $$! > setsid.pid; (setsid sh -c 'sleep 301 & echo $$! > double.pid' &); env -i setsid sleep 302 & echo $$! > envi.pid; exec sleep 303"]
`

func daemonPIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for deadline := time.Now().Add(20 * time.Second); len(pids) < 3; time.Sleep(10 * time.Millisecond) {
		for _, n := range []string{"setsid", "double", "envi"} {
			if b, err := os.ReadFile(filepath.Join(dir, n+".pid")); err == nil && strings.HasSuffix(string(b), "\n") {
				pids[n], _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not start its children: %v", pids)
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pids
}

// Nothing of the stack survives `down`, live or after the supervisor was
// SIGKILLed: not a setsid child, a daemon, or (with cgroups) an env -i one.
func TestDownLeavesNoDaemonizedGrandchild(t *testing.T) {
	for _, killed := range []bool{false, true} {
		t.Run(fmt.Sprintf("supervisor killed=%v", killed), func(t *testing.T) {
			dir := writeProject(t, daemonStack)
			c := newCLI(t, dir)
			c.must("up", "-d")
			pids := daemonPIDs(t, dir)
			if killed {
				sup := supervisorPID(t, c)
				syscall.Kill(sup, syscall.SIGKILL)
				waitGone(t, sup)
			}
			c.must("down")
			for n, pid := range pids {
				for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				if alive(pid) {
					t.Errorf("the %s grandchild (pid %d) survived down", n, pid)
				}
			}
		})
	}
}

// The supervisor may hold as many file descriptors as the system lets
// it: its soft limit is raised to the hard one (the Go runtime does it at
// start, see syscall/rlimit.go, and restores the shell's for the services
// it starts), even when the shell that ran `up -d` had a low one.
func TestSupervisorRunsAtTheHardFDLimit(t *testing.T) {
	c := newCLI(t, writeProject(t, "name: fds\nservices:\n  a:\n    x-devstack: {run: \"sleep 300\"}\n"))
	// Started from a shell whose soft limit is low, as many are (1024).
	cmd := c.command(t.Context(), "up", "-d")
	cmd.Args = append([]string{"sh", "-c", `ulimit -Sn 256 && exec "$0" "$@"`, devstackBin}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("up -d: %v\n%s", err, out)
	}
	limits := func(pid int) (soft, hard string) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "Max open files")); strings.HasPrefix(line, "Max open files") && len(f) >= 2 {
				return f[0], f[1]
			}
		}
		t.Fatalf("no open files limit in /proc/%d/limits", pid)
		return
	}
	soft, hard := limits(supervisorPID(t, c))
	// The runtime leaves it one below the hard limit, to tell its own
	// change from a later prlimit's.
	s, _ := strconv.Atoi(soft)
	h, _ := strconv.Atoi(hard)
	if hard != "unlimited" && s < h-1 {
		t.Errorf("the supervisor's open files limit is %s (hard %s); want the hard limit", soft, hard)
	}
}
