//go:build linux

package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// A pair's exchanges in an event loop: reading requests, relaying them
// and their responses as the sockets allow, and handing the connection
// back to the goroutine path for what the loop does not relay.

// side is one socket of a pair.
type side struct {
	fd       int // -1 once closed
	p        *pair
	client   bool
	pending  []byte // bytes for fd the kernel did not take yet
	canRead  bool   // an edge said readable, and no read since said drained
	canWrite bool
	hup      bool // the peer closed or failed: read until the end is seen
	eof      bool // the client sent all it will
	broken   bool // a write failed: the peer is gone
}

// pair is a client connection and its upstream connection in a loop.
type pair struct {
	l    *evloop
	rt   *route
	ci   *connInfo
	cl   *side
	up   *side // nil once the upstream connection is closed
	upAt string

	in   []byte // client bytes not consumed yet
	uin  []byte // upstream bytes of a response head not complete yet
	raw  []byte // the current request's head as the client sent it
	req  head
	resp head
	th   *hopHeaders
	// needCaller: handed back because a request might need its caller
	// (see needsCaller).
	needCaller bool
	out        bytes.Buffer // a request head being written, or a reply
	cout       bytes.Buffer // what one upstream read sends the client

	busy        bool  // an exchange is in progress
	respStarted bool  // its final response head was relayed
	reqLeft     int64 // request body bytes still to come from the client
	respLeft    int64 // response body bytes still to come (Content-Length)
	untilClose  bool  // the response body runs until the upstream closes
	chunked     bool
	chunks      chunkScanner
	method      string
	headLen     int // bytes of the last response head in cout
	sp          *trace.Span
	// next is the span of the request being parsed: its head is kept in
	// the span's text (see trace.Span.Text), not in a string of its own.
	next       *trace.Span
	closeAfter bool // close once the client has everything
	stalled    bool // requests waits for the sockets to drain
	closed     bool
	// For the loop's sweep (see evloop.sweep): active, the pair did
	// something since the last sweep; idleSweeps and headSweeps count the
	// sweeps it waited between requests, and since a head began.
	active                 bool
	idleSweeps, headSweeps uint32
}

// paused reports whether reading waits for a socket to take its pending
// bytes (backpressure, both ways).
func (p *pair) paused() bool {
	return len(p.cl.pending) > 0 || p.up != nil && len(p.up.pending) > 0
}

