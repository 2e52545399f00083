package holder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure Serve.
type Options struct {
	// Socket is the path of the unix socket to listen on. A file already
	// there (the socket of an earlier holder) is removed first.
	Socket string
	// Argv is the service's command, started by the first start request.
	// Argv[0] is looked up on PATH (after the placement: it may be a file
	// placed). The child inherits the holder's environment, working
	// directory and stdin, stdout and stderr.
	Argv []string
	// Ready, when set, is called once the socket listens, before any
	// request is served (tests wait on it; devstack dials until it can).
	Ready func()
}

const (
	// maxOutput caps a probe's output, as Docker caps a healthcheck's.
	maxOutput = 4096
	// defaultProbeTimeout is Docker's default healthcheck timeout.
	defaultProbeTimeout = 30 * time.Second
	// writeTimeout bounds an answer to a client that stopped reading.
	writeTimeout = 10 * time.Second
)

// Serve is the holder: the PID 1 of a standby container. It answers start
// and probe requests on Options.Socket until it exits, and returns the
// code the process should exit with:
//
//   - before the start, SIGTERM, SIGINT or SIGQUIT, or the end of ctx,
//     make it return 0 (there is nothing to stop);
//   - after the start, it forwards every signal it gets to the child (but
//     SIGCHLD; see forwarded) and returns when the child exits: with the
//     child's exit code, or 128+n when signal n killed it, as tini and
//     `docker run --init` do. ctx no longer matters then: the child's exit
//     is the only way out, so that a SIGTERM reaches the service once, as
//     a signal, and the service decides.
//
// It reaps every child of the process, including the service's orphans
// that the kernel reparents to it (as PID 1, or as a child subreaper
// elsewhere), so the calling process must not start children of its own
// while Serve runs. The error is non-nil only when it could not listen
// (or has no command).
func Serve(ctx context.Context, o Options) (int, error) {
	if len(o.Argv) == 0 {
		return 0, errors.New("holder: no command to start")
	}
	// Signals first: one that comes the moment the socket answers must
	// not take the default action.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, forwarded()...)
	defer signal.Stop(sigs)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	defer signal.Stop(chld)
	// As PID 1 the orphans are ours anyway; elsewhere (tests, `docker run
	// --init`) this makes them ours too, so that reaping works the same.
	// Failing (an old kernel, a seccomp filter) only leaves them to init.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	if err := os.Remove(o.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("holder: removing stale socket: %w", err)
	}
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		return 0, fmt.Errorf("holder: %w", err)
	}
	// connect(2) needs write permission on the socket, and devstack on
	// the host may be another uid than the container's user (root in the
	// container, the developer on the host). Who may connect is decided
	// by the shared directory's permissions instead.
	if err := os.Chmod(o.Socket, 0o777); err != nil {
		_ = ln.Close()
		return 0, fmt.Errorf("holder: %w", err)
	}
	if o.Ready != nil {
		o.Ready()
	}
	s := &server{
		argv:     o.Argv,
		waiters:  map[int]chan unix.WaitStatus{},
		conns:    map[net.Conn]struct{}{},
		exited:   make(chan unix.WaitStatus, 1),
		answered: make(chan struct{}),
		done:     make(chan struct{}),
	}
	reaperDone := make(chan struct{})
	stopReaper := make(chan struct{})
	go func() {
		defer close(reaperDone)
		s.reap(chld, stopReaper)
	}()
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		s.accept(ln)
	}()
	defer func() {
		// Handlers first (a probe still needs the reaper to see its
		// end), then the reaper. Closing the listener unlinks the socket.
		s.mu.Lock()
		s.closing = true
		close(s.done)
		_ = ln.Close()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.handlers.Wait()
		close(stopReaper)
		<-reaperDone
	}()

	ctxDone := ctx.Done()
	for {
		select {
		case sig := <-sigs:
			if s.onSignal(sig.(syscall.Signal)) {
				return 0, nil
			}
		case <-ctxDone:
			s.mu.Lock()
			if s.child == 0 {
				s.stopping = true
				s.mu.Unlock()
				return 0, nil
			}
			s.mu.Unlock()
			ctxDone = nil
		case ws := <-s.exited:
			// A command that fails at once must not take its start's
			// answer down with it: devstack would read a broken
			// connection instead of the pid (and then the exit).
			// The answer's write has a deadline, so this ends.
			<-s.answered
			return exitCode(ws), nil
		}
	}
}

// forwarded are the signals the holder catches and passes on to the
// child. That is every signal but those the kernel raises for a fault of
// the holder itself (which Go turns into a panic, as they should stay),
// SIGKILL and SIGSTOP (uncatchable), SIGCHLD (the reaper's), SIGTTIN and
// SIGTTOU (about the holder's own terminal i/o; tini leaves them too),
// and two the holder raises on itself: SIGURG, which the Go runtime
// sends its own threads to preempt goroutines, and SIGPIPE, which the
// kernel sends on a write to a connection the client closed (a probe's
// answer after its caller gave up); forwarding those would hit the
// service with signals nobody sent it.
func forwarded() []os.Signal {
	skip := map[unix.Signal]bool{
		unix.SIGKILL: true, unix.SIGSTOP: true, unix.SIGCHLD: true,
		unix.SIGSEGV: true, unix.SIGBUS: true, unix.SIGFPE: true, unix.SIGILL: true,
		unix.SIGTRAP: true, unix.SIGSYS: true, unix.SIGABRT: true,
		unix.SIGTTIN: true, unix.SIGTTOU: true, unix.SIGURG: true, unix.SIGPIPE: true,
	}
	var sigs []os.Signal
	for n := unix.Signal(1); n <= 64; n++ {
		// 32 and 33 are glibc's own (thread cancellation, setuid on
		// every thread): nobody sends them to a process from outside.
		if skip[n] || n == 32 || n == 33 {
			continue
		}
		sigs = append(sigs, n)
	}
	return sigs
}

