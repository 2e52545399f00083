package fault

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

type hdr http.Header

func (h hdr) Header(name string) (string, bool) {
	v, ok := http.Header(h)[http.CanonicalHeaderKey(name)]
	if !ok {
		return "", false
	}
	return v[0], true
}

func seeded(seed uint64) func() uint64 {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Uint64
}

func mustCompile(t *testing.T, rules []Rule, o Options) *Set {
	t.Helper()
	s, err := Compile(rules, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMatch(t *testing.T) {
	lat := Fault{Kind: Latency, Duration: 200 * time.Millisecond}
	get := &Req{Service: "payments", Caller: "orders", Method: "POST", Path: "/charge/42", Header: hdr{"X-Tenant": {"acme"}}}
	tests := []struct {
		name string
		rule Rule
		req  *Req
		want bool
	}{
		{"service", Rule{Service: "payments", Fault: lat}, get, true},
		{"other service", Rule{Service: "fraud", Fault: lat}, get, false},
		{"caller", Rule{Service: "payments", Caller: "orders", Fault: lat}, get, true},
		{"other caller", Rule{Service: "payments", Caller: "gateway", Fault: lat}, get, false},
		{"client caller", Rule{Service: "payments", Caller: "client", Fault: lat}, &Req{Service: "payments"}, true},
		{"client caller, from a service", Rule{Service: "payments", Caller: "client", Fault: lat}, get, false},
		{"route glob", Rule{Service: "payments", Route: "/charge*", Fault: lat}, get, true},
		{"route glob spans slashes", Rule{Service: "payments", Route: "/*/42", Fault: lat}, get, true},
		{"route ?", Rule{Service: "payments", Route: "/charge/4?", Fault: lat}, get, true},
		{"route exact miss", Rule{Service: "payments", Route: "/charge", Fault: lat}, get, false},
		{"method", Rule{Service: "payments", Method: "POST", Fault: lat}, get, true},
		{"other method", Rule{Service: "payments", Method: "GET", Fault: lat}, get, false},
		{"header present", Rule{Service: "payments", Header: &HeaderMatch{Name: "x-tenant"}, Fault: lat}, get, true},
		{"header absent", Rule{Service: "payments", Header: &HeaderMatch{Name: "x-other"}, Fault: lat}, get, false},
		{"header exact", Rule{Service: "payments", Header: &HeaderMatch{Name: "X-Tenant", Value: "acme"}, Fault: lat}, get, true},
		{"header exact miss", Rule{Service: "payments", Header: &HeaderMatch{Name: "X-Tenant", Value: "acm"}, Fault: lat}, get, false},
		{"header regex", Rule{Service: "payments", Header: &HeaderMatch{Name: "X-Tenant", Regex: "^ac"}, Fault: lat}, get, true},
		{"header regex miss", Rule{Service: "payments", Header: &HeaderMatch{Name: "X-Tenant", Regex: "^z"}, Fault: lat}, get, false},
		{"expired", Rule{Service: "payments", Expires: time.Now().Add(-time.Second), Fault: lat}, get, false},
		{"not yet expired", Rule{Service: "payments", Expires: time.Now().Add(time.Hour), Fault: lat}, get, true},
		{"tcp: plain latency applies", Rule{Service: "payments", Fault: lat}, &Req{Service: "payments", TCP: true}, true},
		{"tcp: route rule does not", Rule{Service: "payments", Route: "/x", Fault: lat}, &Req{Service: "payments", TCP: true}, false},
		{"tcp: abort does not", Rule{Service: "payments", Fault: Fault{Kind: Abort, Status: 503}}, &Req{Service: "payments", TCP: true}, false},
		{"tcp: port down does", Rule{Service: "payments", Fault: Fault{Kind: PortDown}}, &Req{Service: "payments", TCP: true}, true},
		{"tcp: limit-data does", Rule{Service: "payments", Fault: Fault{Kind: LimitData, Bytes: 10}}, &Req{Service: "payments", TCP: true}, true},
		{"tcp: slow-close does", Rule{Service: "payments", Fault: Fault{Kind: SlowClose, Duration: time.Second}}, &Req{Service: "payments", TCP: true}, true},
		{"http: timeout does", Rule{Service: "payments", Route: "/charge*", Fault: Fault{Kind: Timeout}}, get, true},
		{"tcp: response latency does not", Rule{Service: "payments", Direction: Response, Fault: lat}, &Req{Service: "payments", TCP: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, []Rule{tt.rule}, Options{})
			var d Decision
			if got := s.Decide(tt.req, &d); got != tt.want {
				t.Fatalf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecisionCombines(t *testing.T) {
	s := mustCompile(t, []Rule{
		{Service: "a", Fault: Fault{Kind: Latency, Duration: 100 * time.Millisecond}},
		{Service: "a", Fault: Fault{Kind: Latency, Duration: 50 * time.Millisecond}, Direction: Response},
		{Service: "a", Fault: Fault{Kind: Abort, Status: 503, Body: "down"}},
		{Service: "a", Fault: Fault{Kind: Reset}}, // loses to the abort
		{Service: "a", Fault: Fault{Kind: Bandwidth, Rate: 4096}},
		{Service: "a", Fault: Fault{Kind: Bandwidth, Rate: 1024}},
		{Service: "a", Fault: Fault{Kind: LimitData, Bytes: 100}},
		{Service: "a", Fault: Fault{Kind: SlowClose, Duration: time.Second}},
	}, Options{})
	var d Decision
	if !s.Decide(&Req{Service: "a"}, &d) {
		t.Fatal("no decision")
	}
	if d.Delay != 100*time.Millisecond || d.RespDelay != 50*time.Millisecond {
		t.Errorf("delays %v, %v", d.Delay, d.RespDelay)
	}
	if d.Stop != Abort || d.Status != 503 || d.Body != "down" || d.StopOnResponse {
		t.Errorf("stop %v %d %q %v", d.Stop, d.Status, d.Body, d.StopOnResponse)
	}
	if d.Rate != 1024 || d.LimitBytes != 100 || d.CloseDelay != time.Second {
		t.Errorf("rate %d, want the tightest 1024; limit %d close delay %v", d.Rate, d.LimitBytes, d.CloseDelay)
	}
	want := []string{"latency 100ms", "latency 50ms on response", "abort 503", "bandwidth 4096B/s"}
	if got := d.AppendLabels(nil); !slices.Equal(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
}

func TestFirstN(t *testing.T) {
	rules := []Rule{{ID: "x", Service: "a", First: 3, Fault: Fault{Kind: Reset}}}
	s := mustCompile(t, rules, Options{})
	var d Decision
	n := 0
	for range 10 {
		if s.Decide(&Req{Service: "a"}, &d) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("first 3 applied %d times", n)
	}
	// Recompiled with another rule added, the count carries over by ID.
	s2 := mustCompile(t, append(rules, Rule{Service: "b", Fault: Fault{Kind: Reset}}), Options{Previous: s})
	if s2.Decide(&Req{Service: "a"}, &d) {
		t.Fatal("a recompiled set forgot the rule's count")
	}
}

// The probability is drawn per request: over 10,000 decisions at 0.2 the
// share must be within ±1.5% (seeded, so the test is deterministic; the
// bound is about 4 standard deviations).
func TestProbabilityPerRequest(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		s := mustCompile(t, []Rule{{Service: "a", Probability: 0.2, Fault: Fault{Kind: Abort, Status: 503}}}, Options{Rand: seeded(seed)})
		var d Decision
		hits := 0
		const n = 10000
		for range n {
			if s.Decide(&Req{Service: "a"}, &d) {
				hits++
			}
		}
		if share := float64(hits) / n; math.Abs(share-0.2) > 0.015 {
			t.Errorf("seed %d: %.4f of requests faulted, want 0.2 ± 0.015", seed, share)
		}
	}
}

func TestJitter(t *testing.T) {
	const n = 20000
	for _, dist := range []Dist{Uniform, Normal} {
		s := mustCompile(t, []Rule{{Service: "a", Fault: Fault{Kind: Latency, Duration: 100 * time.Millisecond, Jitter: 20 * time.Millisecond, Dist: dist}}}, Options{Rand: seeded(7)})
		var sum, sq float64
		lo, hi := time.Hour, time.Duration(0)
		var d Decision
		for range n {
			s.Decide(&Req{Service: "a"}, &d)
			x := float64(d.Delay) / float64(time.Millisecond)
			sum += x
			sq += x * x
			lo, hi = min(lo, d.Delay), max(hi, d.Delay)
		}
		mean := sum / n
		sd := math.Sqrt(sq/n - mean*mean)
		if math.Abs(mean-100) > 0.5 {
			t.Errorf("%v: mean %.2fms, want 100", dist, mean)
		}
		switch dist {
		case Uniform: // sd of U(80,120) is 40/sqrt(12) = 11.55
			if lo < 80*time.Millisecond || hi > 120*time.Millisecond || math.Abs(sd-11.55) > 0.3 {
				t.Errorf("uniform: range %v..%v sd %.2f", lo, hi, sd)
			}
		case Normal:
			if math.Abs(sd-20) > 0.5 || hi < 150*time.Millisecond {
				t.Errorf("normal: sd %.2f, max %v", sd, hi)
			}
		}
	}
	// --jitter alone means uniform, and fixed means exactly.
	s := mustCompile(t, []Rule{{Service: "a", Fault: Fault{Kind: Latency, Duration: time.Second}}}, Options{})
	var d Decision
	s.Decide(&Req{Service: "a"}, &d)
	if d.Delay != time.Second {
		t.Errorf("fixed latency drew %v", d.Delay)
	}
}

func TestNoAllocWhenNoRuleNamesTheService(t *testing.T) {
	s := mustCompile(t, []Rule{{Service: "payments", Route: "/charge*", Header: &HeaderMatch{Name: "x", Regex: "y+"}, Fault: Fault{Kind: Latency, Duration: time.Millisecond}}}, Options{})
	var tab Table
	tab.Store(s)
	h := hdr{"X": {"nope"}}
	var d Decision
	allocs := testing.AllocsPerRun(1000, func() {
		r := Req{Service: "orders", Method: "GET", Path: "/x", Header: h}
		if set := tab.Load(); set.Targets(r.Service) {
			set.Decide(&r, &d)
		}
		// A rule for the service that does not match allocates nothing either.
		r.Service = "payments"
		tab.Load().Decide(&r, &d)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per decision", allocs)
	}
	var empty Table // no set at all
	if empty.Load().Targets("x") || empty.Load().Decide(&Req{Service: "x"}, &d) {
		t.Fatal("an empty table decided something")
	}
}

func TestHeaderTrigger(t *testing.T) {
	req := &Req{Service: "orders", Header: hdr{"X-Devstack-Fault": {"latency=200ms"}}}
	var d Decision
	off := mustCompile(t, nil, Options{})
	if off.Targets("orders") || off.Decide(req, &d) {
		t.Fatal("header obeyed while off")
	}
	on := mustCompile(t, nil, Options{HeaderTrigger: true})
	if !on.Targets("orders") || !on.Decide(req, &d) || d.Delay != 200*time.Millisecond {
		t.Fatalf("header on: %+v", d)
	}
	bad := &Req{Service: "orders", Header: hdr{"X-Devstack-Fault": {"latency=soon"}}}
	if on.Decide(bad, &d) || d.TriggerErr == nil || !strings.Contains(d.TriggerErr.Error(), "X-Devstack-Fault") {
		t.Fatalf("bad header: %v", d.TriggerErr)
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in      string
		want    Fault
		dir     Direction
		wantErr string
	}{
		{in: "latency=200ms", want: Fault{Kind: Latency, Duration: 200 * time.Millisecond}},
		{in: " abort=503 ", want: Fault{Kind: Abort, Status: 503}},
		{in: "grpc-abort=14", want: Fault{Kind: AbortGRPC, Status: 14}},
		{in: "reset", want: Fault{Kind: Reset}},
		{in: "hang", want: Fault{Kind: Hang}},
		{in: "hang=2s", want: Fault{Kind: Hang, Duration: 2 * time.Second}},
		{in: "bandwidth=1024", want: Fault{Kind: Bandwidth, Rate: 1024}},
		{in: "slow-body=100ms", want: Fault{Kind: SlowBody, Duration: 100 * time.Millisecond}},
		{in: "latency=50ms;response", want: Fault{Kind: Latency, Duration: 50 * time.Millisecond}, dir: Response},
		{in: "latency", wantErr: "needs a duration"},
		{in: "abort=999", wantErr: "not an HTTP status"},
		{in: "grpc-abort=0", wantErr: "1..16"},
		{in: "explode", wantErr: `fault kind "explode" is not known`},
		{in: "reset=1", wantErr: "needs no value"},
		{in: "latency=1s;sideways", wantErr: "direction"},
	}
	for _, tt := range tests {
		f, dir, err := ParseHeader(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || f != tt.want || dir != tt.dir {
			t.Errorf("%q: %+v %v %v", tt.in, f, dir, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		rule Rule
		want string
	}{
		{Rule{Fault: Fault{Kind: Reset}}, "no target service"},
		{Rule{Service: "a"}, "no fault kind"},
		{Rule{Service: "a", Probability: 1.5, Fault: Fault{Kind: Reset}}, "outside 0..1"},
		{Rule{Service: "a", Fault: Fault{Kind: Latency}}, "latency needs a duration"},
		{Rule{Service: "a", Fault: Fault{Kind: Abort, Status: 42}}, "not an HTTP status"},
		{Rule{Service: "a", Fault: Fault{Kind: Bandwidth}}, "needs a rate"},
		{Rule{Service: "a", Fault: Fault{Kind: SlowBody}}, "pause between chunks"},
		{Rule{Service: "a", Route: "charge", Fault: Fault{Kind: Reset}}, "starts with /"},
		{Rule{Service: "a", Header: &HeaderMatch{Name: "x", Regex: "("}, Fault: Fault{Kind: Reset}}, `header "x" regex`},
		{Rule{Service: "a", Header: &HeaderMatch{Name: "x", Regex: "a", Value: "b"}, Fault: Fault{Kind: Reset}}, "not both"},
		{Rule{Service: "a", Fault: Fault{Kind: LimitData}}, "byte count"},
		{Rule{Service: "a", Fault: Fault{Kind: SlowClose}}, "needs the delay"},
		{Rule{Service: "a", Direction: Response, Fault: Fault{Kind: Bandwidth, Rate: 1}}, "has no direction"},
	}
	for _, tt := range tests {
		err := tt.rule.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.rule, err, tt.want)
		}
	}
	if _, err := Compile([]Rule{{ID: "x", Service: "a", Fault: Fault{Kind: Reset}}, {ID: "x", Service: "b", Fault: Fault{Kind: Reset}}}, Options{}); err == nil || !strings.Contains(err.Error(), `"x" is used twice`) {
		t.Errorf("duplicate id: %v", err)
	}
}

func TestIDsAndExpiry(t *testing.T) {
	soon, later := time.Now().Add(time.Minute), time.Now().Add(time.Hour)
	s := mustCompile(t, []Rule{
		{Service: "a", Fault: Fault{Kind: Reset}, Expires: later},
		{ID: "f1", Service: "b", Fault: Fault{Kind: Reset}},
		{Service: "c", Fault: Fault{Kind: Reset}, Expires: soon},
	}, Options{})
	var ids []string
	for _, r := range s.Rules() {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"f2", "f1", "f3"}) {
		t.Errorf("ids %v", ids)
	}
	if !s.NextExpiry().Equal(soon) {
		t.Errorf("next expiry %v, want %v", s.NextExpiry(), soon)
	}
}

func TestGlob(t *testing.T) {
	for _, tt := range []struct {
		p, s string
		want bool
	}{
		{"/charge*", "/charge", true}, {"/charge*", "/charges/1", true}, {"/charge*", "/refund", false},
		{"*", "", true}, {"/a*b*c", "/aXbYc", true}, {"/a*b*c", "/aXbY", false}, {"/a?c", "/abc", true},
		{"/a?c", "/ac", false}, {"*/42", "/charge/42", true}, {"/x", "/x/", false},
	} {
		if got := match(tt.p, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

func TestString(t *testing.T) {
	r := Rule{Service: "payments", Caller: "orders", Route: "/charge*", Probability: 0.2, First: 5, Direction: Response,
		Header: &HeaderMatch{Name: "x-tenant", Regex: "^a"},
		Fault:  Fault{Kind: Latency, Duration: 200 * time.Millisecond, Jitter: 20 * time.Millisecond, Dist: Normal}}
	want := "latency 200ms±20ms normal on response caller=orders route=/charge* header x-tenant~/^a/ p=0.2 first 5"
	if got := r.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestRuleJSON(t *testing.T) {
	in := Rule{ID: "f1", Service: "payments", Direction: Response, Header: &HeaderMatch{Name: "x"},
		Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Fault: Fault{Kind: AbortGRPC, Status: 14, Dist: Normal}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"kind":"grpc-abort"`) || !strings.Contains(string(b), `"direction":"response"`) {
		t.Errorf("json %s", b)
	}
	var out Rule
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Fault != in.Fault || out.Direction != in.Direction || !out.Expires.Equal(in.Expires) || *out.Header != *in.Header {
		t.Errorf("round trip %+v", out)
	}
	if err := json.Unmarshal([]byte(`{"service":"a","fault":{"kind":"boom"}}`), &out); err == nil || !strings.Contains(err.Error(), `"boom" is not known`) {
		t.Errorf("bad kind: %v", err)
	}
}
