package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/devstack/devstack/proxy/fault"
	"github.com/devstack/devstack/proxy/propagate"
	"github.com/devstack/devstack/trace"
)

// The HTTP/1.1 fast path. net/http's server and transport cost two
// goroutine hand-offs and a full header map per request each way; a
// reverse proxy that only needs to read a few headers and stamp a few more
// can do much less. Each client connection gets its own upstream
// connection, requests are relayed in order, and bodies are streamed by
// their framing (Content-Length, chunked, or until close), never buffered
// whole. h2c, gRPC and anything this code does not understand go to the
// net/http path instead.

const maxHead = 64 << 10 // longest request or response head accepted

var errHeadTooLarge = errors.New("header section too large")

// field is one header line, as sent.
type field struct{ name, value string }

// head is a parsed request or response head.
type head struct {
	line   string // request line or status line, without CRLF
	fields []field
	raw    []byte // reused buffer for a head read in pieces (readHead)
	// Framing and connection facts, read while parsing.
	contentLength int64 // -1 when absent
	chunked       bool  // Transfer-Encoding ends with chunked
	te            bool  // a Transfer-Encoding header is there
	close         bool  // Connection: close (or HTTP/1.0 without keep-alive)
	upgrade       bool  // Connection: upgrade with an Upgrade header
	// framing is the first way the head's framing is ambiguous or broken
	// (RFC 9112), found while parsing: checkRequest refuses such a
	// request; a response is relayed by its Transfer-Encoding as RFC 9112
	// 6.3 says. 0 when there is none.
	framing framingFault
	badName string // the header at fault, for the message
}

// framingFault is a way a head's framing can be ambiguous or broken.
type framingFault uint8

const (
	framingOK             framingFault = iota
	framingCLAndTE                     // both Content-Length and Transfer-Encoding (6.1)
	framingTwoCL                       // Content-Length twice (6.3 item 5)
	framingChunkedNotLast              // Transfer-Encoding whose last coding is not chunked (6.3 item 4)
	framingUnknownCoding               // a transfer coding besides chunked (6.1: 501)
	framingNameSpace                   // whitespace in a field name, or before its colon (5.1)
	framingBadChar                     // NUL or a bare CR in a field value (RFC 9110 5.5)
)

// readHead reads a head up to the blank line. Header values are kept as
// sent; only the framing headers are interpreted. The head's bytes are
// copied into one string, and the line and fields are slices of it: one
// allocation per head instead of two per header.
func readHead(br *bufio.Reader, h *head) error {
	raw := h.raw[:0] // the head's lines, each ended by LF
	*h = head{fields: h.fields[:0], contentLength: -1}
	for {
		line, err := br.ReadSlice('\n')
		if len(raw)+len(line) > maxHead {
			return errHeadTooLarge
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errHeadTooLarge
			}
			if len(raw) == 0 && len(line) == 0 {
				return io.EOF
			}
			return err
		}
		line = trimCRLF(line)
		if len(raw) == 0 && len(line) == 0 {
			continue // tolerate a stray CRLF between requests (RFC 9112 2.2)
		}
		if len(line) == 0 {
			break
		}
		raw = append(raw, line...)
		raw = append(raw, '\n')
	}
	h.raw = raw
	return h.parse(string(raw))
}

// parseHead parses a head at the start of b, as readHead does from a
// reader. It returns how many bytes the head took, or 0 while b does not
// hold a whole head yet. The head is copied once, whole, into the string
// its line and fields are slices of: made by sp.Text when sp is not nil
// (then the head must not be used once sp is recorded), else allocated.
func parseHead(b []byte, h *head, sp *trace.Span) (int, error) {
	*h = head{fields: h.fields[:0], contentLength: -1, raw: h.raw}
	pos, from, to := 0, -1, 0 // the head's lines are b[from:to]
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			if len(b) > maxHead {
				return 0, errHeadTooLarge
			}
			return 0, nil
		}
		empty := len(trimCRLF(b[pos:pos+i+1])) == 0
		if pos+i+1 > maxHead {
			return 0, errHeadTooLarge
		}
		switch {
		case empty && from < 0:
			// a stray CRLF between requests
		case empty && sp != nil:
			return pos + i + 1, h.parse(sp.Text(b[from:to]))
		case empty:
			return pos + i + 1, h.parse(string(b[from:to]))
		case from < 0:
			from = pos
		}
		pos += i + 1
		to = pos
	}
}

