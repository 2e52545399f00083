//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop serves the HTTP/1.1 keep-alive exchanges of a connection
// after its first, the way nginx does: one epoll loop per core over raw
// non-blocking sockets, each request read, stamped, relayed and recorded
// without a goroutine waking up for it. On a machine whose cores are
// shared with the load and the services, the goroutine path's scheduler
// hand-offs cost as much CPU per request as the relaying itself (see
// bench/proxybench's floors).
//
// A connection comes here from the goroutine path once an exchange
// finished with nothing left unread (adopt), with its upstream connection.
// The loop serves a request itself only when it is plain: a head, a body
// of known length or none, and the same upstream as before. Anything else
// (an upgrade, a chunked upload, Expect, a switched upstream, a closed
// upstream, a stale one that must be retried) goes back to the goroutine
// path (handBack) with the bytes read so far, before anything of it was
// sent. Responses of any framing are relayed here as they arrive, so
// streams (SSE) are never held back.

// loops is the set of event loops of a Server.
type loops struct {
	ls   []*evloop
	next atomic.Uint32
}

// served counts the exchanges the loops relayed (tests check the path ran).
func (ls *loops) served() uint64 {
	var n uint64
	for _, l := range ls.ls {
		n += l.served.Load()
	}
	return n
}

func newLoops(s *Server, n int) *loops {
	ls := &loops{}
	hold := s.opts.holdWaitMs
	if runtime.GOMAXPROCS(0) <= n {
		// No P would be left for the rest of the program (the goroutine
		// path, the span store) while the loops hold theirs.
		hold = 0
	}
	for range n {
		l, err := newEvloop(s, ls, hold)
		if err != nil {
			// No epoll: every connection stays on the goroutine path.
			s.opts.Logger.Warn("proxy: no event loop, serving every request on the goroutine path", "err", err)
			ls.stop()
			return nil
		}
		ls.ls = append(ls.ls, l)
	}
	return ls
}

// adopt moves the connection of hc, idle between requests, to a loop. It
// reports false, leaving hc as it was, when it cannot.
func (ls *loops) adopt(hc *h1conn) bool {
	if hc.needCaller {
		// A request might need the caller: naming it may read /proc, so
		// it is done here, on the connection's own goroutine, and the loop
		// never waits on it.
		hc.ci.resolve(hc.rt.s.opts.Callers)
	}
	cfd, err := dupSocket(hc.c)
	if err != nil {
		return false
	}
	ufd, err := dupSocket(hc.up)
	if err != nil {
		unix.Close(cfd)
		return false
	}
	// Both sockets are idle, so writable: the first write needs no edge.
	p := &pair{rt: hc.rt, ci: hc.ci, upAt: hc.upAt, th: hc.th,
		cl: &side{fd: cfd, client: true, canWrite: true}, up: &side{fd: ufd, canWrite: true}}
	p.cl.p, p.up.p = p, p
	l := ls.ls[int(ls.next.Add(1))%len(ls.ls)]
	if !l.do(func() { l.register(p) }) {
		unix.Close(cfd)
		unix.Close(ufd)
		return false
	}
	// The loop owns copies of both sockets now.
	hc.c.Close()
	hc.up.Close()
	return true
}

// closeRoute closes the loops' connections of a route that is going away.
func (ls *loops) closeRoute(rt *route) {
	for _, l := range ls.ls {
		l.do(func() {
			for p := range l.pairs {
				if p.rt == rt {
					p.close()
				}
			}
		})
	}
}

func (ls *loops) stop() {
	for _, l := range ls.ls {
		l.do(func() { l.stopping = true })
	}
}

