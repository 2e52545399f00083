// Package load drives concurrent checkouts through a shop-shaped chain of
// real HTTP services behind the tracing proxy, and checks every inferred
// link the proxy made against the truth the services themselves know.
//
//	client ─► gateway ─► orders ─┬─► inventory
//	                             └─► payments ─► fraud
//
// gateway and payments propagate the trace context; orders drops it, as
// the example shop's orders does, so its calls are linked by inference.
// Each checkout has its own trace id, chosen by the client, and its id
// (cid) travels in every URL, which the proxy does not read: a leaf
// service that receives the trace id of another checkout than its cid's
// was linked into the wrong trace. A checkout's kind mixes the shapes:
// inventory alone, inventory then payments, both in parallel, payments
// alone; and a third of the checkouts each, orders forwards the
// X-Request-ID or the baggage it got (evidence a service may keep while
// dropping the trace context).
package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/devstack/devstack/proxy"
	"github.com/devstack/devstack/trace"
)

// Result counts the hops of a run.
type Result struct {
	Checkouts int // completed
	// Inferred are orders' calls (linked by inference); Wrong those put in
	// another checkout's trace; Ambiguous those shown as a guess among
	// several requests; WrongCertain those wrong and shown as certain: the
	// number that must be 0.
	Inferred, Wrong, Ambiguous, WrongCertain int
	// Evidence are the inferred hops of checkouts whose orders forwarded
	// the request id or the baggage, and EvidenceCertain those of them
	// shown as certain.
	Evidence, EvidenceCertain int
	// Propagated are payments' calls to fraud (context propagated), and
	// PropagatedWrong those in the wrong trace (must be 0).
	Propagated, PropagatedWrong int
	// Untraced are leaf requests the proxy passed on without stamping
	// them (not traced at all, so in none of the counts above).
	Untraced int
}

func (r Result) String() string {
	return fmt.Sprintf("checkouts %d · inferred hops %d: wrong %d, shown as guessed %d, wrong but shown as certain %d · with evidence (request id, baggage) %d, shown certain %d · propagated hops %d, wrong %d · untraced %d",
		r.Checkouts, r.Inferred, r.Wrong, r.Ambiguous, r.WrongCertain, r.Evidence, r.EvidenceCertain, r.Propagated, r.PropagatedWrong, r.Untraced)
}

// Options size a run.
type Options struct {
	Concurrency int // checkouts in flight at once (50)
	Checkouts   int // in all (200)
	Seed        uint64
}

// Run starts the services and the proxy on free loopback ports, runs the
// checkouts, stops everything and counts.
func Run(ctx context.Context, o Options) (Result, error) {
	o.Concurrency = max(o.Concurrency, 1)
	o.Checkouts = max(o.Checkouts, 1)
	rec := &recorder{spans: map[trace.SpanID]*trace.Span{}}
	who := &callers{ports: map[uint16]string{}}
	px := proxy.New(proxy.Options{Recorder: rec, Callers: who})
	defer px.Close()

	w := &world{who: who, truth: map[trace.SpanID]seen{}}
	names := []string{"gateway", "orders", "inventory", "payments", "fraud"}
	listen := map[string]string{}
	var routes []proxy.Route
	for _, name := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Result{}, err
		}
		srv := &http.Server{Handler: w.handler(name)}
		go srv.Serve(l)
		defer srv.Close()
		front, err := freeAddr()
		if err != nil {
			return Result{}, err
		}
		listen[name] = front
		routes = append(routes, proxy.Route{Service: name, Listen: front, Upstream: l.Addr().String()})
	}
	w.addr = listen
	if err := px.SetRoutes(routes); err != nil {
		return Result{}, err
	}
	for _, name := range names {
		c := who.client(name)
		w.clients.Store(name, c)
		defer c.CloseIdleConnections()
	}

	// The checkouts: each with a trace id of its own.
	ids := make([]trace.TraceID, o.Checkouts)
	r := rand.New(rand.NewPCG(o.Seed, 16))
	for i := range ids {
		ids[i] = trace.NewTraceID(r)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}}
	defer client.CloseIdleConnections()
	next := make(chan int)
	errs := make(chan error, o.Concurrency)
	var wg sync.WaitGroup
	done := 0
	var mu sync.Mutex
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cid := range next {
				if err := checkout(ctx, client, listen["gateway"], cid, ids[cid]); err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				mu.Lock()
				done++
				mu.Unlock()
			}
		}()
	}
	for cid := range o.Checkouts {
		select {
		case next <- cid:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return Result{}, err
	default:
	}

	// Count: every hop a leaf saw, against the checkout it was for.
	w.mu.Lock()
	defer w.mu.Unlock()
	res := Result{Checkouts: done, Untraced: w.untraced}
	for spanID, s := range w.truth {
		right := s.traceID == ids[s.cid]
		if s.from == "payments" {
			res.Propagated++
			if s.traceID != s.expect {
				res.PropagatedWrong++
			}
			continue
		}
		res.Inferred++
		certain := !rec.ambiguous(spanID)
		if !right {
			res.Wrong++
			if certain {
				res.WrongCertain++
			}
		}
		if !certain {
			res.Ambiguous++
		}
		if s.evidence {
			res.Evidence++
			if certain {
				res.EvidenceCertain++
			}
		}
	}
	return res, nil
}