// trimCRLF drops the line end, and any CR or LF before it, from a line
// (bytes.TrimRight with a cutset, without building the set per line).
func trimCRLF(line []byte) []byte {
	for n := len(line); n > 0 && (line[n-1] == '\n' || line[n-1] == '\r'); n-- {
		line = line[:n-1]
	}
	return line
}

// parse reads the line and fields out of a head's text: non-empty lines,
// each ended by LF (or CRLF, or more CRs), interpreting only the framing
// headers.
func (h *head) parse(all string) error {
	http10, keepAlive := false, false
	for first := true; all != ""; first = false {
		var line string
		if i := strings.IndexByte(all, '\n'); i >= 0 {
			line, all = all[:i], all[i+1:]
		} else {
			line, all = all, ""
		}
		for len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if first {
			h.line = line
			http10 = strings.HasSuffix(line, "HTTP/1.0") || strings.HasPrefix(line, "HTTP/1.0 ")
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("malformed header line %q", line)
		}
		name := line[:colon]
		value := strings.TrimSpace(line[colon+1:])
		h.fields = append(h.fields, field{name, value})
		if h.framing == framingOK {
			if strings.IndexByte(name, ' ') >= 0 || strings.IndexByte(name, '\t') >= 0 {
				h.framing, h.badName = framingNameSpace, name
			} else if strings.IndexByte(value, 0) >= 0 || strings.IndexByte(value, '\r') >= 0 {
				h.framing, h.badName = framingBadChar, name
			}
		}
		switch {
		case len(name) == 14 && strings.EqualFold(name, "Content-Length"):
			cl, err := strconv.ParseInt(value, 10, 64)
			if err != nil || cl < 0 || value[0] < '0' || value[0] > '9' {
				// (ParseInt takes "+5": an upstream that reads it
				// otherwise would frame the body differently.)
				return fmt.Errorf("bad Content-Length %q", value)
			}
			if h.contentLength >= 0 && h.framing == framingOK {
				h.framing, h.badName = framingTwoCL, name
			}
			h.contentLength = cl
		case len(name) == 17 && strings.EqualFold(name, "Transfer-Encoding"):
			// Codings add up across lines; chunked must be the last,
			// and the proxy implements no other (RFC 9112 6.1, 7).
			for c := range strings.SplitSeq(value, ",") {
				c = strings.TrimSpace(c)
				if h.chunked && h.framing == framingOK {
					h.framing, h.badName = framingChunkedNotLast, name // a coding after chunked
				}
				h.chunked = strings.EqualFold(c, "chunked")
				if !h.chunked && h.framing == framingOK {
					h.framing, h.badName = framingUnknownCoding, name
				}
			}
			h.te = true
		case len(name) == 10 && strings.EqualFold(name, "Connection"):
			for tok := range strings.SplitSeq(value, ",") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "close":
					h.close = true
				case "keep-alive":
					keepAlive = true
				case "upgrade":
					h.upgrade = true
				}
			}
		}
	}
	if http10 && !keepAlive {
		h.close = true
	}
	if h.te {
		switch {
		case !h.chunked:
			h.framing, h.badName = framingChunkedNotLast, "Transfer-Encoding"
		case h.contentLength >= 0 && h.framing == framingOK:
			h.framing, h.badName = framingCLAndTE, "Transfer-Encoding"
		}
	}
	return nil
}

// checkRequestLine rejects what is not "METHOD target HTTP/1.x", which
// would otherwise go to the service as it is.
func checkRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !strings.HasPrefix(version, "HTTP/1.") || len(version) != 8 {
		return fmt.Errorf("malformed request line %q", line)
	}
	return nil
}

// get returns the first value of a header, case-insensitively.
func (h *head) get(name string) string {
	v, _ := h.Header(name)
	return v
}

// Header is get for fault.Set.Decide (fault.Headers): it also says
// whether the header is there.
func (h *head) Header(name string) (string, bool) {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return "", false
}

// hopHeaders are a connection's trace headers, reused request after
// request: the incoming ones gathered for propagate.Extract, and the lines
// stamped in their place on the request sent upstream.
type hopHeaders struct {
	in    propagate.Carrier
	lines []byte
	// reqNames and respNames are the names of the connection's last
	// request and response heads (see Redactor.fields).
	reqNames, respNames seenNames
}

