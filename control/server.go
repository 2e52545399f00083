package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/logstore"
	"github.com/devstack/devstack/trace"
)

// Stack is what the API drives: the supervisor's runner.
type Stack interface {
	Status() []runner.ServiceStatus
	Up(ctx context.Context, names []string) error
	Start(ctx context.Context, names []string) error
	Stop(ctx context.Context, names []string, o runner.StopOptions) error
	Restart(ctx context.Context, names []string, o runner.StopOptions) error
}

// Server serves the control API.
type Server struct {
	Stack Stack
	// LogDir is the logstore directory; Subscribe follows new lines.
	LogDir    string
	Subscribe func(services []string) (<-chan logstore.Line, func())
	// Events subscribes to progress messages.
	Events func() (<-chan runner.Event, func())
	// Token guards mutating calls.
	Token string
	// Wait blocks until the initial up has finished and returns its error.
	Wait func(ctx context.Context) error
	// Down stops everything, as o says (and removes named volumes when
	// volumes is set); the supervisor exits once it returns.
	Down func(ctx context.Context, volumes bool, o runner.StopOptions) error
	// DownDone is called once a down's (or a handover's) result has been
	// sent to the client, so that the supervisor exits only after answering.
	DownDone func()
	// Handover makes way for a new supervisor of the same project: the
	// supervisor stops its processes, as o says, and exits, leaving its
	// containers for the next one to adopt or replace.
	Handover func(ctx context.Context, o runner.StopOptions) error
	// Traces answers trace queries.
	Traces trace.Reader
	// Plugins is the plugin host; nil when the supervisor runs none.
	Plugins Plugins
	// Env says how to run a service outside devstack, in its place
	// (`devstack env`).
	Env func(service string) (runner.HostRun, error)
}

