package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
)

// Go's http.Transport keeps spare connections: a dial that a request no
// longer needs (another connection freed first) goes to the idle pool,
// unused, until a later request takes it. However long it idles before
// its first request, that request is an HTTP hop like any other. The
// idles run side by side, each on a route of its own, so the test takes
// as long as the longest.
func TestPooledConnectionsIdleAndAreStillTraced(t *testing.T) {
	idles := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	if testing.Short() {
		idles = idles[:2]
	}
	rec := newMemRecorder()
	s := New(Options{Recorder: rec}) // the default DetectTimeout, 300ms
	// The upstream holds /hold until released, and /pair until both
	// requests of a pair are in (so that they take two connections).
	var mu sync.Mutex
	holds := map[string]chan struct{}{}
	pairs := map[string]chan struct{}{}
	arrived := map[string]int{}
	aIn := map[string]chan struct{}{} // closed when A is in
	ch := func(m map[string]chan struct{}, k string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if m[k] == nil {
			m[k] = make(chan struct{})
		}
		return m[k]
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := r.URL.Query().Get("g")
		switch r.URL.Path {
		case "/hold":
			close(ch(aIn, g))
			<-ch(holds, g)
		case "/pair":
			mu.Lock()
			arrived[g]++
			if arrived[g] == 2 {
				close(pairs[g])
			}
			mu.Unlock()
			select {
			case <-ch(pairs, g):
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer up.Close()
	var routes []Route
	for _, d := range idles {
		routes = append(routes, Route{Service: "idle" + d.String(), Upstream: hostOf(up.URL)})
	}
	addrs := front(t, s, routes...)

	var wg sync.WaitGroup
	dials := make([]atomic.Int32, len(idles))
	for i, idle := range idles {
		g := idle.String()
		for _, m := range []map[string]chan struct{}{holds, pairs, aIn} {
			ch(m, g)
		}
		wg.Go(func() {
			bDone := make(chan struct{})
			tr := &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, n, a)
				if dials[i].Add(1) == 2 {
					// The spare: connected now (the proxy has it), handed
					// to the pool only once B was served without it.
					<-bDone
				}
				return c, err
			}}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			get := func(path string) error {
				resp, err := cl.Get("http://" + addrs[i] + path + "?g=" + g)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(io.Discard, resp.Body)
				return err
			}
			aDone := make(chan error, 1)
			go func() { aDone <- get("/hold") }()
			<-ch(aIn, g) // A is in: its connection is busy
			bErr := make(chan error, 1)
			go func() { bErr <- get("/b") }() // dials the spare, then takes A's connection
			close(ch(holds, g))
			if err := <-aDone; err != nil {
				t.Errorf("%s: A: %v", g, err)
			}
			if err := <-bErr; err != nil {
				t.Errorf("%s: B: %v", g, err)
			}
			close(bDone)
			time.Sleep(idle) // the scenario: the spare idles, unused
			var pair sync.WaitGroup
			for range 2 {
				pair.Go(func() {
					if err := get("/pair"); err != nil {
						t.Errorf("%s: pair: %v", g, err)
					}
				})
			}
			pair.Wait()
		})
	}
	wg.Wait()
	byService := map[string][]string{}
	for range 4 * len(idles) {
		sp := rec.next(t)
		byService[sp.Callee] = append(byService[sp.Callee], sp.Protocol+" "+sp.Route)
	}
	lost := 0
	for i, idle := range idles {
		got := byService[routes[i].Service]
		pairsTraced := strings.Count(strings.Join(got, ","), "http /pair")
		lost += 2 - pairsTraced
		if pairsTraced != 2 {
			t.Errorf("after %v idle: hops %q; want both /pair requests traced as http", idle, got)
		}
		if n := dials[i].Load(); n != 2 {
			t.Errorf("after %v idle: %d connections dialed; want 2 (the pair must use the spare)", idle, n)
		}
	}
	t.Logf("hops lost to idle pooled connections: %d of %d", lost, 2*len(idles))
}