// extract gathers the trace headers of req and reads its trace context,
// for the hop of span sp when sp is not nil (see propagate.ExtractFor).
func (th *hopHeaders) extract(req *head, sp *trace.Span) propagate.Context {
	th.in.Reset()
	for _, f := range req.fields {
		th.in.Add(f.name, f.value)
	}
	return propagate.ExtractFor(&th.in, sp)
}

// h1conn is one client connection on the fast path.
type h1conn struct {
	rt   *route
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	ci   *connInfo
	up   net.Conn
	upAt string // the upstream address up is connected to
	ubr  *bufio.Reader
	ubw  *bufio.Writer
	req  head
	resp head
	th   *hopHeaders // trace headers of the current request
	// rest is what an event loop had read of the client before handing
	// the connection back (br reads it first); nil otherwise.
	rest *bytes.Reader
	// upClean: the last exchange ended with up idle, so that it can serve
	// another client once this one is gone.
	upClean bool
	// needCaller: a request of the connection might need its caller
	// (an event loop handed it back for one, or one was served here), which
	// is then looked up before the connection goes to a loop (see
	// Server.mayNeedCaller).
	needCaller bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// A connection's buffers come from pools and go back when the goroutine
// path is done with it (closed, or taken by an event loop): a caller that
// opens a connection per call, as Go's default client does under load,
// would otherwise cost over 100 KiB of allocation per connection.
var (
	readerPool       = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	clientWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	upWriterPool     = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

func pooledReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func pooledWriter(p *sync.Pool, w io.Writer) *bufio.Writer {
	bw := p.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// release gives the connection's buffers back; hc is not used after.
func (hc *h1conn) release() {
	for _, r := range []**bufio.Reader{&hc.br, &hc.ubr} {
		if *r != nil {
			(*r).Reset(nil)
			readerPool.Put(*r)
			*r = nil
		}
	}
	if hc.bw != nil {
		hc.bw.Reset(nil)
		clientWriterPool.Put(hc.bw)
		hc.bw = nil
	}
	if hc.ubw != nil {
		hc.ubw.Reset(nil)
		upWriterPool.Put(hc.ubw)
		hc.ubw = nil
	}
}

// errIdle: a kept-alive connection sent no request within IdleTimeout.
var errIdle = errors.New("idle connection")

// readRequest waits for the next request (IdleTimeout), then reads its
// head (HeaderTimeout from its first byte). The body has no deadline: an
// upload or a stream may take as long as it takes.
func (hc *h1conn) readRequest() error {
	o := &hc.rt.s.opts
	if hc.br.Buffered() == 0 {
		hc.c.SetReadDeadline(time.Now().Add(o.IdleTimeout))
		if _, err := hc.br.Peek(1); err != nil {
			if isTimeout(err) {
				return errIdle
			}
			return err
		}
	}
	hc.c.SetReadDeadline(time.Now().Add(o.HeaderTimeout))
	err := readHead(hc.br, &hc.req)
	hc.c.SetReadDeadline(time.Time{})
	return err
}

// serveH1 relays HTTP/1.x requests on c until either side closes. up,
// when not nil, is a connection to the service dialed already (detect.go),
// with what it read.
func (rt *route) serveH1(c net.Conn, br *bufio.Reader, up *peekedConn) {
	hc := &h1conn{rt: rt, c: c, br: br, bw: pooledWriter(&clientWriterPool, c), ci: newConnInfo(c)}
	if up != nil {
		hc.up, hc.upAt, hc.ubr = up.Conn, rt.cfg.Load().Upstream, up.r
		hc.ubw = pooledWriter(&upWriterPool, up.Conn)
	}
	hc.serve()
}

// serve relays requests until either side closes, or until an event loop
// takes the connection over between two requests (loop_linux.go).
func (hc *h1conn) serve() {
	defer hc.release() // closed, or taken by a loop: the buffers go back
	for {
		err := hc.readRequest()
		if err == nil {
			err = checkRequest(&hc.req)
		}
		if err != nil {
			switch {
			case errors.Is(err, errIdle) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err):
			case isTimeout(err):
				hc.reply(http.StatusRequestTimeout, fmt.Sprintf("devstack proxy: the request head did not arrive within %s", hc.rt.s.opts.HeaderTimeout))
			default:
				hc.reply(clientError(err))
			}
			hc.close()
			return
		}
		if !hc.serveOne() {
			hc.close()
			return
		}
		// A service with a fault to inject keeps its connections here,
		// where waiting is allowed; a loop would hand each request back.
		if hc.idle() && !hc.rt.s.faultActive(hc.rt.cfg.Load().Service) {
			if ls := hc.rt.s.eventLoops(); ls != nil && ls.adopt(hc) {
				return
			}
		}
	}
}

// idle reports whether the connection is between requests with nothing
// read or written that is not handled yet, so a loop can take it over.
func (hc *h1conn) idle() bool {
	return hc.up != nil && hc.rt.s.opts.CaptureBodies == 0 &&
		hc.br.Buffered() == 0 && (hc.rest == nil || hc.rest.Len() == 0) &&
		hc.ubr.Buffered() == 0 && hc.bw.Buffered() == 0 && hc.ubw.Buffered() == 0
}

func (hc *h1conn) close() {
	hc.c.Close()
	if hc.up == nil {
		return
	}
	if hc.upClean && hc.ubr.Buffered() == 0 && !hc.rt.closed.Load() {
		hc.rt.s.pool.put(hc.upAt, hc.up)
		return
	}
	hc.up.Close()
}

// reply writes a small response of the proxy's own and flushes it.
func (hc *h1conn) reply(status int, msg string) {
	replyTo(hc.bw, status, msg)
	hc.bw.Flush()
}

// replyTo writes a response of the proxy's own, which closes the
// connection.
func replyTo(w io.Writer, status int, msg string) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nX-Devstack-Error: upstream\r\nConnection: close\r\n\r\n%s\n",
		status, http.StatusText(status), len(msg)+1, msg)
}