// pump does everything the pair's sockets allow now.
func (p *pair) pump() {
	p.active = true
	for !p.closed {
		// A socket a write failed on: its peer is gone.
		if p.cl.broken {
			p.clientGone()
			return
		}
		if p.up != nil && p.up.broken {
			p.upstreamGone()
			continue
		}
		progress := false
		for _, sd := range []*side{p.cl, p.up} {
			if sd != nil && sd.canWrite && len(sd.pending) > 0 {
				p.flush(sd)
				progress = true
			}
		}
		if p.closed {
			return
		}
		if p.stalled && !p.paused() {
			p.stalled = false
			p.requests()
			continue
		}
		if (p.closeAfter || p.cl.eof) && !p.busy && !p.stalled && len(p.cl.pending) == 0 {
			p.close()
			return
		}
		if !p.paused() {
			if p.up != nil && p.up.canRead {
				p.read(p.up)
				progress = true
			} else if p.cl.canRead && !p.cl.eof && (!p.busy || p.reqLeft > 0 || len(p.in) < maxHead) {
				p.read(p.cl)
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

// read reads once from sd and handles what came.
func (p *pair) read(sd *side) {
	buf := p.l.buf
	n, err := rawRead(sd.fd, buf)
	if err == unix.EAGAIN {
		sd.canRead = false
		return
	}
	if err == unix.EINTR {
		return
	}
	if n < len(buf) && !sd.hup {
		// Drained, most likely; data arriving after the read raises a new
		// edge, so no read is needed to see EAGAIN. Not so for the end of
		// the stream when it came with the data's edge: after a hang-up,
		// reads go on until they see it.
		sd.canRead = false
	}
	switch {
	case n == 0 && sd.client:
		// The client is done sending. It may still be reading: the
		// requests it sent are answered first (pump closes after them),
		// unless it stopped in the middle of a body.
		sd.eof, sd.canRead = true, false
		if p.busy && p.reqLeft > 0 {
			p.clientGone()
		}
		return
	case n <= 0 && sd.client:
		p.clientGone()
		return
	case n <= 0:
		p.upstreamGone()
		return
	}
	if sd.client {
		p.in = append(p.in, buf[:n]...)
		p.requests()
	} else {
		p.fromUpstream(buf[:n])
	}
}

// send writes b to sd, keeping what the kernel does not take.
func (p *pair) send(sd *side, b []byte) {
	if sd == nil || sd.fd < 0 || sd.broken || len(b) == 0 {
		return
	}
	if len(sd.pending) > 0 || !sd.canWrite {
		sd.pending = append(sd.pending, b...)
		return
	}
	n, err := rawWrite(sd.fd, b)
	if err != nil {
		n = 0
		if err != unix.EAGAIN && err != unix.EINTR {
			sd.broken = true // pump ends the exchange
			return
		}
	}
	if n < len(b) {
		sd.canWrite = false
		sd.pending = append(sd.pending, b[n:]...)
	}
}

func (p *pair) flush(sd *side) {
	n, err := rawWrite(sd.fd, sd.pending)
	if err != nil {
		n = 0
		if err != unix.EAGAIN && err != unix.EINTR {
			sd.pending, sd.broken = nil, true
			return
		}
	}
	rest := copy(sd.pending, sd.pending[n:])
	sd.pending = sd.pending[:rest]
	if rest > 0 {
		sd.canWrite = false
	} else if cap(sd.pending) > 64<<10 {
		sd.pending = nil // a large response went through: give the memory back
	}
}

// requests starts the requests the client sent, one at a time.
func (p *pair) requests() {
	for !p.closed && !p.closeAfter {
		if p.paused() {
			// The client has not taken all of the last response yet: a
			// request handed back now would lose it. pump resumes.
			p.stalled = true
			return
		}
		if p.busy {
			if p.reqLeft > 0 && len(p.in) > 0 {
				k := int(min(p.reqLeft, int64(len(p.in))))
				p.send(p.up, p.in[:k])
				p.sp.BytesIn += int64(k)
				p.reqLeft -= int64(k)
				p.consume(k)
			}
			return
		}
		if len(p.in) == 0 {
			return
		}
		if p.next == nil {
			p.next = trace.NewSpan()
		}
		n, err := parseHead(p.in, &p.req, p.next)
		if err == nil && n > 0 {
			err = checkRequest(&p.req)
		}
		if err != nil {
			p.reply(clientError(err))
			return
		}
		if n == 0 {
			return // the rest of the head is still on its way
		}
		if !p.plain() {
			p.handBack(nil)
			return
		}
		tc := p.th.extract(&p.req, p.next)
		if p.needsCaller(&tc) {
			p.needCaller = true
			p.handBack(nil)
			return
		}
		p.raw = append(p.raw[:0], p.in[:n]...)
		p.consume(n)
		p.begin(tc)
	}
}

func (p *pair) consume(n int) {
	p.in = p.in[:copy(p.in, p.in[n:])]
}

// needsCaller reports whether linking or recording the request in p.req,
// whose trace context is tc, might need its caller looked up, which may
// read /proc and which a loop must not wait on (see mayNeedCaller).
func (p *pair) needsCaller(tc *propagate.Context) bool { return p.rt.s.mayNeedCaller(p.ci, tc) }

// plain reports whether the loop can relay the request just parsed. A
// request to a service with a fault to inject is not: the fault may wait,
// which a loop must not.
func (p *pair) plain() bool {
	cfg := p.rt.cfg.Load()
	return p.up != nil && cfg.Upstream == p.upAt && !p.req.upgrade && !p.req.chunked &&
		p.req.get("Expect") == "" && !strings.HasPrefix(p.req.line, "CONNECT ") &&
		!p.rt.s.faultActive(cfg.Service)
}

// begin starts the exchange of the request in p.req, whose trace context
// is tc, as serveOne does.
func (p *pair) begin(tc propagate.Context) {
	sp, method := p.rt.s.requestHop(p.next, &p.req, p.th, tc, p.ci, p.rt.cfg.Load().Service, time.Now())
	p.sp, p.next = sp, nil
	p.busy, p.respStarted, p.method = true, false, method
	p.reqLeft = max(p.req.contentLength, 0)
	p.out.Reset()
	writeRequestHead(&p.out, &p.req, p.th.lines, p.rt.s.opts.Formats, false)
	if k := int(min(p.reqLeft, int64(len(p.in)))); k > 0 {
		p.out.Write(p.in[:k])
		p.sp.BytesIn += int64(k)
		p.reqLeft -= int64(k)
		p.consume(k)
	}
	p.send(p.up, p.out.Bytes())
}

// fromUpstream relays response bytes to the client, in one write per
// read: the head and the body bytes that came with it go out together.
func (p *pair) fromUpstream(b []byte) {
	if !p.busy {
		// Bytes nobody asked for: this connection is out of step.
		p.closeUp()
		return
	}
	p.cout.Reset()
	defer func() {
		if p.cout.Len() > 0 {
			p.send(p.cl, p.cout.Bytes())
		}
		if !p.busy && !p.closed {
			p.requests() // pipelined ones, already read
		}
	}()
	sp := p.sp
	for len(b) > 0 && p.busy && !p.closed {
		if !p.respStarted {
			// A head usually comes whole in one read: it is parsed where
			// it lies, and kept in uin only while it is incomplete.
			src := b
			if len(p.uin) > 0 {
				p.uin = append(p.uin, b...)
				src = p.uin
			}
			n, err := parseHead(src, &p.resp, sp)
			if err != nil {
				p.fail(err.Error())
				return
			}
			if n == 0 {
				if len(p.uin) == 0 {
					p.uin = append(p.uin, b...)
				}
				return
			}
			// What follows the head; uin is reused below, and append
			// copies overlapping bytes safely.
			b = src[n:]
			p.uin = p.uin[:0]
			if sp.TTFB == 0 {
				sp.TTFB = time.Since(sp.Start)
			}
			before := p.cout.Len()
			writeHead(&p.cout, &p.resp)
			p.headLen = p.cout.Len() - before
			code := statusCode(p.resp.line)
			if code < 0 {
				p.cout.Truncate(p.cout.Len() - p.headLen)
				p.fail(fmt.Sprintf("%v %q from %s", errStatusLine, p.resp.line, p.rt.cfg.Load().Service))
				return
			}
			if code < 200 {
				continue // interim (100, 103): the final head follows
			}
			p.respBegins(code)
			continue
		}
		switch {
		case p.chunked:
			n, payload, done, err := p.chunks.scan(b)
			p.cout.Write(b[:n])
			sp.BytesOut += payload
			b = b[n:]
			if err != nil {
				p.fail("response body: " + err.Error())
				return
			}
			if done {
				p.respDone()
			}
		case p.untilClose:
			p.cout.Write(b)
			sp.BytesOut += int64(len(b))
			b = nil
		default:
			k := int(min(p.respLeft, int64(len(b))))
			p.cout.Write(b[:k])
			sp.BytesOut += int64(k)
			p.respLeft -= int64(k)
			b = b[k:]
			if p.respLeft == 0 {
				p.respDone()
			}
		}
	}
	if len(b) > 0 && !p.closed {
		p.closeUp() // more than the response: out of step
	}
}

// respBegins sets up the relay of a final response's body.
func (p *pair) respBegins(code int) {
	s := p.rt.s
	hasBody := s.respond(p.sp, code, p.method, p.resp.get("Content-Type"),
		func(dst []trace.Header) []trace.Header { return s.redact.fields(dst, p.resp.fields, &p.th.respNames) })
	p.respStarted = true
	p.chunked, p.untilClose, p.respLeft = false, false, 0
	switch {
	case !hasBody:
	case p.resp.chunked:
		p.chunked, p.chunks = true, chunkScanner{}
	case p.resp.contentLength >= 0:
		p.respLeft = p.resp.contentLength
	default:
		p.untilClose = true
	}
	if !p.chunked && !p.untilClose && p.respLeft == 0 {
		p.respDone()
	}
}

// respDone ends an exchange and records its hop.
func (p *pair) respDone() {
	p.finish()
	if p.resp.close || p.untilClose {
		p.closeUp()
	}
	if p.req.close || p.untilClose || p.reqLeft > 0 {
		// The client asked to close, or the connection cannot carry
		// another exchange (the response ended before the request did).
		p.closeAfter = true
	}
}

func (p *pair) finish() {
	p.busy = false
	sp := p.sp
	p.sp = nil
	p.rt.s.finishHop(sp, p.ci)
	p.l.served.Add(1)
}

// fail ends an exchange with an upstream failure: 502 when no final
// response head was sent yet, else the client connection is closed.
func (p *pair) fail(msg string) {
	p.sp.Error = msg
	if !p.respStarted {
		p.sp.Status = http.StatusBadGateway
		p.finish()
		p.reply(http.StatusBadGateway, "devstack proxy: "+msg)
		return
	}
	p.finish()
	p.closeAfter = true
	p.closeUp()
}

// reply sends a response of the proxy's own and closes the connection
// after it.
func (p *pair) reply(status int, msg string) {
	if p.cout.Len() > 0 { // interim heads relayed before the failure
		p.send(p.cl, p.cout.Bytes())
		p.cout.Reset()
	}
	p.out.Reset()
	replyTo(&p.out, status, msg)
	p.send(p.cl, p.out.Bytes())
	p.closeAfter = true
	p.closeUp()
}

func (p *pair) clientGone() {
	if p.busy {
		p.sp.Error = "client went away"
		p.finish()
		p.closeUp() // mid-exchange: not reusable
	}
	p.close()
}

func (p *pair) upstreamGone() {
	p.closeUp()
	if !p.busy {
		return // an idle connection the service closed: the next request dials
	}
	switch {
	case p.untilClose:
		p.respDone()
	case !p.respStarted && p.sp.TTFB == 0 && p.req.contentLength <= 0:
		// The kept-alive connection was closed by the service as the
		// request went out: send it again on a new one, as the goroutine
		// path does. This hop is dropped; the retry records its own.
		p.rt.s.hops.end(p.sp)
		p.sp, p.busy = nil, false
		p.handBack(p.raw)
	default:
		_, msg := failure(p.rt.cfg.Load(), io.EOF)
		p.fail(msg)
	}
}

func (p *pair) closeUp() {
	if p.up == nil {
		return
	}
	p.l.forget(p.up)
	p.up = nil
}

func (p *pair) close() {
	if p.closed {
		return
	}
	p.closed = true
	if up := p.up; up != nil && !p.busy && p.reqLeft == 0 && len(up.pending) == 0 && len(p.uin) == 0 &&
		!up.hup && !up.broken && !p.rt.closed.Load() && !p.l.stopping {
		// Between exchanges: the upstream connection can serve the next
		// client (see upstreamPool).
		if c, err := p.l.release(up); err == nil {
			p.rt.s.pool.put(p.upAt, c)
		}
		p.up = nil
	}
	p.closeUp()
	p.l.forget(p.cl)
	delete(p.l.pairs, p)
}

// unset forgets the socket fd, registered or not (a pair whose first
// socket failed to register is closed whole).
func (l *evloop) unset(fd int) {
	if fd < len(l.sides) {
		l.sides[fd] = nil
	}
}

func (l *evloop) forget(sd *side) {
	if sd.fd < 0 {
		return
	}
	l.unset(sd.fd)
	unix.Close(sd.fd) // leaves the epoll set with it
	sd.fd = -1
}

// handBack returns the connection to the goroutine path, which reads
// prefix and the client's unconsumed bytes before the socket's.
func (p *pair) handBack(prefix []byte) {
	l := p.l
	p.closed = true
	delete(l.pairs, p)
	c, err := l.release(p.cl)
	if err != nil {
		p.closeUp()
		return
	}
	var up net.Conn
	if p.up != nil {
		up, _ = l.release(p.up)
		p.up = nil
	}
	rest := bytes.NewReader(append(append([]byte(nil), prefix...), p.in...))
	hc := &h1conn{rt: p.rt, c: c, ci: p.ci, th: p.th, rest: rest, needCaller: p.needCaller,
		br: pooledReader(io.MultiReader(rest, c)), bw: pooledWriter(&clientWriterPool, c)}
	if up != nil {
		hc.setUpstream(up, p.upAt)
	}
	go hc.serve()
}
