//go:build linux

package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// killWait bounds the wait after SIGKILL. Only processes in
	// uninterruptible sleep take longer to die.
	killWait = 5 * time.Second
	// fallbackTick is how often liveness is re-read for processes that have
	// no pidfd (kernels before 5.3, or seccomp filters that forbid it).
	fallbackTick = 20 * time.Millisecond
)

// errGraceExpired is returned by waitSet.wait when the grace period ran out.
var errGraceExpired = errors.New("grace period expired")

// KillTree stops pids and everything they started, the way a service should
// be stopped: sig first, SIGKILL for whatever is left after grace.
//
// The tree is, taken in one /proc scan: each pid; for each pid that leads
// its process group, every member of that group; and transitively every
// descendant (by parent pid) of all of these. Each group led by a pid gets
// kill(-pgid, sig) as well, which also reaches members forked after the scan.
//
// KillTree waits on a pidfd per process (poll for readability), so the
// kernel wakes it as soon as the last one exits; processes without a pidfd
// are re-checked every few milliseconds. A zombie counts as gone. When grace
// expires, the survivors and their groups get SIGKILL and KillTree waits a
// few more seconds for them. When ctx is done first, the survivors get
// SIGKILL at once and KillTree returns ctx.Err() wrapped, without waiting.
//
// It returns nil when every process is gone; pids that do not exist (ESRCH)
// count as gone. It never signals the calling process, its process group, or
// pid 1. Signalling pids is only as safe as the pids are fresh: collect them
// just before (FindByMarker), or check Identity.Alive first.
func KillTree(ctx context.Context, pids []int, sig syscall.Signal, grace time.Duration) error {
	snap, err := snapshotStats()
	if err != nil {
		return fmt.Errorf("killing process tree: %w", err)
	}
	targets, groups := expandTree(pids, snap, os.Getpid(), syscall.Getpgrp())
	ws := openWaitSet(targets, snap)
	defer ws.close()

	for _, g := range groups {
		signalGroup(g, sig)
	}
	ws.signal(sig)
	err = ws.wait(ctx, grace)
	if err == nil {
		return ws.result()
	}

	for _, g := range groups {
		if ws.groupAlive(g) {
			signalGroup(g, syscall.SIGKILL)
		}
	}
	ws.signal(syscall.SIGKILL)
	if ctx.Err() != nil {
		return fmt.Errorf("killing process tree: %w", ctx.Err())
	}
	if err := ws.wait(ctx, killWait); err != nil {
		if errors.Is(err, errGraceExpired) {
			return fmt.Errorf("killing process tree: %w: pids %v", ErrSurvivors, ws.remaining())
		}
		return fmt.Errorf("killing process tree: %w", err)
	}
	return ws.result()
}

// snapshotStats reads the stat of every visible process.
func snapshotStats() (map[int]stat, error) {
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}
	snap := make(map[int]stat, len(pids))
	for _, pid := range pids {
		if st, err := readStat(pid); err == nil {
			snap[pid] = st
		}
	}
	return snap, nil
}

// expandTree returns the processes to signal, ascending, and the process
// groups to signal as a whole: the groups led by one of pids. It is pure so
// that the selection can be tested on a made-up process table.
func expandTree(pids []int, snap map[int]stat, self, selfGroup int) (targets, groups []int) {
	children := make(map[int][]int)
	members := make(map[int][]int)
	for pid, st := range snap {
		children[st.ppid] = append(children[st.ppid], pid)
		members[st.pgrp] = append(members[st.pgrp], pid)
	}
	seen := make(map[int]bool)
	var queue []int
	add := func(pid int) {
		if pid <= 1 || pid == self || seen[pid] {
			return
		}
		seen[pid] = true
		queue = append(queue, pid)
	}
	for _, pid := range pids {
		add(pid)
		if pid <= 1 || pid == self || pid == selfGroup || slices.Contains(groups, pid) {
			continue
		}
		if st, ok := snap[pid]; ok && st.pgrp == pid {
			groups = append(groups, pid)
			for _, m := range members[pid] {
				add(m)
			}
		}
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			add(c)
		}
	}
	for pid := range seen {
		targets = append(targets, pid)
	}
	slices.Sort(targets)
	slices.Sort(groups)
	return targets, groups
}

func signalGroup(pgid int, sig syscall.Signal) {
	// ESRCH: the group is empty. EPERM: some member is not ours; the
	// per-process signals report that.
	_ = syscall.Kill(-pgid, sig)
}

// waitTarget is one process KillTree waits for.
type waitTarget struct {
	id     Identity
	pgrp   int
	pidfd  int // -1 when the kernel gave none; then id.Alive decides
	gone   bool
	denied bool // signalling was not permitted; not waited for
}

type waitSet struct {
	targets []*waitTarget
}

