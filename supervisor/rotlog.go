package supervisor

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultLogMax bounds the supervisor's own log (supervisor.log): at this
// size it is renamed supervisor.log.1 (replacing the one before) and a
// new one begins, so the two never hold more than twice this.
const DefaultLogMax = 10 << 20

// RotatingLog is the supervisor's own log file, bounded and rotated. A
// background supervisor's standard error is the same file, where the Go
// runtime writes a crash: each new file is made the process's standard
// error too, so a crash lands next to the last lines logged.
type RotatingLog struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	stderr bool // standard error follows the current file
}

// OpenRotatingLog opens (appending) the log at path, rotated at max
// bytes (DefaultLogMax when max <= 0).
func OpenRotatingLog(path string, max int64) (*RotatingLog, error) {
	if max <= 0 {
		max = DefaultLogMax
	}
	l := &RotatingLog{path: path, max: max}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *RotatingLog) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the supervisor log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening the supervisor log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write writes p whole into the current file, rotating first when p
// would take it past the bound.
func (l *RotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		l.rotate()
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate moves the file to path.1 and starts a new one. On failure it
// keeps writing where it was (a full disk must not stop the supervisor).
func (l *RotatingLog) rotate() {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return
	}
	old := l.f
	if err := l.open(); err != nil {
		l.f = old
		return
	}
	if l.stderr {
		_ = unix.Dup2(int(l.f.Fd()), 2)
	}
	old.Close()
}

// CaptureStderr makes the process's standard error the log's current
// file, now and after each rotation, so that what the runtime writes there
// stays within the bound too.
func (l *RotatingLog) CaptureStderr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stderr = true
	return unix.Dup2(int(l.f.Fd()), 2)
}

// Close closes the current file.
func (l *RotatingLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
