package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/devstack/devstack/trace"
)

// FuzzReadHead checks the fast path's head parser on arbitrary bytes: it
// never panics, and a head it accepts is written back (writeHead) to bytes
// that parse to the same head.
func FuzzReadHead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("POST /a HTTP/1.1\r\nContent-Length: 5\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nhello")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
	f.Add("GET / HTTP/1.0\r\n\r\n")
	f.Add("\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		var h head
		if err := readHead(bufio.NewReader(strings.NewReader(in)), &h); err != nil {
			return
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		writeHead(w, &h)
		w.Flush()
		var h2 head
		if err := readHead(bufio.NewReader(&buf), &h2); err != nil {
			t.Fatalf("re-reading a written head: %v\n%q", err, buf.String())
		}
		if h2.line != h.line || len(h2.fields) != len(h.fields) || h2.contentLength != h.contentLength ||
			h2.chunked != h.chunked || h2.close != h.close || h2.upgrade != h.upgrade {
			t.Fatalf("round trip changed the head:\n%+v\n%+v", h, h2)
		}
	})
}

// FuzzParseHead checks the event loop's head parser (from a byte slice)
// against the goroutine path's (from a reader): on any bytes they accept
// and reject the same heads and read them the same way, and the loop's
// never reads past the head. The chunk scanner gets the bytes after the
// head: it never panics and never claims more than it was given.
func FuzzParseHead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("\r\n\r\nPOST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: x")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		var a, b head
		n, errB := parseHead([]byte(in), &b, &trace.Span{})
		errA := readHead(bufio.NewReader(strings.NewReader(in)), &a)
		if n == 0 && errB == nil {
			if errA == nil {
				t.Fatalf("readHead took a head that parseHead says is incomplete: %q", in)
			}
			return // incomplete: readHead fails on the missing end
		}
		if (errA == nil) != (errB == nil) {
			t.Fatalf("readHead: %v, parseHead: %v, on %q", errA, errB, in)
		}
		if errB != nil {
			return
		}
		if n > len(in) || !strings.HasSuffix(in[:n], "\n") {
			t.Fatalf("parseHead took %d bytes of %q", n, in)
		}
		if a.line != b.line || len(a.fields) != len(b.fields) || a.contentLength != b.contentLength ||
			a.chunked != b.chunked || a.close != b.close || a.upgrade != b.upgrade {
			t.Fatalf("the parsers differ:\n%+v\n%+v", a, b)
		}
		var c chunkScanner
		rest := []byte(in[n:])
		for len(rest) > 0 {
			k := min(len(rest), 7) // in pieces, as reads would bring them
			m, payload, done, err := c.scan(rest[:k])
			if m > k || payload > int64(m) || m < 0 {
				t.Fatalf("scan(%q) = %d, %d", rest[:k], m, payload)
			}
			if done || err != nil {
				break
			}
			rest = rest[m:]
		}
	})
}
