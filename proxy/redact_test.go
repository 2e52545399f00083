package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
	"github.com/devstack/devstack/trace/render"
	"github.com/devstack/devstack/trace/store"
)

// credential is a real-world credential-bearing header; secret is the
// part of its value that must never be recorded.
type credential struct{ name, value, secret string }

// requestCredentials are headers that clients, gateways and webhooks send.
var requestCredentials = []credential{
	{"Authorization", "Basic YWxpY2U6UzNDUjNUMDE=", "YWxpY2U6UzNDUjNUMDE"},
	{"Proxy-Authorization", "Bearer tok-S3CR3T02", "S3CR3T02"},
	{"Authentication", "tok-S3CR3T03", "S3CR3T03"},
	{"X-Auth", "S3CR3T04", "S3CR3T04"},
	{"X-Auth-Token", "S3CR3T05", "S3CR3T05"},
	{"X-Jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJTM0NSM1QwNiJ9.c2lnMDY", "eyJzdWIiOiJTM0NSM1QwNiJ9"},
	{"Signature", `keyId="k1",algorithm="hs2019",signature="S3CR3T07"`, "S3CR3T07"},
	{"X-Hub-Signature-256", "sha256=S3CR3T08", "S3CR3T08"},
	{"X-Client-Cert", "MIIBS3CR3T09", "S3CR3T09"},
	{"X-Forwarded-Client-Cert", `Hash=S3CR3T10;Subject="CN=a"`, "S3CR3T10"},
	{"X-Db-Password", "S3CR3T11", "S3CR3T11"},
	{"X-Passphrase", "S3CR3T12", "S3CR3T12"},
	{"Referer", "https://app.example/callback?code=S3CR3T13&state=keep13", "S3CR3T13"},
	{"X-Original-Url", "/login?access_token=S3CR3T14&next=/keep14", "S3CR3T14"},
	{"X-Upstream-Credentials-Hint", "Bearer S3CR3T15", "S3CR3T15"},
	{"X-Context", "eyJhbGciOiJub25lIn0.eyJTM0NSM1QxNiI6MX0.", "eyJTM0NSM1QxNiI6MX0"},
	{"Cookie", "sid=S3CR3T17", "S3CR3T17"},
	{"X-Api-Key", "S3CR3T18", "S3CR3T18"},
	{"X-Amz-Security-Token", "S3CR3T19", "S3CR3T19"},
	{"Stripe-Signature", "t=1,v1=S3CR3T20", "S3CR3T20"},
	{"X-Shopify-Hmac-Sha256", "S3CR3T21", "S3CR3T21"},
	{"X-Xsrf-Token", "S3CR3T22", "S3CR3T22"},
	{"X-Forwarded-Uri", "/cb?X-Amz-Signature=S3CR3T23&X-Amz-Credential=S3CR3T24&id=keep23", "S3CR3T23"},
	{"X-Forwarded-Uri2", "/cb?X-Amz-Signature=S3CR3T23&X-Amz-Credential=S3CR3T24&id=keep23", "S3CR3T24"},
}

// responseCredentials are headers that services answer with.
var responseCredentials = []credential{
	{"Www-Authenticate", `Bearer realm="api", error="invalid_token", error_description="S3CR3T30"`, "S3CR3T30"},
	{"Set-Cookie", "session=S3CR3T31; HttpOnly", "S3CR3T31"},
	{"Location", "https://app.example/cb?code=S3CR3T32&state=keep32", "S3CR3T32"},
	{"Authentication-Info", `nextnonce="S3CR3T33"`, "S3CR3T33"},
	{"Content-Location", "/x?sig=S3CR3T34&v=keep34", "S3CR3T34"},
	{"X-Refresh-Token", "S3CR3T35", "S3CR3T35"},
}

// What redaction must keep, so that a redacted record still reads as
// what happened.
var keptParts = []string{"state=keep13", "next=/keep14", "id=keep23", "state=keep32", "v=keep34", "https://app.example/callback?code="}