// faultReply writes the answer of an injected abort, which closes the
// connection (the request's body, if any, is not read).
func faultReply(w io.Writer, status int, body string) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nX-Devstack-Fault: injected\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// serveOne relays one request and its response. It reports whether the
// connection can carry another request.
func (hc *h1conn) serveOne() bool {
	s, cfg := hc.rt.s, hc.rt.cfg.Load()
	if hc.th == nil {
		hc.th = &hopHeaders{}
	}
	tc := hc.th.extract(&hc.req, nil)
	// A connection whose requests may need their caller gets it looked up
	// before an event loop takes it (see loops.adopt), here where waiting
	// on /proc is no harm: a loop would otherwise hand it back at its next
	// such request, and take it again after.
	hc.needCaller = hc.needCaller || s.mayNeedCaller(hc.ci, &tc)
	sp, method := s.requestHop(nil, &hc.req, hc.th, tc, hc.ci, cfg.Service, time.Now())
	var ok bool
	if s.faultActive(cfg.Service) {
		ok = hc.serveFaulted(sp, method, cfg)
	} else {
		ok = hc.relay(sp, method, cfg, nil)
	}
	s.finishHop(sp, hc.ci)
	return ok
}

// serveFaulted is serveOne's relay for a service with faults to inject:
// the pipeline's fault step decides, and the request and its response
// are relayed with what it decided.
func (hc *h1conn) serveFaulted(sp *trace.Span, method string, cfg *Route) bool {
	var d fault.Decision
	if !hc.rt.s.decide(sp, hc.ci, &hc.req, &d) {
		return hc.relay(sp, method, cfg, nil)
	}
	if inject(sp, &d, hc) {
		return false
	}
	return hc.relay(sp, method, cfg, &d)
}

// requestHop begins the hop of a parsed HTTP/1 request, on either path,
// from its trace context tc (th.extract), and leaves in th.lines the trace
// header lines to send upstream (see writeRequestHead). The recorded
// headers are the request's as sent.
func (s *Server) requestHop(sp *trace.Span, req *head, th *hopHeaders, tc propagate.Context, ci *connInfo, service string, start time.Time) (_ *trace.Span, method string) {
	method, target, _ := strings.Cut(req.line, " ")
	target, _, _ = strings.Cut(target, " ")
	proto := "http"
	if req.upgrade && strings.EqualFold(req.get("Upgrade"), "websocket") {
		proto = "websocket"
	}
	sp, tc = s.begin(sp, tc, func(dst []trace.Header) []trace.Header { return s.redact.fields(dst, req.fields, &th.reqNames) },
		ci, service, proto, method, target, start)
	th.lines = propagate.AppendHeaderLines(th.lines[:0], tc, s.opts.Formats)
	return sp, method
}