// checkout sends one checkout, of the kind its cid says, with its own
// trace id.
func checkout(ctx context.Context, c *http.Client, gateway string, cid int, id trace.TraceID) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/checkout?cid=%d", gateway, cid), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Traceparent", "00-"+id.String()+"-00f067aa0ba902b7-01")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("checkout %d: %s", cid, resp.Status)
	}
	return nil
}

// seen is what a leaf service knew of one request it served.
type seen struct {
	cid      int
	traceID  trace.TraceID // from the traceparent the proxy stamped
	from     string        // the calling service, as the URL says
	evidence bool          // orders forwarded the request id
	expect   trace.TraceID // for fraud: the trace its caller was in
}

type world struct {
	who     *callers
	addr    map[string]string // service → its proxied address
	clients sync.Map          // service → *http.Client that names it
	mu      sync.Mutex
	truth   map[trace.SpanID]seen // by the hop's span id (the parent id the leaf got)
	// untraced counts leaf requests that came without a trace context.
	untraced int
}

func (w *world) call(ctx context.Context, from, to, path string, h http.Header) error {
	c, _ := w.clients.Load(from)
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+w.addr[to]+path, nil)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.(*http.Client).Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s → %s: %s", from, to, resp.Status)
	}
	return nil
}

// work stands for a service's own processing: a short, random pause.
func work(max time.Duration) {
	time.Sleep(time.Duration(rand.Int64N(int64(max))))
}

