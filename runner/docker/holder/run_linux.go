package holder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// start applies the placement and starts the service's command. It runs
// once: a second start is refused, and so is one after a failed start,
// since the files may be half placed (devstack discards that standby).
func (s *server) start(place []Place, remove []string) (int, error) {
	s.mu.Lock()
	claimed := s.claimed
	s.claimed = true
	s.mu.Unlock()
	if claimed {
		return 0, errors.New("start already requested: the holder starts its command once")
	}
	if err := apply(place, remove); err != nil {
		return 0, err
	}
	path, err := lookPath(s.argv[0])
	if err != nil {
		return 0, fmt.Errorf("command: %w", err)
	}
	// The service shares the holder's process group, as with tini
	// without -g. Its own group would make it a background job on a
	// terminal (a tty: true service reading its tty would stop); the cost
	// is that a ^C typed on that terminal reaches it twice, from the
	// terminal and forwarded.
	return s.spawn(path, s.argv, []uintptr{0, 1, 2}, nil, s.exited, func(pid int) { s.child = pid })
}

// probe runs argv to its end or its timeout and answers its exit code
// and output, the way the engine answers a healthcheck.
func (s *server) probe(argv []string, timeout time.Duration) response {
	if len(argv) == 0 {
		return response{Error: "empty command"}
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return response{Error: err.Error()}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return response{Error: fmt.Sprintf("making the output pipe: %v", err)}
	}
	defer r.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		_ = w.Close()
		return response{Error: err.Error()}
	}
	deadline := time.Now().Add(timeout)
	exit := make(chan unix.WaitStatus, 1)
	// Its own process group, so that the timeout kills what it started
	// too (a CMD-SHELL's sh and its children), as one.
	pid, err := s.spawn(path, argv, []uintptr{null.Fd(), w.Fd(), w.Fd()}, &syscall.SysProcAttr{Setpgid: true}, exit, nil)
	_ = w.Close()
	_ = null.Close()
	if err != nil {
		return response{Error: err.Error()}
	}
	out := make(chan []byte, 1)
	go func() { out <- readCapped(r) }()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var ws unix.WaitStatus
	exited, timedOut := false, false
	select {
	case ws = <-exit:
		exited = true
	case <-timer.C:
		timedOut = true
	case <-s.done:
	}
	// Whatever it left running goes too: a leftover holding the pipe open
	// would hold the answer back until the timeout.
	_ = unix.Kill(-pid, unix.SIGKILL)
	if !exited {
		ws = <-exit
	}
	var output []byte
	select {
	case output = <-out:
	case <-time.After(max(time.Until(deadline), 0)):
		// Something left the group (setsid) with the pipe: stop reading.
		_ = r.Close()
		output = <-out
	}
	select {
	case <-s.done:
		return response{Error: "holder is stopping"}
	default:
	}
	if timedOut {
		// Docker's words and code for a healthcheck past its timeout.
		code := -1
		return response{Code: &code, Output: fmt.Sprintf("Health check exceeded timeout (%v)", timeout), TimedOut: true}
	}
	code := exitCode(ws)
	return response{Code: &code, Output: string(output)}
}

// readCapped reads r to its end and returns the first maxOutput bytes:
// the rest is read too, so that the writer never blocks on a full pipe.
func readCapped(r io.Reader) []byte {
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := r.Read(chunk)
		if keep := min(n, maxOutput-len(buf)); keep > 0 {
			buf = append(buf, chunk[:keep]...)
		}
		if err != nil {
			return buf
		}
	}
}
