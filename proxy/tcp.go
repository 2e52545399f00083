package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/devstack/devstack/proxy/fault"
)

// tcp proxies an opaque connection through the pipeline as one hop: it
// begins (with a trace of its own: TCP carries no context), takes its
// fault decision, relays the bytes each way, and records bytes, duration
// and how it ended. up, when not nil, is a connection to the service
// dialed already (detect.go), with what the service sent first.
func (rt *route) tcp(c net.Conn, up *peekedConn) {
	s := rt.s
	cfg := rt.cfg.Load()
	ci := newConnInfo(c)
	sp := s.beginConn(ci, cfg.Service, time.Now())
	defer s.finishHop(sp, ci)
	defer c.Close()
	var d *fault.Decision
	if s.faultActive(cfg.Service) {
		d = new(fault.Decision)
		if !s.decide(sp, ci, nil, d) {
			d = nil
		}
	}
	// On a byte stream, latency holds the first bytes each way (below),
	// and a terminal fault acts at once, whatever its direction.
	if d != nil && stop(sp, d, tcpFault{s, c}) {
		if up != nil {
			up.Close()
		}
		return
	}
	var upc net.Conn
	if up != nil {
		upc = up
	} else {
		uc, err := s.dial(rt.ctx, "tcp", cfg.Upstream)
		if err != nil {
			_, sp.Error = dialFailure(cfg, err)
			return
		}
		upc = uc
	}
	defer upc.Close()
	var wg sync.WaitGroup
	var errIn, errOut error
	wg.Add(2)
	relay := func(dst, src net.Conn) (int64, error) {
		if d == nil {
			return io.Copy(dst, src)
		}
		return pacedCopy(dst, src, d.Delay+d.RespDelay, newThrottle(d))
	}
	go func() {
		defer wg.Done()
		sp.BytesIn, errIn = relay(upc, c)
		if errors.Is(errIn, errLimitData) {
			c.Close() // limit-data ends the connection, not one direction
		}
		closeWrite(upc)
	}()
	go func() {
		defer wg.Done()
		sp.BytesOut, errOut = relay(c, upc)
		slowClose(d)
		if errors.Is(errOut, errLimitData) {
			upc.Close()
			c.Close()
		}
		closeWrite(c)
	}()
	wg.Wait()
	if sp.Error == "" {
		sp.Error = tcpEnding(errIn, errOut)
	}
}

// pacedCopy copies src to dst holding the first bytes for delay and
// pacing them to a rate (injected faults).
func pacedCopy(dst io.Writer, src io.Reader, delay time.Duration, pace *throttle) (int64, error) {
	buf := make([]byte, pace.chunk(32<<10))
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if total == 0 {
				sleep(delay)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			pace.pace(n)
			if pace.exhausted() {
				return total, errLimitData
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// tcpFault is the TCP path's part in carrying out a Decision.
type tcpFault struct {
	s *Server
	c net.Conn
}

func (f tcpFault) wait(d time.Duration) bool { return f.s.hold(nil, d) }

// answer has no meaning without HTTP: the connection is closed.
func (f tcpFault) answer(int, string, int) { f.c.Close() }

func (f tcpFault) reset() { resetConn(f.c) }

func (f tcpFault) hang(d time.Duration) {
	if d > 0 {
		f.c.SetReadDeadline(time.Now().Add(d))
	}
	io.Copy(io.Discard, f.c)
	resetConn(f.c)
}

func closeWrite(c net.Conn) {
	type cw interface{ CloseWrite() error }
	if x, ok := c.(cw); ok {
		x.CloseWrite()
		return
	}
	switch p := c.(type) {
	case *peekedConn:
		closeWrite(p.Conn)
	case *relayedConn:
		closeWrite(p.Conn)
	}
}

// tcpEnding says how a proxied connection ended: "" for a clean close.
func tcpEnding(errs ...error) string {
	for _, err := range errs {
		switch {
		case err == nil, errors.Is(err, net.ErrClosed):
		case errors.Is(err, syscall.ECONNRESET):
			return "connection reset"
		default:
			return err.Error()
		}
	}
	return ""
}
