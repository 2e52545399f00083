package service

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/devstack/devstack/examples/shop/internal/knob"
	"github.com/devstack/devstack/examples/shop/internal/tracectx"
)

// Service names, in call order.
const (
	Gateway   = "gateway"
	Orders    = "orders"
	Inventory = "inventory"
	Payments  = "payments"
	Fraud     = "fraud"
)

// Names returns the service names in call order.
func Names() []string { return []string{Gateway, Orders, Inventory, Payments, Fraud} }

// DefaultPort is the port a service listens on when PORT is unset.
func DefaultPort(name string) (int, bool) {
	p, ok := map[string]int{Gateway: 18080, Orders: 18082, Inventory: 18083, Payments: 18084, Fraud: 18085}[name]
	return p, ok
}

// DefaultURL is the base URL other services use to reach name when its
// *_URL variable is unset: http://localhost:<DefaultPort>.
func DefaultURL(name string) string {
	p, _ := DefaultPort(name)
	return fmt.Sprintf("http://localhost:%d", p)
}

// Config wires one service.
type Config struct {
	// Name picks the service: gateway, orders, inventory, payments or fraud.
	Name string
	// OrdersURL, InventoryURL, PaymentsURL and FraudURL are the base URLs of
	// the upstreams (no trailing path). Each defaults to DefaultURL; only the
	// ones the service calls matter.
	OrdersURL, InventoryURL, PaymentsURL, FraudURL string
	// Client makes upstream calls. Default: a client with a 30s timeout.
	Client *http.Client
	// Logger gets one line per request (method, path, status, duration and
	// trace, span and parent ids). Add the service name with With if wanted.
	// Default: discard.
	Logger *slog.Logger
}

type server struct {
	name string
	// propagate says whether outbound calls carry traceparent/tracestate.
	propagate bool
	upstreams map[string]string // service name → base URL
	client    *http.Client
	log       *slog.Logger
	orders    *orderStore // orders only
}

// New returns the handler of the service cfg.Name.
func New(cfg Config) (http.Handler, error) {
	s := &server{
		name: cfg.Name,
		// orders deliberately drops trace context on its outbound calls: this
		// example exists to show devstack's view of broken propagation.
		propagate: cfg.Name != Orders,
		upstreams: map[string]string{},
		client:    cfg.Client,
		log:       cfg.Logger,
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 30 * time.Second}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for name, u := range map[string]string{Orders: cfg.OrdersURL, Inventory: cfg.InventoryURL, Payments: cfg.PaymentsURL, Fraud: cfg.FraudURL} {
		if u == "" {
			u = DefaultURL(name)
		}
		if pu, err := url.Parse(u); err != nil || pu.Scheme == "" || pu.Host == "" {
			return nil, fmt.Errorf("%s upstream URL %q: want an absolute URL like %s", name, u, DefaultURL(name))
		}
		s.upstreams[name] = strings.TrimSuffix(u, "/")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	switch cfg.Name {
	case Gateway:
		mux.HandleFunc("GET /checkout", s.knobs(s.gatewayCheckout))
		mux.HandleFunc("GET /orders/{id}", s.knobs(s.gatewayOrder))
	case Orders:
		s.orders = newOrderStore(1000)
		mux.HandleFunc("POST /orders", s.knobs(s.createOrder))
		mux.HandleFunc("GET /orders/{id}", s.knobs(s.getOrder))
	case Inventory:
		mux.HandleFunc("POST /reserve", s.knobs(s.reserve))
	case Payments:
		mux.HandleFunc("POST /charge", s.knobs(s.charge))
	case Fraud:
		mux.HandleFunc("GET /score", s.knobs(s.score))
	default:
		return nil, fmt.Errorf("unknown service %q: want one of %s", cfg.Name, strings.Join(Names(), ", "))
	}
	return s.observe(mux), nil
}

// observe starts the request's span and logs one line when it is answered.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		span := tracectx.Extract(r.Header)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(tracectx.NewContext(r.Context(), span)))
		s.log.Info("request",
			"method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration", time.Since(start).Round(time.Microsecond),
			"trace_id", span.TraceID, "span_id", span.SpanID, "parent_id", span.ParentID)
	})
}

// knobs applies the fault knobs that name this service before next runs.
func (s *server) knobs(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, err := knob.Parse(r.URL.Query())
		if err != nil {
			s.writeFailure(w, http.StatusBadRequest, &Failure{Hop: s.name, Status: http.StatusBadRequest, Message: err.Error()})
			return
		}
		if d := k.Delay(s.name); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				s.writeFailure(w, http.StatusServiceUnavailable, &Failure{Hop: s.name, Message: "request canceled during slow=" + s.name})
				return
			}
		}
		if code := k.Fail(s.name); code != 0 {
			msg := fmt.Sprintf("injected failure (fail=%s:%d)", s.name, code)
			s.writeFailure(w, code, &Failure{Hop: s.name, Status: code, Message: msg})
			return
		}
		next(w, r)
	}
}

// meta starts every JSON answer: who answered, in which trace.
type meta struct {
	Service string `json:"service"`
	TraceID string `json:"trace_id"`
}

func (s *server) meta(r *http.Request) meta {
	span, _ := tracectx.FromContext(r.Context())
	return meta{Service: s.name, TraceID: span.TraceID}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client is gone if this fails; nothing left to tell it
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
