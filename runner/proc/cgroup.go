//go:build linux

package proc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup means the system gives devstack no cgroup v2 directory of
// its own to make service cgroups in (no cgroup2 mount, or the calling
// process's cgroup is not writable: not delegated to this user).
var ErrNoCgroup = errors.New("no writable cgroup v2 directory")

// Cgroup is a cgroup v2 directory that holds one service instance's
// processes. A process started into it (SysProcAttr.CgroupFD) and all
// that it forks stay in it, whatever they do to their session, process
// group or environment (setsid, double fork, env -i), so that killing the
// cgroup leaves nothing of the service behind. It enables no controller:
// it only groups processes.
type Cgroup struct {
	dir string
	fd  int // the directory, open for CLONE_INTO_CGROUP
}

// NewCgroup makes a cgroup called name below the calling process's own
// cgroup. It returns ErrNoCgroup (wrapped) when the system does not allow
// it; callers then do without (process groups and markers).
func NewCgroup(name string) (*Cgroup, error) {
	base, err := ownCgroupDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: making %s: %w", ErrNoCgroup, dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("%w: opening %s: %w", ErrNoCgroup, dir, err)
	}
	return &Cgroup{dir: dir, fd: fd}, nil
}

// FD is the cgroup directory's descriptor, for SysProcAttr.CgroupFD.
func (c *Cgroup) FD() int { return c.fd }

// Dir is the cgroup's directory.
func (c *Cgroup) Dir() string { return c.dir }

// Procs returns the pids in the cgroup.
func (c *Cgroup) Procs() []int {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Signal sends sig to every process in the cgroup.
func (c *Cgroup) Signal(sig syscall.Signal) {
	self := os.Getpid()
	for _, pid := range c.Procs() {
		if pid != self {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// Kill kills every process in the cgroup, those it forks meanwhile too
// (cgroup.kill, Linux 5.14; before it, SIGKILL to each process a few times
// over).
func (c *Cgroup) Kill() {
	if os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	for range 5 {
		if len(c.Procs()) == 0 {
			return
		}
		c.Signal(syscall.SIGKILL)
	}
}

// Remove kills what is left in the cgroup, waits (at most until ctx ends)
// until it is empty, and removes it.
func (c *Cgroup) Remove(ctx context.Context) error {
	defer unix.Close(c.fd)
	c.Kill()
	if err := c.waitEmpty(ctx); err != nil {
		return err
	}
	if err := unix.Rmdir(c.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing cgroup %s: %w", c.dir, err)
	}
	return nil
}

// waitEmpty waits until cgroup.events says "populated 0": the kernel
// notifies a change of that file as a modification (inotify), so there
// is no polling.
func (c *Cgroup) waitEmpty(ctx context.Context) error {
	events := filepath.Join(c.dir, "cgroup.events")
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("watching cgroup %s: %w", c.dir, err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, events, unix.IN_MODIFY); err != nil {
		return fmt.Errorf("watching cgroup %s: %w", c.dir, err)
	}
	buf := make([]byte, 4096)
	for {
		b, err := os.ReadFile(events)
		if err != nil || bytes.Contains(b, []byte("populated 0")) {
			return nil
		}
		wait := 100 * time.Millisecond // re-read at least this often, in case a notification was missed
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cgroup %s still holds pids %v: %w", c.dir, c.Procs(), ctx.Err())
		}
		fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(max(wait, time.Millisecond)/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("watching cgroup %s: %w", c.dir, err)
		}
		_, _ = unix.Read(in, buf) // drain
	}
}

// ownCgroupDir is the calling process's cgroup v2 directory, if the
// system has a cgroup2 mount and that directory is writable.
func ownCgroupDir() (string, error) {
	mount, root, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoCgroup, err)
	}
	own := ""
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own = p
		}
	}
	if own == "" {
		return "", fmt.Errorf("%w: the process is in no cgroup v2", ErrNoCgroup)
	}
	rel, err := filepath.Rel(root, own)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%w: the process's cgroup %s is outside the cgroup2 mount", ErrNoCgroup, own)
	}
	dir := filepath.Join(mount, rel)
	if unix.Access(dir, unix.W_OK) != nil {
		return "", fmt.Errorf("%w: %s is not writable", ErrNoCgroup, dir)
	}
	return dir, nil
}

// cgroup2Mount finds where the cgroup2 hierarchy is mounted, and the
// cgroup its root shows (not "/" inside a cgroup namespace's view of
// another's).
func cgroup2Mount() (mount, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrNoCgroup, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		fields := strings.Fields(pre)
		if len(fields) >= 5 {
			return fields[4], fields[3], nil
		}
	}
	return "", "", fmt.Errorf("%w: no cgroup2 mount", ErrNoCgroup)
}

// CgroupName is the name of the cgroup of the instance whose marker is
// marker: markers of one project share a prefix, so do their cgroups'
// names (see RemoveCgroups).
func CgroupName(marker string) string {
	return "devstack-" + strings.NewReplacer("/", "-", "@", "-").Replace(marker)
}

// CgroupProcs returns the pids in the cgroups below the calling
// process's own whose names start with CgroupName(prefix): those of the
// instances that a killed supervisor left (nil where the system gives no
// cgroup).
func CgroupProcs(prefix string) []int {
	var pids []int
	for _, dir := range cgroupsWithPrefix(prefix) {
		pids = append(pids, (&Cgroup{dir: dir}).Procs()...)
	}
	return pids
}

// RemoveCgroups kills what is left in those cgroups and removes them.
func RemoveCgroups(ctx context.Context, prefix string) error {
	var errs []error
	for _, dir := range cgroupsWithPrefix(prefix) {
		cg, err := NewCgroup(filepath.Base(dir))
		if err == nil {
			errs = append(errs, cg.Remove(ctx))
		}
	}
	return errors.Join(errs...)
}

func cgroupsWithPrefix(prefix string) []string {
	base, err := ownCgroupDir()
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), CgroupName(prefix)) {
			out = append(out, filepath.Join(base, e.Name()))
		}
	}
	return out
}