// server is the holder's state. mu guards it, and is held across every
// fork so that the reaper cannot reap a new child before it is known
// (see reap).
type server struct {
	argv []string

	mu        sync.Mutex
	waiters   map[int]chan unix.WaitStatus // children whose exit someone waits for, by pid
	claimed   bool                         // a start came (it may have failed)
	child     int                          // the service's pid once started
	childGone bool                         // the service was reaped
	stopping  bool                         // a signal or ctx ended the holder before the start
	closing   bool                         // Serve is returning
	conns     map[net.Conn]struct{}

	handlers sync.WaitGroup       // the accept loop and one per connection
	exited   chan unix.WaitStatus // the service's exit status
	answered chan struct{}        // closed once the successful start's answer is written (or failed to be)
	done     chan struct{}        // closed when Serve returns
}

// onSignal handles one signal, and reports whether the holder must end
// (a termination signal before the start).
func (s *server) onSignal(sig syscall.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.child != 0 {
		// Until the reaper has its status (under mu), the child's pid is
		// its own, zombie or not; after, it could be another's.
		if !s.childGone {
			_ = unix.Kill(s.child, sig)
		}
		return false
	}
	switch sig {
	case unix.SIGTERM, unix.SIGINT, unix.SIGQUIT:
		s.stopping = true
		return true
	}
	return false // nobody to pass it to yet
}

// Reaping: every child of the process, the service, each probe, and the
// orphans the service leaves, ends up as a zombie only this loop collects,
// with wait4(-1). A pid that someone registered (spawn) gets its status
// on its channel; any other is an orphan, reaped and forgotten. Nothing
// else may wait: os/exec's Cmd.Wait (waitid on one pid) would race with
// wait4(-1) and one of them would lose the status, so children are
// started with syscall.ForkExec and waited for here only.
//
// spawn forks and registers under mu, and the reaper looks up under mu:
// a child that exits at once is reaped, then waits for mu, then is found.
func (s *server) reap(chld <-chan os.Signal, stop <-chan struct{}) {
	for {
		// A SIGCHLD coalesces with any that came before the loop below
		// finished; one pending wake-up is enough, since each pass reaps
		// every child that exited before it began.
		select {
		case <-chld:
		case <-stop:
			return
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break // ECHILD: no children; 0: none exited yet
			}
			s.mu.Lock()
			ch := s.waiters[pid]
			delete(s.waiters, pid)
			if pid == s.child {
				s.childGone = true
			}
			s.mu.Unlock()
			if ch != nil {
				ch <- ws // buffered: never blocks
			}
		}
	}
}

// spawn starts path with argv and files as its fds 0, 1 and 2, in the
// holder's environment and working directory, and registers exit (which
// must have room for one status) for its end. started, when set, runs
// under mu right after the fork: what it records is never seen half done
// by a signal or another request.
func (s *server) spawn(path string, argv []string, files []uintptr, sys *syscall.SysProcAttr, exit chan unix.WaitStatus, started func(pid int)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.stopping {
		return 0, errors.New("holder is stopping")
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: os.Environ(), Files: files, Sys: sys})
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", path, err)
	}
	s.waiters[pid] = exit
	if started != nil {
		started(pid)
	}
	return pid, nil
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// lookPath finds name on the holder's PATH. A relative result (PATH has
// "." in it) is what the container's own runtime would run too.
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		err = nil
	}
	return path, err
}

// accept serves every connection until the listener closes.
func (s *server) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like pass; the holder must not die of
			// them and take the service down. A short pause, as
			// net/http's, keeps it from spinning meanwhile.
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.handlers.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.handlers.Done()
			s.serveConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			_ = conn.Close()
		}()
	}
}

// serveConn answers conn's requests in order until it closes or sends
// something that is not JSON.
func (s *server) serveConn(conn net.Conn) {
	dec := json.NewDecoder(conn)
	enc := json.NewEncoder(conn)
	for {
		var req request
		err := dec.Decode(&req)
		if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
			return
		}
		var resp response
		if err != nil {
			resp.Error = fmt.Sprintf("decoding request: %v", err)
		} else {
			resp = s.handle(req)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		werr := enc.Encode(resp)
		if req.Op == opStart && resp.OK {
			close(s.answered) // only one start succeeds
		}
		if werr != nil || err != nil {
			return // the stream is out of step after a bad request
		}
	}
}

func (s *server) handle(req request) response {
	switch req.Op {
	case opStart:
		pid, err := s.start(req.Place, req.Remove)
		if err != nil {
			return response{Error: err.Error()}
		}
		return response{OK: true, PID: pid}
	case opProbe:
		timeout := time.Duration(req.TimeoutMS) * time.Millisecond
		if timeout <= 0 {
			timeout = defaultProbeTimeout
		}
		return s.probe(req.Argv, timeout)
	default:
		return response{Error: fmt.Sprintf("unknown op %q (want %q or %q)", req.Op, opStart, opProbe)}
	}
}
