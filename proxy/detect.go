package proxy

import (
	"bufio"
	"errors"
	"net"
	"time"
)

// The pipeline's accept and detect steps: what a new connection carries,
// decided once for every byte path.
//
// A client that sends first is read: HTTP/1.x, the HTTP/2 preface (h2c,
// gRPC), or else opaque TCP. A client that stays silent is not decided by
// a timer alone, since a pooled connection (Go's http.Transport keeps
// spare ones) is silent until its first request, however long that is.
// After DetectTimeout of silence, the service is dialed and whoever speaks
// first decides: the service (a server-first protocol: MySQL, SMTP, SSH
// greet) makes it a TCP relay; the client makes it what its bytes say,
// and the connection dialed serves it. What a port served before decides
// sooner: a port that served HTTP and never greeted waits for its silent
// clients without dialing, and a port whose service greeted is dialed at
// once.

// handle detects what connection c carries and hands it to its byte path.
func (rt *route) handle(c net.Conn) {
	s, cfg := rt.s, rt.cfg.Load()
	if !s.allowed(c) {
		s.refusedRemote.log(s.opts.Logger, "proxy: refused a connection from an address that is not one of the project's containers",
			"service", cfg.Service, "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	relayed := s.trustsProxyLine(c)
	if cfg.Protocol == ProtoTCP && !relayed {
		rt.tcp(c, nil)
		return
	}
	br := pooledReader(c) // back to the pool when the HTTP/1 path is done
	if relayed {
		// A connection relayed by a devstack ambassador (a container that
		// answers to a service's name in a Docker network) starts with a
		// PROXY protocol v1 line naming the real client, whatever the
		// protocol after it: the ambassador sends it at once.
		c.SetReadDeadline(time.Now().Add(s.opts.DetectTimeout))
		if b, _ := br.Peek(len("PROXY ")); string(b) == "PROXY " {
			if pc, err := readProxyLine(c, br); err == nil {
				c = pc
			}
		}
		c.SetReadDeadline(time.Time{})
	}
	if cfg.Protocol == ProtoTCP {
		rt.tcp(&peekedConn{Conn: c, r: br}, nil)
		return
	}
	var up *peekedConn // the service, when dialed to see who speaks first
	if cfg.Protocol == ProtoAuto {
		var who speaker
		who, up = rt.firstSpeaker(c, br)
		switch who {
		case byNobody:
			// Closed without a byte: a client's spare pooled connection,
			// never used. Not a hop.
			c.Close()
			return
		case byService:
			if up != nil { // it greeted (not: it could not be dialed)
				rt.serverFirst.Store(true)
			}
			rt.tcp(&peekedConn{Conn: c, r: br}, up)
			return
		}
	}
	// The client spoke (or the route is HTTP): what it says decides. A
	// client-first protocol may send fewer bytes than the preface and
	// wait for an answer, so this wait is bounded.
	if cfg.Protocol == ProtoAuto {
		c.SetReadDeadline(time.Now().Add(s.opts.DetectTimeout))
	} else {
		c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
	}
	head, _ := br.Peek(len(h2Preface))
	c.SetReadDeadline(time.Time{})
	switch {
	case string(head) == h2Preface:
		// HTTP/2 cleartext (gRPC): net/http's server handles the framing.
		rt.servedHTTP.Store(true)
		if up != nil {
			s.pool.put(cfg.Upstream, up.Conn) // never written to
		}
		rt.httpConn.push(&peekedConn{Conn: c, r: br})
	case cfg.Protocol == ProtoHTTP || looksHTTP(head):
		rt.servedHTTP.Store(true)
		rt.serveH1(c, br, up)
	default:
		rt.tcp(&peekedConn{Conn: c, r: br}, up)
	}
}

// speaker is who speaks first on a new connection.
type speaker int

const (
	byClient  speaker = iota // the client sent a byte
	byService                // the service sent a byte first
	byNobody                 // the client closed without a byte
)

// firstSpeaker waits for the client's first byte, and, when the client is
// silent for DetectTimeout, for the service's too (see the top of this
// file). up is the connection to the service when it was dialed (its
// first bytes, if any, buffered in it).
func (rt *route) firstSpeaker(c net.Conn, br *bufio.Reader) (speaker, *peekedConn) {
	s := rt.s
	if !rt.serverFirst.Load() {
		c.SetReadDeadline(time.Now().Add(s.opts.DetectTimeout))
		_, err := br.Peek(1)
		c.SetReadDeadline(time.Time{})
		switch {
		case err == nil:
			return byClient, nil
		case !isTimeout(err):
			return byNobody, nil
		case rt.servedHTTP.Load():
			// A port that served HTTP and never greeted: a silent client
			// is an idle pooled connection. Wait for it, as long as an
			// idle kept-alive connection is waited for.
			c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
			_, err := br.Peek(1)
			c.SetReadDeadline(time.Time{})
			if err != nil {
				return byNobody, nil
			}
			return byClient, nil
		}
	}
	cfg := rt.cfg.Load()
	uc, err := s.dial(rt.ctx, "tcp", cfg.Upstream)
	if err != nil {
		// Nobody to ask. The client is silent: proxy it as TCP, which
		// records the failure and closes it, as a server-first client
		// would want to know at once.
		return byService, nil
	}
	up := &peekedConn{Conn: uc, r: pooledReader(uc)}
	type spoke struct {
		who speaker
		err error
	}
	ch := make(chan spoke, 2)
	go func() { _, err := br.Peek(1); ch <- spoke{byClient, err} }()
	go func() { _, err := up.r.Peek(1); ch <- spoke{byService, err} }()
	first := <-ch
	if first.who == byService && first.err != nil {
		// The service closed the idle connection (or failed): it does not
		// speak first. Wait for the client, and dial again for it later.
		uc.Close()
		if (<-ch).err != nil {
			return byNobody, nil
		}
		return byClient, nil
	}
	// Stop the other read, and keep what it may have read all the same.
	other := c
	if first.who == byClient {
		other = uc
	}
	other.SetReadDeadline(aLongTimeAgo)
	second := <-ch
	other.SetReadDeadline(time.Time{})
	switch {
	case first.who == byClient && first.err != nil:
		uc.Close()
		return byNobody, nil
	case first.who == byClient:
		if second.err == nil {
			// Both spoke at once: the service's greeting decides.
			return byService, up
		}
		return byClient, up
	}
	return byService, up
}

// aLongTimeAgo is a deadline in the past, which ends a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
