package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The W3C trace-context test suite (github.com/w3c/trace-context, test/
// test.py at commit 00a91acf6cc05c274fdcd194e878d04172db3f5f), run as a
// table through the proxy, at STRICT_LEVEL 2: every case and assertion of
// its TraceContextTest and AdvancedTest, with the harness's own tracestate
// parser (tracecontext/tracestate.py) ported below.
//
// The topology is the suite's, with devstack in both places a vendor's
// tracer would be: the harness calls the service under test through the
// proxy, and the service calls the harness back, also through the proxy,
// forwarding the traceparent and tracestate it received. The harness
// checks what reaches it. bench/w3c-trace-context.sh runs the real Python
// harness the same way, from a copy of the suite outside the repository.

// w3cCase is one request of the suite: the headers the harness sends (in
// order, names as written), how many callbacks it asks for, and its
// checks on what the callbacks carried.
type w3cCase struct {
	name    string
	headers [][2]string
	count   int
	check   func(t *testing.T, got []w3cCallback)
}

// w3cCallback is what reached the harness in one callback.
type w3cCallback struct {
	traceparents []string
	tracestate   w3cTracestate
	tsErr        error
}

// traceparent parses the callback's one traceparent, as the harness's
// get_traceparent does.
func (cb w3cCallback) traceparent(t *testing.T) (version, traceID, parentID, flags string) {
	t.Helper()
	if len(cb.traceparents) != 1 {
		t.Fatalf("expect one traceparent header, got %q", cb.traceparents)
	}
	m := traceparentRE.FindStringSubmatch(cb.traceparents[0])
	if m == nil {
		t.Fatalf("traceparent %q is not valid", cb.traceparents[0])
	}
	return m[1], m[2], m[3], m[4]
}

var traceparentRE = regexp.MustCompile(`^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// w3cTracestate is the harness's Tracestate: members in order, the first
// of a duplicated key kept; a member it cannot parse is an error.
type w3cTracestate struct {
	keys []string
	vals map[string]string
}

var (
	tsKey       = `[a-z][_0-9a-z\-\*\/]{0,255}|[0-9a-z][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13}`
	tsValue     = `[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]`
	tsMemberRE  = regexp.MustCompile(`^(` + tsKey + `)(=)(` + tsValue + `)$`)
	tsDelimiter = regexp.MustCompile(`[ \t]*,[ \t]*`)
)

func (ts *w3cTracestate) fromString(s string) error {
	if ts.vals == nil {
		ts.vals = map[string]string{}
	}
	for _, member := range tsDelimiter.Split(s, -1) {
		if member == "" {
			continue
		}
		m := tsMemberRE.FindStringSubmatch(member)
		if m == nil {
			return fmt.Errorf("illegal key-value format %q", member)
		}
		if _, ok := ts.vals[m[1]]; !ok {
			ts.vals[m[1]] = m[3]
			ts.keys = append(ts.keys, m[1])
		}
	}
	return nil
}

func (ts w3cTracestate) String() string {
	var b []string
	for _, k := range ts.keys {
		b = append(b, k+"="+ts.vals[k])
	}
	return strings.Join(b, ",")
}

func (ts w3cTracestate) has(k string) bool { _, ok := ts.vals[k]; return ok }

const w3cID = "12345678901234567890123456789012"

func tp(v string) [2]string { return [2]string{"traceparent", v} }
func ts(v string) [2]string { return [2]string{"tracestate", v} }

// Checks, as the suite words them.
func sameTraceID(t *testing.T, got []w3cCallback) {
	t.Helper()
	if _, id, _, _ := got[0].traceparent(t); id != w3cID {
		t.Errorf("trace id %s; want %s kept", id, w3cID)
	}
}

func newTraceID(old ...string) func(*testing.T, []w3cCallback) {
	return func(t *testing.T, got []w3cCallback) {
		t.Helper()
		_, id, _, _ := got[0].traceparent(t)
		for _, o := range append(old, w3cID) {
			if id == o {
				t.Errorf("trace id %s was kept; want a new one", id)
			}
		}
	}
}

func validTraceparent(t *testing.T, got []w3cCallback) { t.Helper(); got[0].traceparent(t) }

// tsHas checks that the tracestate was inherited with these members.
func tsHas(kv ...string) func(*testing.T, []w3cCallback) {
	return func(t *testing.T, got []w3cCallback) {
		t.Helper()
		sameTraceID(t, got)
		if got[0].tsErr != nil {
			t.Fatalf("tracestate: %v", got[0].tsErr)
		}
		for i := 0; i < len(kv); i += 2 {
			if v, ok := got[0].tracestate.vals[kv[i]]; !ok || v != kv[i+1] {
				t.Errorf("tracestate %q: %s=%q; want %q", got[0].tracestate.String(), kv[i], v, kv[i+1])
			}
		}
	}
}

// tsLacks checks that these keys were not passed on (KeyError).
func tsLacks(keys ...string) func(*testing.T, []w3cCallback) {
	return func(t *testing.T, got []w3cCallback) {
		t.Helper()
		if got[0].tsErr != nil {
			t.Fatalf("tracestate: %v", got[0].tsErr)
		}
		for _, k := range keys {
			if got[0].tracestate.has(k) {
				t.Errorf("tracestate %q has %q; want it discarded", got[0].tracestate.String(), k)
			}
		}
	}
}

func all(checks ...func(*testing.T, []w3cCallback)) func(*testing.T, []w3cCallback) {
	return func(t *testing.T, got []w3cCallback) {
		t.Helper()
		for _, c := range checks {
			c(t, got)
		}
	}
}

func w3cCases() []w3cCase {
	p00 := tp("00-" + w3cID + "-1234567890123456-00")
	p01 := tp("00-" + w3cID + "-1234567890123456-01")
	bad := func(name, v string) w3cCase {
		return w3cCase{name: name, headers: [][2]string{tp(v)}, check: newTraceID()}
	}
	good := func(name string, h ...[2]string) w3cCase { return w3cCase{name: name, headers: h, check: sameTraceID} }
	keyWithout := "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	keyWith := keyWithout + "@a-z0-9_-*/"
	var value strings.Builder
	for c := 0x20; c <= 0x7e; c++ {
		if c != 0x2c && c != 0x3d {
			value.WriteByte(byte(c))
		}
	}
	var members33 []string
	for i := 1; i <= 33; i++ {
		members33 = append(members33, fmt.Sprintf("bar%02d=%02d", i, i))
	}
	split := func(ms []string) [][2]string {
		var h [][2]string
		for i := 0; i < len(ms); i += 10 {
			h = append(h, ts(strings.Join(ms[i:min(i+10, len(ms))], ",")))
		}
		return h
	}
	cases := []w3cCase{
		{name: "both_traceparent_and_tracestate_missing", check: validTraceparent},
		{name: "traceparent_included_tracestate_missing", headers: [][2]string{p01}, check: func(t *testing.T, got []w3cCallback) {
			_, id, parent, _ := got[0].traceparent(t)
			if id != w3cID || parent == "1234567890123456" {
				t.Errorf("trace id %s parent %s; want the trace id kept and a new parent id", id, parent)
			}
		}},
		{name: "traceparent_duplicated", headers: [][2]string{tp("00-12345678901234567890123456789011-1234567890123456-01"), p01},
			check: newTraceID("12345678901234567890123456789011")},
		{name: "traceparent_header_name/trace-parent", headers: [][2]string{{"trace-parent", p01[1]}}, check: newTraceID()},
		{name: "traceparent_header_name/trace.parent", headers: [][2]string{{"trace.parent", p01[1]}}, check: newTraceID()},
		good("traceparent_header_name_valid_casing/TraceParent", [2]string{"TraceParent", p01[1]}),
		good("traceparent_header_name_valid_casing/TrAcEpArEnT", [2]string{"TrAcEpArEnT", p01[1]}),
		good("traceparent_header_name_valid_casing/TRACEPARENT", [2]string{"TRACEPARENT", p01[1]}),
		bad("traceparent_version_0x00/trailing dot", "00-"+w3cID+"-1234567890123456-01."),
		bad("traceparent_version_0x00/trailing data", "00-"+w3cID+"-1234567890123456-01-what-the-future-will-be-like"),
		good("traceparent_version_0xcc", tp("cc-"+w3cID+"-1234567890123456-01")),
		good("traceparent_version_0xcc/future data", tp("cc-"+w3cID+"-1234567890123456-01-what-the-future-will-be-like")),
		bad("traceparent_version_0xcc/no dash", "cc-"+w3cID+"-1234567890123456-01.what-the-future-will-be-like"),
		bad("traceparent_version_0xff", "ff-"+w3cID+"-1234567890123456-01"),
		bad("traceparent_version_illegal_characters/.0", ".0-"+w3cID+"-1234567890123456-01"),
		bad("traceparent_version_illegal_characters/0.", "0.-"+w3cID+"-1234567890123456-01"),
		bad("traceparent_version_too_long/000", "000-"+w3cID+"-1234567890123456-01"),
		bad("traceparent_version_too_long/0000", "0000-"+w3cID+"-1234567890123456-01"),
		bad("traceparent_version_too_short", "0-"+w3cID+"-1234567890123456-01"),
		{name: "traceparent_trace_id_all_zero", headers: [][2]string{tp("00-00000000000000000000000000000000-1234567890123456-01")},
			check: newTraceID("00000000000000000000000000000000")},
		bad("traceparent_trace_id_illegal_characters/first", "00-.2345678901234567890123456789012-1234567890123456-01"),
		bad("traceparent_trace_id_illegal_characters/last", "00-1234567890123456789012345678901.-1234567890123456-01"),
		{name: "traceparent_trace_id_too_long", headers: [][2]string{tp("00-123456789012345678901234567890123-1234567890123456-01")},
			check: newTraceID("123456789012345678901234567890123", "23456789012345678901234567890123")},
		bad("traceparent_trace_id_too_short", "00-1234567890123456789012345678901-1234567890123456-01"),
		bad("traceparent_parent_id_all_zero", "00-"+w3cID+"-0000000000000000-01"),
		bad("traceparent_parent_id_illegal_characters/first", "00-"+w3cID+"-.234567890123456-01"),
		bad("traceparent_parent_id_illegal_characters/last", "00-"+w3cID+"-123456789012345.-01"),
		bad("traceparent_parent_id_too_long", "00-"+w3cID+"-12345678901234567-01"),
		bad("traceparent_parent_id_too_short", "00-"+w3cID+"-123456789012345-01"),
		bad("traceparent_trace_flags_illegal_characters/.0", "00-"+w3cID+"-1234567890123456-.0"),
		bad("traceparent_trace_flags_illegal_characters/0.", "00-"+w3cID+"-1234567890123456-0."),
		bad("traceparent_trace_flags_too_long", "00-"+w3cID+"-1234567890123456-001"),
		bad("traceparent_trace_flags_too_short", "00-"+w3cID+"-1234567890123456-1"),
		good("traceparent_ows_handling/leading space", tp(" "+p01[1])),
		good("traceparent_ows_handling/leading tab", tp("\t"+p01[1])),
		good("traceparent_ows_handling/trailing space", tp(p01[1]+" ")),
		good("traceparent_ows_handling/trailing tab", tp(p01[1]+"\t")),
		good("traceparent_ows_handling/both", tp("\t "+p01[1]+" \t")),
		{name: "tracestate_included_traceparent_included", headers: [][2]string{p00, ts("foo=1,bar=2")}, check: tsHas("foo", "1", "bar", "2")},
		{name: "tracestate_header_name/trace-state", headers: [][2]string{p00, {"trace-state", "foo=1"}}, check: tsLacks("foo")},
		{name: "tracestate_header_name/trace.state", headers: [][2]string{p00, {"trace.state", "foo=1"}}, check: tsLacks("foo")},
		{name: "tracestate_header_name_valid_casing/TraceState", headers: [][2]string{p00, {"TraceState", "foo=1"}}, check: tsHas("foo", "1")},
		{name: "tracestate_header_name_valid_casing/TrAcEsTaTe", headers: [][2]string{p00, {"TrAcEsTaTe", "foo=1"}}, check: tsHas("foo", "1")},
		{name: "tracestate_header_name_valid_casing/TRACESTATE", headers: [][2]string{p00, {"TRACESTATE", "foo=1"}}, check: tsHas("foo", "1")},
		{name: "tracestate_empty_header/alone", headers: [][2]string{p00, ts("")}, check: all(sameTraceID, tsLacks())},
		{name: "tracestate_empty_header/after", headers: [][2]string{p00, ts("foo=1"), ts("")}, check: tsHas("foo", "1")},
		{name: "tracestate_empty_header/before", headers: [][2]string{p00, ts(""), ts("foo=1")}, check: tsHas("foo", "1")},
		{name: "tracestate_multiple_headers_different_keys", headers: [][2]string{p00, ts("foo=1,bar=2"), ts("rojo=1,congo=2"), ts("baz=3")},
			check: func(t *testing.T, got []w3cCallback) {
				tsHas("foo", "1", "bar", "2", "rojo", "1", "congo", "2", "baz", "3")(t, got)
				if s := got[0].tracestate.String(); !strings.Contains(s, "foo=1,bar=2,rojo=1,congo=2,baz=3") {
					t.Errorf("tracestate %q: members out of order", s)
				}
			}},
		{name: "tracestate_duplicated_keys/one header same value", headers: [][2]string{p00, ts("foo=1,foo=1")}, check: all(sameTraceID, tsLacks("foo"))},
		{name: "tracestate_duplicated_keys/one header", headers: [][2]string{p00, ts("foo=1,foo=2")}, check: all(sameTraceID, tsLacks("foo"))},
		{name: "tracestate_duplicated_keys/two headers same value", headers: [][2]string{p00, ts("foo=1"), ts("foo=1")}, check: all(sameTraceID, tsLacks("foo"))},
		{name: "tracestate_duplicated_keys/two headers", headers: [][2]string{p00, ts("foo=1"), ts("foo=2")}, check: all(sameTraceID, tsLacks("foo"))},
		{name: "tracestate_all_allowed_characters/no vendor", headers: [][2]string{p00, ts(keyWithout + "=" + value.String())}, check: tsHas(keyWithout, value.String())},
		{name: "tracestate_all_allowed_characters/vendor", headers: [][2]string{p00, ts(keyWith + "=" + value.String())}, check: tsHas(keyWith, value.String())},
		{name: "tracestate_ows_handling/spaces and tabs", headers: [][2]string{p00, ts("foo=1 \t , \t bar=2, \t baz=3")}, check: tsHas("foo", "1", "bar", "2", "baz", "3")},
		{name: "tracestate_ows_handling/tabs and spaces", headers: [][2]string{p00, ts("foo=1\t \t,\t \tbar=2,\t \tbaz=3")}, check: tsHas("foo", "1", "bar", "2", "baz", "3")},
		{name: "tracestate_ows_handling/leading space", headers: [][2]string{p00, ts(" foo=1")}, check: tsHas("foo", "1")},
		{name: "tracestate_ows_handling/leading tab", headers: [][2]string{p00, ts("\tfoo=1")}, check: tsHas("foo", "1")},
		{name: "tracestate_ows_handling/trailing space", headers: [][2]string{p00, ts("foo=1 ")}, check: tsHas("foo", "1")},
		{name: "tracestate_ows_handling/trailing tab", headers: [][2]string{p00, ts("foo=1\t")}, check: tsHas("foo", "1")},
		{name: "tracestate_ows_handling/both", headers: [][2]string{p00, ts("\t foo=1 \t")}, check: tsHas("foo", "1")},
		{name: "tracestate_key_illegal_characters/space", headers: [][2]string{p00, ts("foo =1")}, check: tsLacks("foo ")},
		{name: "tracestate_key_illegal_characters/upper", headers: [][2]string{p00, ts("FOO=1")}, check: tsLacks("FOO")},
		{name: "tracestate_key_illegal_characters/dot", headers: [][2]string{p00, ts("foo.bar=1")}, check: tsLacks("foo.bar")},
		{name: "tracestate_key_illegal_vendor_format/empty vendor", headers: [][2]string{p00, ts("foo@=1,bar=2")}, check: tsLacks("bar")},
		{name: "tracestate_key_illegal_vendor_format/empty tenant", headers: [][2]string{p00, ts("@foo=1,bar=2")}, check: tsLacks("bar")},
		{name: "tracestate_key_illegal_vendor_format/two @", headers: [][2]string{p00, ts("foo@@bar=1,bar=2")}, check: tsLacks("bar")},
		{name: "tracestate_key_illegal_vendor_format/two vendors", headers: [][2]string{p00, ts("foo@bar@baz=1,bar=2")}, check: tsLacks("bar")},
		{name: "tracestate_member_count_limit/32", headers: append([][2]string{p00}, split(members33[:32])...), check: func(t *testing.T, got []w3cCallback) {
			tsHas("bar01", "01")(t, got)
			if n := len(got[0].tracestate.keys); n != 32 {
				t.Errorf("tracestate has %d members; want 32", n)
			}
		}},
		{name: "tracestate_member_count_limit/33", headers: append([][2]string{p00}, split(members33)...), check: tsLacks("bar01")},
		{name: "tracestate_key_length_limit/256", headers: [][2]string{p00, ts("foo=1"), ts(strings.Repeat("z", 256) + "=1")}, check: tsHas("foo", "1")},
		{name: "tracestate_key_length_limit/257", headers: [][2]string{p00, ts("foo=1"), ts(strings.Repeat("z", 257) + "=1")}, check: tsLacks("foo")},
		{name: "tracestate_key_length_limit/tenant 241 vendor 14", headers: [][2]string{p00, ts("foo=1"), ts(strings.Repeat("t", 241) + "@" + strings.Repeat("v", 14) + "=1")}, check: tsHas("foo", "1")},
		{name: "tracestate_key_length_limit/tenant 242", headers: [][2]string{p00, ts("foo=1"), ts(strings.Repeat("t", 242) + "@v=1")}, check: tsLacks("foo")},
		{name: "tracestate_key_length_limit/vendor 15", headers: [][2]string{p00, ts("foo=1"), ts("t@" + strings.Repeat("v", 15) + "=1")}, check: tsLacks("foo")},
		{name: "tracestate_value_illegal_characters/equals", headers: [][2]string{p00, ts("foo=bar=baz")}, check: tsLacks("foo")},
		{name: "tracestate_value_illegal_characters/empty", headers: [][2]string{p00, ts("foo=,bar=3")}, check: tsLacks("foo", "bar")},
		{name: "multiple_requests_with_valid_traceparent", headers: [][2]string{p01}, count: 3, check: func(t *testing.T, got []w3cCallback) {
			ids, parents := map[string]bool{}, map[string]bool{}
			for _, cb := range got {
				_, id, parent, _ := cb.traceparent(t)
				ids[id], parents[parent] = true, true
			}
			if len(ids) != 1 || !ids[w3cID] || len(parents) != 3 {
				t.Errorf("trace ids %v, parent ids %v; want %s in all three, three parent ids", ids, parents, w3cID)
			}
		}},
		{name: "multiple_requests_without_traceparent", count: 3, check: func(t *testing.T, got []w3cCallback) {
			parents := map[string]bool{}
			for _, cb := range got {
				_, _, parent, _ := cb.traceparent(t)
				parents[parent] = true
			}
			if len(parents) != 3 {
				t.Errorf("parent ids %v; want three", parents)
			}
		}},
		{name: "multiple_requests_with_illegal_traceparent", headers: [][2]string{tp("00-00000000000000000000000000000000-1234567890123456-01")}, count: 3,
			check: func(t *testing.T, got []w3cCallback) {
				parents := map[string]bool{}
				for _, cb := range got {
					_, id, parent, _ := cb.traceparent(t)
					if id == "00000000000000000000000000000000" {
						t.Error("the all-zero trace id was passed on")
					}
					parents[parent] = true
				}
				if len(parents) != 3 {
					t.Errorf("parent ids %v; want three", parents)
				}
			}},
	}
	// tracestate_included_traceparent_missing: two requests whose
	// tracestates must come out alike (discarded).
	var first []w3cCallback
	cases = append(cases,
		w3cCase{name: "tracestate_included_traceparent_missing/1", headers: [][2]string{ts("foo=1")}, check: func(t *testing.T, got []w3cCallback) { first = got }},
		w3cCase{name: "tracestate_included_traceparent_missing/2", headers: [][2]string{ts("foo=1,bar=2")}, check: func(t *testing.T, got []w3cCallback) {
			if first == nil || len(first[0].tracestate.keys) != len(got[0].tracestate.keys) {
				t.Errorf("tracestates %v and %v; want them alike (discarded)", first, got)
			}
		}},
	)
	return cases
}

// The suite, through the proxy, on the goroutine HTTP/1 path (a
// connection per request, as the harness's client makes them) and on one
// kept-alive connection (the event loop, after the first).
func TestW3CTraceContextSuite(t *testing.T) {
	rec := newMemRecorder()
	go func() {
		for range rec.ch {
		}
	}()
	s := New(Options{Recorder: rec})
	var mu sync.Mutex
	callbacks := map[string][]w3cCallback{}
	harness := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb := w3cCallback{traceparents: r.Header.Values("Traceparent")}
		for _, v := range r.Header.Values("Tracestate") {
			if err := cb.tracestate.fromString(v); err != nil && cb.tsErr == nil {
				cb.tsErr = err
			}
		}
		mu.Lock()
		callbacks[r.URL.Path] = append(callbacks[r.URL.Path], cb)
		mu.Unlock()
	}))
	defer harness.Close()
	harnessAddr := freeAddr(t)
	// The service under test calls the harness back (through the proxy)
	// once per requested callback, with the context it received.
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.Header.Get("X-Callbacks"))
		for i := range n {
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s%s/%d", harnessAddr, r.URL.Path, i), nil)
			req.Header["Traceparent"] = r.Header.Values("Traceparent")
			req.Header["Tracestate"] = r.Header.Values("Tracestate")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}))
	defer svc.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(svc.URL)}, Route{Service: "harness", Listen: harnessAddr, Upstream: hostOf(harness.URL)})[0]

	for _, keepAlive := range []bool{false, true} {
		var kept net.Conn
		var keptR *bufio.Reader
		if keepAlive {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			kept, keptR = c, bufio.NewReader(c)
		}
		for i, tc := range w3cCases() {
			t.Run(fmt.Sprintf("keepalive=%v/%s", keepAlive, tc.name), func(t *testing.T) {
				path := fmt.Sprintf("/%v/%d", keepAlive, i)
				count := max(tc.count, 1)
				var b strings.Builder
				fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nX-Callbacks: %d\r\n", path, count)
				if !keepAlive {
					b.WriteString("Connection: close\r\n")
				}
				for _, h := range tc.headers {
					fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
				}
				b.WriteString("\r\n")
				c, br := kept, keptR
				if !keepAlive {
					var err error
					if c, err = net.Dial("tcp", addr); err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					br = bufio.NewReader(c)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, b.String())
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("the service answered %s: %s", resp.Status, body)
				}
				var got []w3cCallback
				mu.Lock()
				for j := range count {
					got = append(got, callbacks[fmt.Sprintf("%s/%d", path, j)]...)
				}
				mu.Unlock()
				if len(got) != count {
					t.Fatalf("%d callbacks reached the harness; want %d", len(got), count)
				}
				tc.check(t, got)
			})
		}
	}
	if ls := s.loops.Load(); ls == nil || ls.served() == 0 {
		t.Error("no request went through an event loop")
	}
}