// Message is one NDJSON line of a streamed operation.
type Message struct {
	Service string `json:"service,omitempty"`
	Msg     string `json:"msg,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Error   string `json:"error,omitempty"`
}

// LogLine is one log line on the wire.
type LogLine struct {
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	Stream  string    `json:"stream"`
	Text    string    `json:"text"`
}

// request is the body of a mutating call. Each call reads what concerns
// it: services (up, start, stop, restart), volumes (down), grace (stop,
// restart, down, handover).
type request struct {
	Services []string `json:"services,omitempty"`
	Volumes  bool     `json:"volumes,omitempty"`
	// Grace replaces, for this call's stops, each service's
	// stop_grace_period (runner.StopOptions.Grace), as a Go duration
	// ("0s", "5s"). Empty: each service's own.
	Grace string `json:"grace,omitempty"`
}

// stopOptions reads the request's stop options.
func (req request) stopOptions() (runner.StopOptions, error) {
	if req.Grace == "" {
		return runner.StopOptions{}, nil
	}
	d, err := time.ParseDuration(req.Grace)
	if err != nil || d < 0 {
		return runner.StopOptions{}, &apiError{http.StatusBadRequest, fmt.Sprintf("grace %q: want a duration of 0s or more, e.g. 5s", req.Grace)}
	}
	return runner.StopOptions{Grace: &d}, nil
}

// apiError is an error with an HTTP status, rendered as JSON by writeError.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.status
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Message{Done: true, Error: err.Error()})
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ps", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Stack.Status())
	})
	mux.HandleFunc("GET /v1/wait", func(w http.ResponseWriter, r *http.Request) {
		s.stream(w, r, s.Wait)
	})
	mux.HandleFunc("GET /v1/logs", s.logs)
	mux.HandleFunc("GET /v1/env/{service}", func(w http.ResponseWriter, r *http.Request) {
		hr, err := s.Env(r.PathValue("service"))
		if err != nil {
			writeError(w, &apiError{http.StatusNotFound, err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(hr)
	})
	mux.HandleFunc("GET /v1/traces", s.traces)
	mux.HandleFunc("GET /v1/traces/{id}", s.trace)
	s.pluginRoutes(mux)
	s.watchRoutes(mux)
	// Up and start stop nothing: a grace means nothing to them.
	noStop := func(op func(context.Context, []string) error) func(context.Context, []string, runner.StopOptions) error {
		return func(ctx context.Context, names []string, _ runner.StopOptions) error { return op(ctx, names) }
	}
	for name, op := range map[string]func(context.Context, []string, runner.StopOptions) error{
		"up": noStop(s.Stack.Up), "start": noStop(s.Stack.Start), "stop": s.Stack.Stop, "restart": s.Stack.Restart,
	} {
		mux.Handle("POST /v1/"+name, s.auth(func(w http.ResponseWriter, r *http.Request) {
			var req request
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeError(w, &apiError{http.StatusBadRequest, fmt.Sprintf("decoding request body: %v", err)})
				return
			}
			o, err := req.stopOptions()
			if err != nil {
				writeError(w, err)
				return
			}
			s.stream(w, r, func(ctx context.Context) error { return op(ctx, req.Services, o) })
		}))
	}
	mux.Handle("POST /v1/down", s.auth(func(w http.ResponseWriter, r *http.Request) {
		var req request
		_ = json.NewDecoder(r.Body).Decode(&req) // an empty body means no volumes, each service's grace
		o, err := req.stopOptions()
		if err != nil {
			writeError(w, err)
			return
		}
		// Down must finish even if the client goes away mid-way.
		s.stream(w, r, func(context.Context) error { return s.Down(context.WithoutCancel(r.Context()), req.Volumes, o) })
		if s.DownDone != nil {
			s.DownDone()
		}
	}))
	mux.Handle("POST /v1/handover", s.auth(func(w http.ResponseWriter, r *http.Request) {
		if s.Handover == nil {
			writeError(w, &apiError{http.StatusNotImplemented, "this supervisor cannot hand over"})
			return
		}
		var req request
		_ = json.NewDecoder(r.Body).Decode(&req)
		o, err := req.stopOptions()
		if err != nil {
			writeError(w, err)
			return
		}
		s.stream(w, r, func(context.Context) error { return s.Handover(context.WithoutCancel(r.Context()), o) })
		if s.DownDone != nil {
			s.DownDone()
		}
	}))
	return mux
}

// auth requires the bearer token on mutating calls.
func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
			writeError(w, &apiError{http.StatusUnauthorized, "missing or wrong token; the CLI reads it from the project's state directory"})
			return
		}
		h(w, r)
	})
}

// stream runs op, sending progress events as NDJSON while it runs and a
// final Message with its result.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, op func(context.Context) error) {
	events, cancel := s.Events()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	result := make(chan error, 1)
	go func() { result <- op(r.Context()) }()
	for {
		select {
		case ev := <-events:
			_ = enc.Encode(Message{Service: ev.Service, Msg: ev.Msg})
			flush()
		case err := <-result:
			m := Message{Done: true}
			if err != nil {
				m.Error = err.Error()
			}
			_ = enc.Encode(m)
			flush()
			return
		}
	}
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lq := logstore.Query{Services: q["service"]}
	if t := q.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			writeError(w, &apiError{http.StatusBadRequest, fmt.Sprintf("tail %q: want a number of lines", t)})
			return
		}
		lq.Tail = n
	}
	if since := q.Get("since"); since != "" {
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			writeError(w, &apiError{http.StatusBadRequest, fmt.Sprintf("since %q: want an RFC 3339 time", since)})
			return
		}
		lq.Since = t
	}
	follow := q.Get("follow") == "1"
	// Subscribe before reading, so no line falls between the two; lines
	// seen in both are dropped by time below.
	var live <-chan logstore.Line
	if follow {
		ch, cancel := s.Subscribe(lq.Services)
		defer cancel()
		live = ch
	}
	lines, err := logstore.Read(s.LogDir, lq)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	var last time.Time
	for _, l := range lines {
		_ = enc.Encode(wireLine(l))
		last = l.Time
	}
	if !follow {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case l, ok := <-live:
			if !ok {
				return
			}
			if !l.Time.After(last) {
				continue
			}
			_ = enc.Encode(wireLine(l))
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
}

func wireLine(l logstore.Line) LogLine {
	return LogLine{Time: l.Time, Service: l.Service, Stream: l.Stream.String(), Text: l.Text}
}

// ParseTraceQuery reads a trace.Query from URL parameters: service,
// status (404, 4xx or 500-504), errors=1, min_duration (a Go duration),
// since (RFC 3339), route, query (a part of a span's query), id_prefix
// (hex), probes=1 (devstack's own
// healthcheck traffic too), limit.
func ParseTraceQuery(v url.Values) (trace.Query, error) {
	q := trace.Query{Service: v.Get("service"), Route: v.Get("route"), QueryHas: v.Get("query"), Errors: v.Get("errors") == "1", Probes: v.Get("probes") == "1"}
	var err error
	if s := v.Get("status"); s != "" {
		if q.Status, err = trace.ParseStatusRange(s); err != nil {
			return q, err
		}
	}
	q.IDPrefix = strings.ToLower(v.Get("id_prefix"))
	if s := v.Get("min_duration"); s != "" {
		if q.MinDuration, err = time.ParseDuration(s); err != nil {
			return q, fmt.Errorf("min_duration %q: want a duration like 200ms", s)
		}
	}
	if s := v.Get("since"); s != "" {
		if q.Since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return q, fmt.Errorf("since %q: want an RFC 3339 time", s)
		}
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("limit %q: want a number", s)
		}
	}
	return q, nil
}

// EncodeTraceQuery is the inverse of ParseTraceQuery.
func EncodeTraceQuery(q trace.Query) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("service", q.Service)
	set("route", q.Route)
	set("query", q.QueryHas)
	if q.Errors {
		v.Set("errors", "1")
	}
	set("status", q.Status.String())
	set("id_prefix", q.IDPrefix)
	if q.Probes {
		v.Set("probes", "1")
	}
	if q.MinDuration != 0 {
		v.Set("min_duration", q.MinDuration.String())
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

func (s *Server) traces(w http.ResponseWriter, r *http.Request) {
	q, err := ParseTraceQuery(r.URL.Query())
	if err != nil {
		writeError(w, &apiError{http.StatusBadRequest, err.Error()})
		return
	}
	out := s.Traces.Traces(q)
	if out == nil {
		out = []trace.Summary{}
	}
	writeJSON(w, out)
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id, ok := trace.ParseTraceID(r.PathValue("id"))
	if !ok {
		writeError(w, &apiError{http.StatusBadRequest, fmt.Sprintf("trace id %q: want 32 hex digits", r.PathValue("id"))})
		return
	}
	spans := s.Traces.Trace(id)
	if spans == nil {
		writeError(w, &apiError{http.StatusNotFound, fmt.Sprintf("no trace %s; `devstack traces` lists the recorded ones", id)})
		return
	}
	writeJSON(w, spans)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
