package process

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
)

// A workdir removed after the file was loaded is named as such, not
// reported as the shell missing ("fork/exec /bin/sh: no such file or
// directory").
func TestStartNamesAMissingWorkdir(t *testing.T) {
	dir := t.TempDir()
	svc := &project.Service{Name: "api"}
	svc.X.Run = project.Command{Args: []string{"true"}}
	svc.X.Workdir = "gone"
	spec := runner.Spec{Project: &project.Project{Name: "p", Dir: dir}, Service: svc, Stdout: io.Discard, Stderr: io.Discard}
	inst, err := (&Backend{}).Start(t.Context(), spec)
	if err == nil {
		inst.Stop(t.Context(), syscall.SIGKILL, 0)
		t.Fatal("a process started in a missing workdir")
	}
	if want := filepath.Join(dir, "gone"); !strings.Contains(err.Error(), "workdir "+want+" is not there") || !strings.Contains(err.Error(), `"api"`) {
		t.Errorf("got %q; want it to name the service and its missing workdir %s", err, want)
	}
}

// Nothing a service started survives its stop: not a child that left the
// process group (setsid), not a daemon (double fork), and, where the
// system gives the service a cgroup, not one that also cleared its
// environment (env -i), which only the cgroup still knows.
func TestStopLeavesNothingBehind(t *testing.T) {
	script := `setsid sleep 300 & echo $! > setsid.pid
(setsid sh -c 'sleep 301 & echo $! > double.pid' &)
env -i setsid sleep 302 & echo $! > envi.pid
exec sleep 303`
	for _, tc := range []struct {
		name     string
		backend  *Backend
		survives []string // what this mode cannot find
	}{
		{"cgroup", &Backend{}, nil},
		{"marker only", &Backend{NoCgroup: true}, []string{"envi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.backend.NoCgroup == false {
				if cg, err := proc.NewCgroup("devstack-probe-" + strconv.Itoa(os.Getpid())); err != nil {
					t.Skipf("this system gives no cgroup: %v", err)
				} else {
					cg.Remove(t.Context())
				}
			}
			dir := t.TempDir()
			svc := &project.Service{Name: "api"}
			svc.X.Run = project.Command{Args: []string{"sh", "-c", script}}
			marker := fmt.Sprintf("test@%d/%s/api", os.Getpid(), strings.ReplaceAll(tc.name, " ", "-"))
			spec := runner.Spec{Project: &project.Project{Name: "p", Dir: dir}, Service: svc,
				Env: []string{proc.MarkerEnv + "=" + marker}, Marker: marker, Stdout: io.Discard, Stderr: io.Discard}
			inst, err := tc.backend.Start(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			pids := map[string]int{}
			t.Cleanup(func() {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			for deadline := time.Now().Add(10 * time.Second); len(pids) < 3; {
				for _, n := range []string{"setsid", "double", "envi"} {
					if b, err := os.ReadFile(filepath.Join(dir, n+".pid")); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
						pids[n], _ = strconv.Atoi(strings.TrimSpace(string(b)))
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the service did not start its children: %v", pids)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := inst.Stop(t.Context(), syscall.SIGTERM, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			for n, pid := range pids {
				if !slices.Contains(tc.survives, n) && !waitGone(pid, 5*time.Second) {
					t.Errorf("the %s child (pid %d) survived the stop", n, pid)
				}
			}
		})
	}
}

// waitGone waits until pid has exited (a zombie counts as gone), at most d.
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if s := string(b); strings.Contains(s[strings.LastIndexByte(s, ')'):], ") Z") {
			return true
		}
	}
	return false
}