// relay forwards the request head and body, then the response. It fills
// the span's outcome and reports whether the connection stays usable.
func (hc *h1conn) relay(sp *trace.Span, method string, cfg *Route, d *fault.Decision) bool {
	// A kept-alive upstream connection (this client's, or a pooled one)
	// may have been closed by the service while idle; a request without a
	// body is then sent again on a new one.
	retry := hc.req.contentLength <= 0 && !hc.req.chunked && !hc.req.upgrade
	ok, stale := hc.relayOnce(sp, method, cfg, d, retry)
	if stale {
		hc.up.Close()
		hc.up = nil
		ok, _ = hc.relayOnce(sp, method, cfg, d, false)
	}
	return ok
}

// relayOnce is one attempt of relay. With mayRetry, an upstream that fails
// before answering reports stale instead of failing the request.
func (hc *h1conn) relayOnce(sp *trace.Span, method string, cfg *Route, d *fault.Decision, mayRetry bool) (ok, stale bool) {
	hc.upClean = false
	reused, err := hc.dialUpstream(cfg, mayRetry)
	mayRetry = mayRetry && reused // a fresh connection's failure is the service's
	if err != nil {
		sp.Status, sp.Error = dialFailure(cfg, err)
		hc.reply(sp.Status, "devstack proxy: "+sp.Error)
		return false, false
	}
	// Expect: 100-continue is answered here: the client then sends the
	// body, which is streamed upstream with the head.
	expect := strings.EqualFold(hc.req.get("Expect"), "100-continue")
	if expect {
		hc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		hc.bw.Flush()
	}
	w := hc.ubw
	writeRequestHead(w, &hc.req, hc.th.lines, hc.rt.s.opts.Formats, expect)
	upgrade := hc.req.upgrade
	// Request body; an upgrade's bytes flow after the 101 instead.
	if !upgrade {
		capt := hc.rt.s.capture()
		sp.BytesIn, err = copyBody(w, hc.br, &hc.req, false, false, capt, nil)
		sp.ReqBody = capt.String()
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		if mayRetry {
			return false, true
		}
		return hc.fail(sp, cfg, err), false
	}
	// Response heads: interim 1xx are passed on until the final one.
	for {
		if err := readHead(hc.ubr, &hc.resp); err != nil {
			if mayRetry && sp.TTFB == 0 {
				return false, true
			}
			return hc.fail(sp, cfg, err), false
		}
		code := statusCode(hc.resp.line)
		if code < 0 {
			return hc.fail(sp, cfg, fmt.Errorf("%w %q from %s", errStatusLine, hc.resp.line, cfg.Service)), false
		}
		if sp.TTFB == 0 {
			sp.TTFB = time.Since(sp.Start)
		}
		if code >= 200 || code == http.StatusSwitchingProtocols {
			sp.Status = code
			break
		}
		writeHead(hc.bw, &hc.resp)
		hc.bw.Flush()
	}
	var pace *throttle
	if d != nil {
		hc.rt.s.hold(nil, d.RespDelay)
		if d.StopOnResponse && d.Stop != fault.KindNone {
			// The service answered; the client gets the fault instead.
			hc.up.Close()
			hc.up = nil
			sp.Status = 0
			stop(sp, d, hc)
			return false, false
		}
		pace = newThrottle(d)
	}
	writeHead(hc.bw, &hc.resp)
	s := hc.rt.s
	hasBody := s.respond(sp, sp.Status, method, hc.resp.get("Content-Type"),
		func(dst []trace.Header) []trace.Header { return s.redact.fields(dst, hc.resp.fields, &hc.th.respNames) })
	if sp.Status == http.StatusSwitchingProtocols {
		hc.bw.Flush()
		in, out := hc.tunnel()
		sp.BytesIn += in
		sp.BytesOut += out
		return false, false
	}
	if hasBody {
		// No length and not chunked: the body runs until the server closes.
		untilClose := hc.resp.contentLength < 0 && !hc.resp.chunked
		capt := hc.rt.s.capture()
		sp.BytesOut, err = copyBody(hc.bw, hc.ubr, &hc.resp, true, untilClose, capt, pace)
		sp.RespBody = capt.String()
		if err != nil {
			sp.Error = "response body: " + err.Error()
			hc.bw.Flush()
			slowClose(d)
			return false, false
		}
		if untilClose {
			hc.bw.Flush()
			slowClose(d)
			return false, false
		}
	}
	if err := hc.bw.Flush(); err != nil {
		sp.Error = "client went away"
		return false, false
	}
	if hc.req.close || hc.resp.close {
		slowClose(d)
	}
	if hc.resp.close {
		hc.up.Close()
		hc.up = nil
	}
	hc.upClean = hc.up != nil
	return !hc.req.close, false
}