// dupSocket returns a non-blocking close-on-exec copy of c's socket.
func dupSocket(c net.Conn) (int, error) {
	for {
		switch x := c.(type) {
		case *relayedConn:
			c = x.Conn
			continue
		case *peekedConn:
			c = x.Conn
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// evloop is one event loop: a goroutine waiting in epoll_wait.
type evloop struct {
	s   *Server
	ls  *loops
	ep  int
	evf int // eventfd that wakes the loop for do
	tfd int // timerfd that wakes the loop for sweep
	// sweepEvery is the timer's period; idleSweeps and headSweeps are
	// Options.IdleTimeout and HeaderTimeout in periods.
	sweepEvery             time.Duration
	idleSweeps, headSweeps uint32
	// holdMs is Options.holdWaitMs, or 0 when holding a P would leave none
	// free (see newLoops).
	holdMs uintptr

	mu      sync.Mutex
	queue   []func()
	stopped bool // no more do

	// Owned by the loop's goroutine. sides holds the loop's sockets by
	// file descriptor: a slice, not a map, as every event looks one up.
	sides    []*side
	pairs    map[*pair]struct{}
	buf      []byte
	stopping bool
	// served counts the exchanges this loop relayed. Each loop has its
	// own: one counter for all would move its cache line between the
	// loops' cores on every exchange.
	served atomic.Uint64
}

func newEvloop(s *Server, ls *loops, holdMs uintptr) (*evloop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evf, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, evf, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evf)}); err != nil {
		unix.Close(ep)
		unix.Close(evf)
		return nil, err
	}
	l := &evloop{s: s, ls: ls, ep: ep, evf: evf, holdMs: holdMs, pairs: map[*pair]struct{}{}, buf: make([]byte, 64<<10)}
	if err := l.startSweeps(); err != nil {
		unix.Close(ep)
		unix.Close(evf)
		return nil, err
	}
	go l.run()
	return l, nil
}

// do runs f on the loop's goroutine. It reports false once the loop has
// stopped.
func (l *evloop) do(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, f)
	l.mu.Unlock()
	one := [8]byte{1}
	unix.Write(l.evf, one[:])
	return true
}

// defaultHoldWaitMs is how long, in milliseconds, a loop with nothing to do
// waits for an event while keeping its P, before it blocks the way the
// scheduler sees. Under load the next event comes long before that, so
// the loop never leaves its thread: a wait the scheduler sees makes its
// monitor hand the P to another thread (to run whatever the loop readied,
// such as the span store's goroutine), and the loop, when it wakes, must
// find a P again. Only loops that leave a P free hold theirs: with
// GOMAXPROCS set to 1, the one loop would keep every other goroutine
// waiting. Measured with wrk -c32 against nginx on 2 cores: the
// proxy's voluntary context switches fell from 0.40 to 0.21 per request
// (nginx's: 0.14), and the runtime monitor's wake-ups from about 4,200
// to about 100 a second.
const defaultHoldWaitMs = 2

func (l *evloop) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		// Wait a little without telling the scheduler (see defaultHoldWaitMs):
		// a raw syscall does not hand the goroutine's P over, so the
		// runtime's monitor has nothing to retake. Under load something
		// is nearly always ready and this returns at once. Only a loop
		// idle for longer blocks in a wait the scheduler knows of.
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), l.holdMs, 0, 0)
		if errno == unix.EINTR {
			// A signal: most likely the runtime asking this goroutine to
			// stop (for the collector's stop-the-world), which it cannot
			// do inside a raw syscall. Yield so that it can.
			runtime.Gosched()
			continue
		}
		n, err := int(r), error(nil)
		if errno != 0 || n == 0 {
			n, err = unix.EpollWait(l.ep, events, -1)
		}
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			l.s.opts.Logger.Error("proxy: event loop stopped", "err", err)
			l.shutdown()
			return
		}
		for _, e := range events[:n] {
			fd := int(e.Fd)
			if fd == l.evf {
				l.runQueue()
				continue
			}
			if fd == l.tfd {
				l.sweep()
				continue
			}
			var sd *side
			if fd < len(l.sides) {
				sd = l.sides[fd]
			}
			if sd == nil {
				continue
			}
			if e.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				sd.canWrite = true
			}
			if e.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
				sd.canRead = true
			}
			if e.Events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
				sd.hup = true
			}
			sd.p.pump()
		}
		if l.stopping {
			l.shutdown()
			return
		}
	}
}

func (l *evloop) runQueue() {
	var b [8]byte
	unix.Read(l.evf, b[:])
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, f := range q {
		f()
	}
}