// Credentials sent through every path of the proxy (a connection's first
// request, the event loop's next ones, h2c) reach the service unchanged,
// and are in none of what devstack writes or shows: the span files, the
// spans as `trace --format json` prints them, and the OTLP export.
func TestCredentialsNeverReachTheRecords(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := make(chan http.Header, 10)
	up := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		for _, c := range responseCredentials {
			w.Header().Set(c.name, c.value)
		}
		io.WriteString(w, "ok")
	}))
	s := New(Options{Recorder: st})
	addr := front(t, s, Route{Service: "api", Upstream: up})[0]

	var head strings.Builder
	head.WriteString("GET /x HTTP/1.1\r\nHost: api\r\n")
	for _, c := range requestCredentials {
		head.WriteString(c.name + ": " + c.value + "\r\n")
	}
	head.WriteString("\r\n")
	// Two requests on one connection: the goroutine path serves the first,
	// the event loop (where there is one) the second.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for range 2 {
		if _, err := io.WriteString(conn, head.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// h2c: the net/http path.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addr+"/x", nil)
	for _, c := range requestCredentials {
		req.Header.Set(c.name, c.value)
	}
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("the h2c request was answered over %s", resp.Proto)
	}

	for i := range 3 {
		h := <-got
		for _, c := range requestCredentials {
			if c.name == "Proxy-Authorization" {
				continue // hop-by-hop: net/http's path drops it, as it should
			}
			if h.Get(c.name) != c.value {
				t.Errorf("request %d: the service got %s: %q, want it unchanged: %q", i, c.name, h.Get(c.name), c.value)
			}
		}
	}

	var spans []*trace.Span
	deadline := time.Now().Add(10 * time.Second)
	for len(spans) < 3 && time.Now().Before(deadline) {
		st.Flush()
		spans = spans[:0]
		for _, sum := range st.Traces(trace.Query{}) {
			spans = append(spans, st.Trace(sum.TraceID)...)
		}
	}
	if len(spans) < 3 {
		t.Fatalf("%d spans recorded; want 3", len(spans))
	}
	var shown bytes.Buffer
	enc := json.NewEncoder(&shown)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(spans); err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	if err := render.WriteOTLPJSON(&export, spans); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var files bytes.Buffer
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			files.Write(b)
		}
		return nil
	})
	for what, b := range map[string][]byte{"the span files": files.Bytes(), "trace --format json": shown.Bytes(), "the OTLP export": export.Bytes()} {
		for _, c := range append(append([]credential{}, requestCredentials...), responseCredentials...) {
			if bytes.Contains(b, []byte(c.secret)) {
				t.Errorf("%s hold %s's credential %q", what, c.name, c.secret)
			}
		}
		if what == "the span files" {
			continue // compressed or encoded: only the absence of secrets is checked there
		}
		for _, k := range keptParts {
			if !bytes.Contains(b, []byte(k)) {
				t.Errorf("%s lost %q, which is no credential", what, k)
			}
		}
	}
	// The spans were all recorded with headers: the check above saw them.
	for _, sp := range spans {
		if len(sp.ReqHeaders) < len(requestCredentials) || len(sp.RespHeaders) < len(responseCredentials) {
			t.Errorf("a %s span recorded %d request and %d response headers", sp.Protocol, len(sp.ReqHeaders), len(sp.RespHeaders))
		}
	}
}

// Value shapes are recognised whatever the header's name; ordinary values
// are left alone (and, on the hot path, not copied).
func TestRedactValueShapes(t *testing.T) {
	for v, want := range map[string]string{
		"Bearer abc.def":                        Redacted,
		"basic dXNlcjpwYXNz":                    Redacted,
		"Digest username=\"a\", response=\"b\"": Redacted,
		"AWS4-HMAC-SHA256 Credential=AKIA/x":    Redacted,
		"x eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.sig": Redacted,
		"Basic":                                 "Basic",
		"Mozilla/5.0 (X11; Linux x86_64)":       "Mozilla/5.0 (X11; Linux x86_64)",
		"text/html;q=0.9":                       "text/html;q=0.9",
		"eyJ-not.a-token":                       "eyJ-not.a-token",
		"/a?page=2&sort=asc":                    "/a?page=2&sort=asc",
		"/a?code=1&page=2#frag":                 "/a?code=[redacted]&page=2#frag",
		"/a?zipcode=1&Client_Secret=s;k=v":      "/a?zipcode=1&Client_Secret=[redacted];k=v",
		"/a?token=":                             "/a?token=",
	} {
		if got := NewRedactor(nil).redactValue(v); got != want {
			t.Errorf("redactValue(%q) = %q, want %q", v, got, want)
		}
	}
	v := "text/html,application/xhtml+xml;q=0.9 ?page=1"
	rd := NewRedactor(nil)
	if n := testing.AllocsPerRun(100, func() { rd.redactValue(v) }); n != 0 {
		t.Errorf("redactValue allocates %v times for a value without credentials", n)
	}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// newH2CServer serves h on a free port over HTTP/1.1 and h2c, and returns
// its address.
func newH2CServer(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return l.Addr().String()
}