// fail records an upstream failure and answers 502 if nothing was sent yet.
func (hc *h1conn) fail(sp *trace.Span, cfg *Route, err error) bool {
	status, msg := failure(cfg, err)
	sp.Error = msg
	if sp.Status == 0 {
		sp.Status = status
		hc.reply(status, "devstack proxy: "+msg)
	}
	return false
}

// The goroutine path's part in carrying out a Decision (faultPath).

func (hc *h1conn) wait(d time.Duration) bool { return hc.rt.s.hold(nil, d) }

func (hc *h1conn) answer(status int, body string, _ int) {
	faultReply(hc.bw, status, body)
	hc.bw.Flush()
}

func (hc *h1conn) reset() {
	hc.bw.Reset(nil) // nothing buffered goes out
	resetConn(hc.c)
}

func (hc *h1conn) hang(d time.Duration) {
	// Read and drop what the client sends until it gives up (or d
	// passes): the request is never answered.
	if d > 0 {
		hc.c.SetReadDeadline(time.Now().Add(d))
	}
	io.Copy(io.Discard, hc.br)
	hc.reset()
}

// dialUpstream makes sure the connection has an upstream: its own from
// the last request, an idle one from the pool (when pooled allows), or a
// new one, holding while the service refuses connections (see
// Server.dial). reused says whether the connection carried requests
// before.
func (hc *h1conn) dialUpstream(cfg *Route, pooled bool) (reused bool, err error) {
	if hc.up != nil && hc.upAt == cfg.Upstream {
		return true, nil
	}
	if hc.up != nil {
		// The route switched upstream (a swap): follow it.
		hc.up.Close()
		hc.up = nil
	}
	if pooled {
		if up := hc.rt.s.pool.get(cfg.Upstream); up != nil {
			hc.setUpstream(up, cfg.Upstream)
			return true, nil
		}
	}
	up, err := hc.rt.s.dial(hc.rt.ctx, "tcp", cfg.Upstream)
	if err != nil {
		return false, err
	}
	hc.setUpstream(up, cfg.Upstream)
	return false, nil
}

func (hc *h1conn) setUpstream(up net.Conn, addr string) {
	hc.up, hc.upAt = up, addr
	if hc.ubr != nil { // a previous upstream connection's, done with
		hc.ubr.Reset(up)
		hc.ubw.Reset(up)
		return
	}
	hc.ubr = pooledReader(up)
	hc.ubw = pooledWriter(&upWriterPool, up)
}

// tunnel copies both ways after a protocol switch (WebSocket) until either
// side closes, returning bytes from the client and to it.
func (hc *h1conn) tunnel() (in, out int64) {
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(hc.up, hc.br) // buffered client bytes first
		closeWrite(hc.up)
		done <- n
	}()
	out, _ = io.Copy(hc.c, hc.ubr)
	closeWrite(hc.c)
	in = <-done
	return in, out
}

// headWriter is where heads are written: a bufio.Writer on the goroutine
// path, a bytes.Buffer in the event loop.
type headWriter interface {
	io.Writer
	io.StringWriter
}

// writeRequestHead writes a request head to go upstream: the trace
// headers that traceLines (from propagate.AppendHeaderLines for formats)
// stand for replaced by them, and Expect dropped when the proxy answered
// it itself.
func writeRequestHead(w headWriter, req *head, traceLines []byte, formats propagate.Formats, dropExpect bool) {
	w.WriteString(req.line)
	w.WriteString("\r\n")
	for _, f := range req.fields {
		if propagate.Replaces(formats, f.name) || dropExpect && strings.EqualFold(f.name, "Expect") {
			continue
		}
		w.WriteString(f.name)
		w.WriteString(": ")
		w.WriteString(f.value)
		w.WriteString("\r\n")
	}
	w.Write(traceLines)
	w.WriteString("\r\n")
}

func writeHead(w headWriter, h *head) {
	w.WriteString(h.line)
	w.WriteString("\r\n")
	for _, f := range h.fields {
		w.WriteString(f.name)
		w.WriteString(": ")
		w.WriteString(f.value)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// statusCode reads the code of a status line ("HTTP/1.1 200 OK"), or -1
// when it is not one.
func statusCode(line string) int {
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return -1
	}
	n, err := strconv.Atoi(line[9:12])
	if err != nil || n < 100 {
		return -1
	}
	return n
}

var errStatusLine = errors.New("malformed status line")