func (l *evloop) shutdown() {
	l.mu.Lock()
	l.stopped = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, f := range q {
		f() // adoptions register, then close below
	}
	for p := range l.pairs {
		p.close()
	}
	unix.Close(l.ep)
	unix.Close(l.evf)
	unix.Close(l.tfd)
}

// startSweeps arms the loop's timer: a few times per timeout, the loop
// looks for connections that waited too long (see sweep). A timer per
// loop, not per connection: the hot path only marks a pair active.
func (l *evloop) startSweeps() error {
	o := &l.s.opts
	l.sweepEvery = max(min(time.Second, o.IdleTimeout/4, o.HeaderTimeout/4), 10*time.Millisecond)
	l.idleSweeps = uint32(max(1, o.IdleTimeout/l.sweepEvery))
	l.headSweeps = uint32(max(1, o.HeaderTimeout/l.sweepEvery))
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return err
	}
	ts := unix.NsecToTimespec(int64(l.sweepEvery))
	if err := unix.TimerfdSettime(tfd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(tfd)
		return err
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(tfd)}); err != nil {
		unix.Close(tfd)
		return err
	}
	l.tfd = tfd
	return nil
}

// sweep closes the connections that waited too long: between requests,
// IdleTimeout without a byte; in a request head, HeaderTimeout since it
// began, however slowly it trickles in (answered 408). A connection in
// an exchange (a request or response on its way) is never cut here: a
// service may take its time.
func (l *evloop) sweep() {
	var b [8]byte
	unix.Read(l.tfd, b[:])
	for p := range l.pairs {
		active := p.active
		p.active = false
		if p.busy || p.closed {
			p.idleSweeps, p.headSweeps = 0, 0
			continue
		}
		if p.closeAfter {
			p.close() // answered already, and the client does not take it
			continue
		}
		if len(p.in) > 0 {
			if p.headSweeps++; p.headSweeps >= l.headSweeps {
				p.reply(http.StatusRequestTimeout, fmt.Sprintf("devstack proxy: the request head did not arrive within %s", l.s.opts.HeaderTimeout))
				p.pump()
			}
			continue
		}
		p.headSweeps = 0
		if active {
			p.idleSweeps = 0
			continue
		}
		if p.idleSweeps++; p.idleSweeps >= l.idleSweeps {
			p.close()
		}
	}
}

// register starts serving p. Edge-triggered: each socket is added once and
// never modified; the loop remembers what it may do (canRead, canWrite).
func (l *evloop) register(p *pair) {
	p.l = l
	l.pairs[p] = struct{}{}
	for _, sd := range []*side{p.cl, p.up} {
		for len(l.sides) <= sd.fd {
			l.sides = append(l.sides, nil)
		}
		l.sides[sd.fd] = sd
		ev := &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(sd.fd)}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, sd.fd, ev); err != nil {
			p.close()
			return
		}
	}
	if p.rt.closed.Load() || l.stopping {
		p.close()
	}
}

// release takes sd out of the loop as a net.Conn.
func (l *evloop) release(sd *side) (net.Conn, error) {
	l.unset(sd.fd)
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, sd.fd, nil)
	f := os.NewFile(uintptr(sd.fd), "")
	sd.fd = -1
	defer f.Close()
	return net.FileConn(f)
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket,
// made without telling the scheduler: they never block, so there is
// nothing for it to do, and a loop that is always "in a syscall" would
// keep the runtime's monitor waking every 20µs to check on it.
func rawRead(fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// SpareP returns the GOMAXPROCS for a program that serves the proxy: one
// P more than the runtime chose, or the current value when the GOMAXPROCS
// environment variable set it. The event loops take all Ps but one; with
// one more, they get one per core while a P stays free, so the scheduler
// never takes a loop's thread away as it waits in epoll_wait and the rest
// of the program keeps a P of its own. Measured with bench/proxy.sh on 2
// cores: 64 B at 32 connections 0.73x nginx without, 0.79x with; 16 KiB
// 0.90x and 1.0x. GOMAXPROCS is the whole process's: the program that owns
// it (devstack's up and supervise) sets it, once, at start; the proxy
// never changes it.
func SpareP() int {
	n := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		n++
	}
	return n
}
