package proxy

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// fdLimit keeps file descriptors in reserve for the rest of the process.
// The kernel gives a new socket the lowest free descriptor, so a
// connection accepted on descriptor n means n descriptors are in use
// below it: one at or above limit-reserve is closed at once. That costs
// no accounting of who opened what (event loops, pooled upstream
// connections), and leaves the reserve to the control API, the logs and
// the span store whatever clients do.
type fdLimit struct {
	limit, reserve int // 0: no limit known
}

func newFDLimit(reserve int) fdLimit {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<31 {
		return fdLimit{}
	}
	limit := int(rl.Cur)
	if reserve <= 0 {
		reserve = max(limit/10, 64)
	}
	return fdLimit{limit: limit, reserve: min(reserve, limit/2)}
}

// room reports whether c may be served: its descriptor is below the
// limit minus the reserve (true when that cannot be told).
func (f fdLimit) room(c net.Conn) bool {
	if f.limit == 0 {
		return true
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	fd := -1
	rc.Control(func(d uintptr) { fd = int(d) })
	return fd < f.limit-f.reserve
}

// rateLimited logs a message at most once a second, with the count of
// those it left out since: a failure that repeats for every connection
// (20,000 slow clients) must not grow the log by gigabytes.
type rateLimited struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

const rateLimitEvery = time.Second

func (r *rateLimited) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < rateLimitEvery {
		r.skipped++
		r.mu.Unlock()
		return
	}
	skipped := r.skipped
	r.last, r.skipped = now, 0
	r.mu.Unlock()
	if skipped > 0 {
		args = append(args, "same_since_last", skipped)
	}
	l.Warn(msg, args...)
}

// allowed applies Options.AllowRemote to c's remote address; loopback
// clients (the host's own processes) are always allowed.
func (s *Server) allowed(c net.Conn) bool {
	if s.opts.AllowRemote == nil {
		return true
	}
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return true
	}
	ip := ta.AddrPort().Addr().Unmap()
	return ip.IsLoopback() || s.opts.AllowRemote(ip)
}