// A silent first connection to a port that served nothing yet: the
// service is dialed to see who speaks first, stays silent, and when the
// client speaks HTTP, that connection serves it (the service sees one).
func TestASilentClientOnANewPortIsHTTPWhenItSpeaks(t *testing.T) {
	rec := newMemRecorder()
	s := New(Options{Recorder: rec, DetectTimeout: 50 * time.Millisecond})
	var conns atomic.Int32
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader, _ int) {
		conns.Add(1)
		for {
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	addr := front(t, s, Route{Service: "svc", Upstream: up})[0]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Silent well past DetectTimeout: the proxy dials the service and
	// waits for whoever speaks first.
	time.Sleep(300 * time.Millisecond)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sp := rec.next(t); sp.Protocol != "http" || sp.Route != "/late" || sp.Status != 200 {
		t.Errorf("span %+v; want the late request traced", sp)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the service saw %d connections; want 1 (the one dialed to listen is used)", n)
	}
}

// A server-first protocol on an auto port: the service greets, the
// client waits for it. The first connection is decided by the service
// speaking first; later ones dial at once, without waiting for
// DetectTimeout, since the port's service is known to greet.
func TestServerFirstPortIsRelayedAndLearned(t *testing.T) {
	rec := newMemRecorder()
	// The timings below are far apart so that a loaded machine cannot
	// blur them: the proxy's wait starts at its accept, a moment before the
	// client's Dial returns, and a learned port answers in a round trip.
	const detect = time.Second
	s := New(Options{Recorder: rec, DetectTimeout: detect})
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader, _ int) {
		io.WriteString(c, "5.7.0-mysql greeting\n")
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(c, "ok "+line)
	})
	addr := front(t, s, Route{Service: "mysql", Upstream: up})[0]
	greet := func() time.Duration {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		br := bufio.NewReader(c)
		if g, err := br.ReadString('\n'); g != "5.7.0-mysql greeting\n" {
			t.Fatalf("greeting %q %v", g, err)
		}
		took := time.Since(start)
		io.WriteString(c, "login\n")
		if got, err := br.ReadString('\n'); got != "ok login\n" {
			t.Fatalf("answer %q %v", got, err)
		}
		return took
	}
	if took := greet(); took < detect*8/10 {
		t.Errorf("first greeting after %v: the client was not waited for", took)
	}
	if sp := rec.next(t); sp.Protocol != "tcp" || sp.Callee != "mysql" || sp.Error != "" {
		t.Errorf("span %+v", sp)
	}
	if took := greet(); took >= detect/2 {
		t.Errorf("second greeting after %v: the port was not learned as server-first", took)
	}
	rec.next(t)
}

// probeCallers is a CallerResolver that knows a probe: while the probe
// "lives" (until its answer is written), its connection is the probe's.
type probeCallers struct {
	probing atomic.Bool
	alive   atomic.Bool
	lookups atomic.Int32
}

func (p *probeCallers) Caller(_, _ netip.AddrPort) string {
	p.lookups.Add(1)
	if p.alive.Load() {
		return trace.ProbeCaller("svc")
	}
	return ""
}

func (p *probeCallers) Probing() bool { return p.probing.Load() }

// While a healthcheck probe runs, a connection's caller is looked up as
// its request arrives: a probe exits as soon as it has its answer, and
// the lookup after the hop would find nobody.
func TestAProbesHopIsNamedWhileTheProbeLives(t *testing.T) {
	pc := &probeCallers{}
	rec := newMemRecorder()
	s := New(Options{Recorder: rec, Callers: pc})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pc.alive.Store(false) // the probe has its answer: it is gone
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	addr := front(t, s, Route{Service: "svc", Upstream: hostOf(up.URL)})[0]
	for _, probing := range []bool{false, true} {
		pc.probing.Store(probing)
		pc.alive.Store(true)
		if resp, _ := dialClient(t, addr).do(get("/healthz"), "GET"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		want := ""
		if probing {
			want = trace.ProbeCaller("svc")
		}
		if sp := rec.next(t); sp.Caller != want || trace.IsProbe(sp.Caller) != probing {
			t.Errorf("probing %v: the hop's caller is %q; want %q", probing, sp.Caller, want)
		}
	}
}