// openWaitSet pins each target with a pidfd, so that later signals cannot hit
// a process that reused the pid.
func openWaitSet(pids []int, snap map[int]stat) *waitSet {
	ws := &waitSet{}
	for _, pid := range pids {
		st, ok := snap[pid]
		if !ok {
			continue // vanished between listing and reading
		}
		t := &waitTarget{id: Identity{PID: pid, StartTime: st.startTime}, pgrp: st.pgrp, pidfd: -1}
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			t.pidfd = fd
			// The pid may have been reused since the snapshot; the pidfd
			// now pins whichever process has it, so check it is ours.
			if !t.id.Alive() {
				t.gone = true
			}
		case errors.Is(err, unix.ESRCH):
			t.gone = true
		default:
			t.gone = !t.id.Alive()
		}
		ws.targets = append(ws.targets, t)
	}
	return ws
}

func (ws *waitSet) close() {
	for _, t := range ws.targets {
		if t.pidfd >= 0 {
			unix.Close(t.pidfd)
			t.pidfd = -1
		}
	}
}

// signal sends sig to every target still waited for.
func (ws *waitSet) signal(sig syscall.Signal) {
	for _, t := range ws.targets {
		if t.gone || t.denied {
			continue
		}
		var err error
		if t.pidfd >= 0 {
			err = unix.PidfdSendSignal(t.pidfd, sig, nil, 0)
		} else if t.id.Alive() {
			err = syscall.Kill(t.id.PID, sig)
		} else {
			err = syscall.ESRCH
		}
		switch {
		case errors.Is(err, syscall.ESRCH):
			t.gone = true
		case errors.Is(err, syscall.EPERM):
			t.denied = true
		}
	}
}

// pending returns the targets still waited for.
func (ws *waitSet) pending() []*waitTarget {
	var p []*waitTarget
	for _, t := range ws.targets {
		if !t.gone && !t.denied {
			p = append(p, t)
		}
	}
	return p
}

func (ws *waitSet) remaining() []int {
	var pids []int
	for _, t := range ws.pending() {
		pids = append(pids, t.id.PID)
	}
	return pids
}

func (ws *waitSet) groupAlive(pgid int) bool {
	for _, t := range ws.pending() {
		if t.pgrp == pgid {
			return true
		}
	}
	return false
}

// result reports the processes devstack was not allowed to signal.
func (ws *waitSet) result() error {
	var denied []int
	for _, t := range ws.targets {
		if t.denied && !t.gone && t.id.Alive() {
			denied = append(denied, t.id.PID)
		}
	}
	if len(denied) > 0 {
		return fmt.Errorf("killing process tree: %w: pids %v: %w", ErrSurvivors, denied, syscall.EPERM)
	}
	return nil
}

// wait blocks until every pending target is gone (nil), d has passed
// (errGraceExpired) or ctx is done (ctx.Err()).
func (ws *waitSet) wait(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	wake := newWaker(ctx)
	defer wake.close()
	for {
		p := ws.pending()
		fds := make([]unix.PollFd, 0, len(p)+1)
		polled := make([]*waitTarget, 0, len(p))
		fallback := false
		for _, t := range p {
			if t.pidfd >= 0 {
				fds = append(fds, unix.PollFd{Fd: int32(t.pidfd), Events: unix.POLLIN})
				polled = append(polled, t)
			} else if !t.id.Alive() {
				t.gone = true
			} else {
				fallback = true
			}
		}
		if len(polled) == 0 && !fallback {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		timeout := time.Until(deadline)
		if timeout <= 0 {
			return errGraceExpired
		}
		if fallback || wake.fd < 0 {
			timeout = min(timeout, fallbackTick)
		}
		if wake.fd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(wake.fd), Events: unix.POLLIN})
		}
		// Round up so that a sub-millisecond remainder does not spin.
		ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(fds, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("polling pidfds: %w", err)
		}
		if n <= 0 {
			continue
		}
		for i, t := range polled {
			// POLLIN: exited (zombie or reaped). POLLHUP/POLLERR on newer
			// kernels once reaped.
			if fds[i].Revents != 0 {
				t.gone = true
			}
		}
	}
}

// waker is an eventfd that becomes readable when ctx is done, so that a
// blocking poll also wakes up for cancellation.
type waker struct {
	fd   int
	stop func() bool
	done chan struct{} // closed when the AfterFunc has finished writing
}

func newWaker(ctx context.Context) *waker {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return &waker{fd: -1}
	}
	w := &waker{fd: fd, done: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, func() {
		defer close(w.done)
		one := [8]byte{1}
		_, _ = unix.Write(fd, one[:])
	})
	return w
}

func (w *waker) close() {
	if w.fd < 0 {
		return
	}
	if !w.stop() {
		// The AfterFunc started; let it finish with the fd before closing.
		<-w.done
	}
	unix.Close(w.fd)
	w.fd = -1
}
