package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
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