func (w *world) handler(name string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		cid, err := strconv.Atoi(r.URL.Query().Get("cid"))
		if err != nil {
			http.Error(rw, "no cid", http.StatusBadRequest)
			return
		}
		q := "?cid=" + strconv.Itoa(cid)
		ctx := r.Context()
		fail := func(err error) { http.Error(rw, err.Error(), http.StatusBadGateway) }
		switch name {
		case "gateway": // propagates: passes the context it got on
			if err := w.call(ctx, name, "orders", "/orders"+q, http.Header{"Traceparent": r.Header["Traceparent"]}); err != nil {
				fail(err)
				return
			}
		case "orders": // drops the trace context
			// A third of the checkouts, orders forwards the request id
			// it got; a third, the baggage; the rest, nothing. Evidence
			// only when there is something to forward: a request the
			// proxy did not stamp (not traced) has neither.
			var h http.Header
			keep := [...]string{"X-Request-Id", "Baggage", ""}[cid%3]
			evidence := keep != "" && r.Header.Get(keep) != ""
			if evidence {
				h = http.Header{keep: r.Header[keep]}
			}
			leaf := q + "&from=orders&evidence=" + strconv.FormatBool(evidence)
			work(2 * time.Millisecond)
			var err error
			switch cid % 4 {
			case 0:
				err = w.call(ctx, name, "inventory", "/reserve"+leaf, h)
			case 1:
				if err = w.call(ctx, name, "inventory", "/reserve"+leaf, h); err == nil {
					work(2 * time.Millisecond)
					err = w.call(ctx, name, "payments", "/charge"+leaf, h)
				}
			case 2:
				errc := make(chan error, 1)
				go func() { errc <- w.call(ctx, name, "inventory", "/reserve"+leaf, h) }()
				err = w.call(ctx, name, "payments", "/charge"+leaf, h)
				if e := <-errc; err == nil {
					err = e
				}
			case 3:
				err = w.call(ctx, name, "payments", "/charge"+leaf, h)
			}
			if err != nil {
				fail(err)
				return
			}
		case "payments": // a leaf of orders' that propagates to fraud
			w.record(r, cid)
			// fraud must be in the trace payments is in, right or wrong.
			expect := ""
			if tp := r.Header.Get("Traceparent"); len(tp) == 55 {
				expect = tp[3:35]
			}
			if err := w.call(ctx, name, "fraud", "/score"+q+"&from=payments&expect="+expect, http.Header{"Traceparent": r.Header["Traceparent"]}); err != nil {
				fail(err)
				return
			}
		default: // inventory, fraud
			w.record(r, cid)
			work(3 * time.Millisecond)
		}
		io.WriteString(rw, "ok")
	})
}

// record notes the trace a leaf's request came in, for its cid.
func (w *world) record(r *http.Request, cid int) {
	tp := r.Header.Get("Traceparent")
	var tid trace.TraceID
	var sid trace.SpanID
	ok := len(tp) == 55
	if ok {
		var ok1, ok2 bool
		tid, ok1 = trace.ParseTraceID(tp[3:35])
		sid, ok2 = trace.ParseSpanID(tp[36:52])
		ok = ok1 && ok2
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !ok {
		w.untraced++ // the proxy did not stamp it: not traced at all
		return
	}
	expect, _ := trace.ParseTraceID(r.URL.Query().Get("expect"))
	w.truth[sid] = seen{cid: cid, traceID: tid, from: r.URL.Query().Get("from"), evidence: r.URL.Query().Get("evidence") == "true", expect: expect}
}

// recorder keeps every span the proxy records (never handing them back
// to the pool).
type recorder struct {
	mu    sync.Mutex
	spans map[trace.SpanID]*trace.Span
}

func (rc *recorder) Record(s *trace.Span) {
	rc.mu.Lock()
	rc.spans[s.SpanID] = s
	rc.mu.Unlock()
}

// ambiguous reports whether the proxy showed the hop's link as a guess.
// It reads the span as `devstack trace --format json` does: a devstack
// that records no link evidence shows every link as certain.
func (rc *recorder) ambiguous(id trace.SpanID) bool {
	rc.mu.Lock()
	s := rc.spans[id]
	rc.mu.Unlock()
	if s == nil {
		return false
	}
	b, err := json.Marshal(s)
	if err != nil {
		return false
	}
	var v struct {
		Inferred   bool `json:"inferred"`
		Candidates int  `json:"candidates"`
	}
	json.Unmarshal(b, &v)
	return v.Inferred && v.Candidates > 1
}

// callers names a connection's service by its client port, as the
// supervisor does by the owning process.
type callers struct {
	mu    sync.Mutex
	ports map[uint16]string
}

func (c *callers) Caller(remote, _ netip.AddrPort) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ports[remote.Port()]
}

// client returns an HTTP client whose connections c names as svc's.
func (c *callers) client(svc string) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, n, a)
		if err == nil {
			c.mu.Lock()
			c.ports[conn.LocalAddr().(*net.TCPAddr).AddrPort().Port()] = svc
			c.mu.Unlock()
		}
		return conn, err
	}}}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
