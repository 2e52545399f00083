// Package process is the runner Backend that runs services as native host
// processes.
//
// Each service runs in its own process group, so a signal reaches everything
// it spawned and nothing survives a stop. Each also gets a parent-death
// signal (SIGKILL), so the direct child dies with devstack even on SIGKILL;
// grandchildren that outlive it are found later by their DEVSTACK_INSTANCE
// marker (see runner/proc) and cleaned up by the next `up` or `down`.
//
// Its instances are runner.HostProcess: the supervisor records their pids
// and finds which service opened a connection by the process tree that
// holds its socket. It is neither runner.Networked (a process shares the
// host's network: it listens where the runner says) nor runner.Lasting (a
// process stops with its supervisor).
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/proc"
	"github.com/devstack/devstack/runner/project"
)

// Backend runs services as processes.
type Backend struct {
	// NoCgroup starts services without a cgroup of their own even where
	// the system allows one (their process group and marker still find
	// what they leave behind, except a grandchild that cleared its
	// environment).
	NoCgroup bool
}

var (
	_ runner.Backend   = (*Backend)(nil)
	_ runner.Builder   = (*Backend)(nil)
	_ runner.Reacher   = (*Backend)(nil)
	_ runner.Instance  = (*Instance)(nil)
	_ runner.Execer    = (*Instance)(nil)
	_ runner.Commander = (*Instance)(nil)
)

// Name implements runner.Backend.
func (*Backend) Name() string { return "process" }

// CanRun reports whether svc says how to run as a process.
func CanRun(svc *project.Service) bool { return !svc.X.Run.Empty() }

// Build runs x-devstack.build, if any, with its output in the service's log.
func (*Backend) Build(ctx context.Context, spec runner.Spec) error {
	b := spec.Service.X.Build
	if b.Empty() {
		return nil
	}
	cmd := command(ctx, spec, b.Argv())
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	// The build runs in its own group too, so cancelling kills go build's
	// compiler children as well.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build command %q failed: %w", b.Args, err)
	}
	return nil
}

// Start implements runner.Backend.
func (b *Backend) Start(ctx context.Context, spec runner.Spec) (runner.Instance, error) {
	run := spec.Service.X.Run
	if run.Empty() {
		return nil, fmt.Errorf("service %q has no x-devstack.run command to run as a process", spec.Service.Name)
	}
	if spec.Marker != "" {
		// A marker of the instance's own, below the service's: two
		// instances of one service run side by side during a reload,
		// and ending one must not touch the other's processes. Orphan
		// cleanup finds both by the project's prefix.
		spec.Marker += "/" + strconv.FormatInt(time.Now().UnixNano(), 36)
		spec.Env = append(slices.Clip(spec.Env), proc.MarkerEnv+"="+spec.Marker)
	}
	env, filesDir, err := writeFiles(spec)
	if err != nil {
		return nil, fmt.Errorf("starting service %q: %w", spec.Service.Name, err)
	}
	spec.Env = env
	// Not exec.CommandContext: the instance outlives the start request.
	cmd := command(context.Background(), spec, run.Argv())
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	// A cgroup of its own, where the system allows: what the service
	// forks stays in it whatever it does (setsid, double fork, env -i), so
	// a stop leaves nothing behind. Without one, the process group and
	// the marker find what they can.
	var cg *proc.Cgroup
	if !b.NoCgroup {
		cg = newCgroup(spec)
	}
	if cg != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.FD()
	}
	err = cmd.Start()
	if err != nil && cg != nil {
		// Starting into a cgroup (clone3) may be refused (seccomp, an
		// old kernel): start as before, without.
		cg.Remove(ctx)
		cg = nil
		cmd = command(context.Background(), spec, run.Argv())
		cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
		err = cmd.Start()
	}
	if err != nil {
		if filesDir != "" {
			os.RemoveAll(filesDir)
		}
		if _, serr := os.Stat(cmd.Dir); serr != nil {
			// exec reports a missing working directory as the program
			// missing ("fork/exec /bin/sh: no such file or directory").
			return nil, fmt.Errorf("starting service %q: its workdir %s is not there (%w); create it, or correct x-devstack.workdir", spec.Service.Name, cmd.Dir, serr)
		}
		return nil, fmt.Errorf("starting %q in %s: %w", run.Args, cmd.Dir, err)
	}
	inst := &Instance{cmd: cmd, spec: spec, cg: cg, filesDir: filesDir, done: make(chan struct{})}
	go inst.wait()
	if err := applyUlimits(cmd.Process.Pid, spec.Service.Compose.Ulimits); err != nil {
		_ = inst.Stop(context.Background(), syscall.SIGKILL, 0)
		return nil, fmt.Errorf("starting service %q: %w", spec.Service.Name, err)
	}
	return inst, nil
}

// command prepares argv to run in the service's workdir and environment.
func command(ctx context.Context, spec runner.Spec, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = workdir(spec)
	// A relative program path with a slash (bin/shop) is relative to the
	// workdir, as it would be in a shell there.
	if filepath.Base(argv[0]) != argv[0] && !filepath.IsAbs(argv[0]) {
		cmd.Path = filepath.Join(cmd.Dir, argv[0])
		cmd.Err = nil
	}
	// The host's environment first, so PATH, HOME and GOPATH work as in the
	// user's shell; the service's own environment wins (exec keeps the last
	// value of a duplicated key).
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	return cmd
}

func workdir(spec runner.Spec) string { return spec.Project.Workdir(spec.Service) }

// Instance is one running process (and its process group).
type Instance struct {
	cmd  *exec.Cmd
	spec runner.Spec
	cg   *proc.Cgroup // nil when the system gives none
	// filesDir holds its secrets and configs; removed when it exits.
	filesDir string
	done     chan struct{}
	exit     runner.Exit
	once     sync.Once
}

// ID is the pid.
func (i *Instance) ID() string { return strconv.Itoa(i.cmd.Process.Pid) }

// PID is the process id, which is also the process group id.
func (i *Instance) PID() int { return i.cmd.Process.Pid }

func (i *Instance) wait() {
	err := i.cmd.Wait()
	e := runner.Exit{At: time.Now()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Code, e.Signal = -1, ws.Signal().String()
		} else {
			e.Code = ee.ExitCode()
		}
	default:
		e.Err, e.Code = err, -1
	}
	// The leader is gone; whatever it left goes too, so a restart never
	// finds its port held by a stray child, and a down leaves nothing: its
	// group, its cgroup (even a grandchild that cleared its environment),
	// and every process that carries its marker (one that daemonised out
	// of the group, where there is no cgroup).
	_ = syscall.Kill(-i.cmd.Process.Pid, syscall.SIGKILL)
	i.signalOthers(syscall.SIGKILL)
	if i.cg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cgroupRemoveWait)
		_ = i.cg.Remove(ctx)
		cancel()
	}
	if i.filesDir != "" {
		os.RemoveAll(i.filesDir)
	}
	i.exit = e
	close(i.done)
}

// Wait implements runner.Instance.
func (i *Instance) Wait() runner.Exit {
	<-i.done
	return i.exit
}

// Stop implements runner.Instance: sig to the whole group, then SIGKILL
// after grace or when ctx ends.
func (i *Instance) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	pgid := i.cmd.Process.Pid
	select {
	case <-i.done:
		return nil
	default:
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %s to process group %d: %w", sig, pgid, err)
	}
	// Those that left the group get the same chance to stop cleanly.
	i.signalOthers(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-i.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", pgid, err)
	}
	<-i.done
	return nil
}

// Exec implements runner.Execer: healthchecks run in the service's workdir
// and environment, in a group of their own that a timeout kills whole.
func (i *Instance) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	cmd := command(ctx, i.spec, argv)
	// Marked, so that the proxy tells a probe of a published port from
	// the stack's own traffic.
	cmd.Env = append(cmd.Env, proc.HealthcheckEnv+"="+i.spec.Service.Name)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			return ee.ExitCode(), out, nil
		}
		if ctx.Err() != nil {
			return -1, out, ctx.Err()
		}
		return -1, out, err
	}
	return 0, out, nil
}

// RunCommand implements runner.Commander: c runs in the service's
// workdir (or c.Dir, relative to it) and environment, plus c.Env, in a
// process group of its own that a cancel kills whole.
func (i *Instance) RunCommand(ctx context.Context, c runner.Command, stdout, stderr io.Writer) (int, error) {
	if c.User != "" {
		return -1, fmt.Errorf("user %q: service %q runs as a process, as you; remove the user of its sync+exec", c.User, i.spec.Service.Name)
	}
	cmd := command(ctx, i.spec, c.Argv)
	if c.Dir != "" {
		cmd.Dir = c.Dir
		if !filepath.IsAbs(c.Dir) {
			cmd.Dir = filepath.Join(workdir(i.spec), c.Dir)
		}
	}
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// cgroupRemoveWait bounds how long an instance's end waits for its
// cgroup to empty after killing it (processes in uninterruptible sleep
// take a while to die); a cgroup left behind is reused by name.
const cgroupRemoveWait = 5 * time.Second

// newCgroup makes the instance's cgroup, or returns nil where the system
// gives none (or the instance has no marker to name it by).
func newCgroup(spec runner.Spec) *proc.Cgroup {
	if spec.Marker == "" {
		return nil
	}
	cg, err := proc.NewCgroup(proc.CgroupName(spec.Marker))
	if err != nil {
		return nil
	}
	return cg
}

// signalOthers sends sig to the instance's processes outside its process
// group: those in its cgroup and those carrying its marker.
//
// Each process gets sig once: one still in the group already had it from
// the group's signal, and many programs take a second SIGTERM as "stop
// now, skip the clean shutdown".
func (i *Instance) signalOthers(sig syscall.Signal) {
	var pids []int
	if i.cg != nil {
		pids = i.cg.Procs()
	}
	if i.spec.Marker != "" {
		marked, _ := proc.FindByMarker(i.spec.Marker)
		pids = append(pids, marked...)
	}
	group, self := i.cmd.Process.Pid, os.Getpid()
	sent := make(map[int]bool, len(pids))
	for _, pid := range pids {
		if pid == self || sent[pid] {
			continue
		}
		sent[pid] = true
		if pg, err := syscall.Getpgid(pid); err == nil && pg == group {
			continue
		}
		_ = syscall.Kill(pid, sig)
	}
}

// The runner and the supervisor rely on these: a process is found by its pid.
var _ runner.HostProcess = (*Instance)(nil)

// Reach implements runner.Reacher: a process is on the host, where a
// service's port is at its declared port (see runner.HostReacher).
func (*Backend) Reach(p runner.PeerPort) (string, []string, bool) { return runner.HostReacher(p) }
