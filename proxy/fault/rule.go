package fault

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Kind is what a fault does.
type Kind uint8

const (
	KindNone Kind = iota
	// Latency delays the request (or, on the response direction, the
	// response) by Duration, with Jitter drawn from Dist. On a TCP port it
	// delays the connection's first bytes each way.
	Latency
	// Abort answers with HTTP status Status and body Body instead of the
	// service (or, on the response direction, after the service answered).
	Abort
	// AbortGRPC answers a gRPC call with grpc-status Status and
	// grpc-message Body.
	AbortGRPC
	// Reset closes the client's connection with a TCP reset.
	Reset
	// Hang sends nothing and waits until the client gives up, or for
	// Duration when set, then closes the connection.
	Hang
	// Bandwidth limits the response (on TCP, both directions) to Rate
	// bytes per second.
	Bandwidth
	// SlowBody relays the response body in chunks of Chunk bytes, one
	// every Duration.
	SlowBody
	// Timeout stops relaying and closes the connection after Duration;
	// with Duration 0 the connection stays open and silent (Toxiproxy's
	// timeout; on HTTP, a hang that ends in a close).
	Timeout
	// PortDown refuses the connection: it is closed before anything is
	// relayed, as a port nobody listens on.
	PortDown
	// SlowClose delays closing the client's connection by Duration once
	// it would close (Toxiproxy's slow_close).
	SlowClose
	// LimitData closes the connection once Bytes bytes of the response
	// (on TCP, from the service) were relayed (Toxiproxy's limit_data).
	LimitData
	kindCount
)

var kindNames = [kindCount]string{"", "latency", "abort", "grpc-abort", "reset", "hang", "bandwidth", "slow-body", "timeout", "port-down", "slow-close", "limit-data"}

func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads a kind's name as String writes it.
func ParseKind(s string) (Kind, error) {
	for k := Latency; k < kindCount; k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return KindNone, fmt.Errorf("fault kind %q is not known; use one of %s", s, strings.Join(kindNames[1:], ", "))
}

func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	*k = v
	return err
}

// httpOnly reports whether the kind needs an HTTP exchange to act on.
func (k Kind) httpOnly() bool { return k == Abort || k == AbortGRPC || k == SlowBody || k == Hang }

// Dist is how a latency's jitter is drawn.
type Dist uint8

const (
	// Fixed is the latency exactly; a Jitter given with Fixed (as when
	// only --jitter is said) is drawn as Uniform.
	Fixed Dist = iota
	// Uniform draws from [Duration-Jitter, Duration+Jitter].
	Uniform
	// Normal draws from a normal distribution with mean Duration and
	// standard deviation Jitter, clamped at 0.
	Normal
)

var distNames = [...]string{"fixed", "uniform", "normal"}

func (d Dist) String() string {
	if int(d) < len(distNames) {
		return distNames[d]
	}
	return fmt.Sprintf("dist(%d)", uint8(d))
}

// ParseDist reads a distribution's name.
func ParseDist(s string) (Dist, error) {
	for i, n := range distNames {
		if n == s {
			return Dist(i), nil
		}
	}
	return Fixed, fmt.Errorf("jitter distribution %q is not known; use fixed, uniform or normal", s)
}

func (d Dist) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Dist) UnmarshalText(b []byte) error {
	v, err := ParseDist(string(b))
	*d = v
	return err
}

// Direction says when a fault applies: before the request reaches the
// service, or once the service answered (its work done, its answer lost or
// late).
type Direction uint8

const (
	Request Direction = iota
	Response
)

func (d Direction) String() string {
	if d == Response {
		return "response"
	}
	return "request"
}

// ParseDirection reads "request" or "response".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "", "request":
		return Request, nil
	case "response":
		return Response, nil
	}
	return Request, fmt.Errorf("direction %q is not known; use request or response", s)
}

func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	*d = v
	return err
}

// Fault is what a matching rule does.
type Fault struct {
	Kind Kind `json:"kind"`
	// Duration is the latency's mean, a hang's or a timeout's length (0:
	// until the client gives up, or forever), or a slow body's pause
	// between chunks.
	Duration time.Duration `json:"duration,omitempty"`
	// Jitter spreads a latency (see Dist).
	Jitter time.Duration `json:"jitter,omitempty"`
	Dist   Dist          `json:"dist,omitempty"`
	// Status is an abort's HTTP status or a gRPC abort's grpc-status code.
	Status int `json:"status,omitempty"`
	// Body is an abort's response body or a gRPC abort's grpc-message.
	Body string `json:"body,omitempty"`
	// Rate is a bandwidth limit in bytes per second.
	Rate int64 `json:"rate,omitempty"`
	// Chunk is a slow body's chunk size in bytes (default 1).
	Chunk int `json:"chunk,omitempty"`
	// Bytes is LimitData's byte count.
	Bytes int64 `json:"bytes,omitempty"`
}

// HeaderMatch matches a request header: by exact Value, by Regex, or, with
// neither, by the header being present.
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Regex string `json:"regex,omitempty"`
}

// Rule is one declared fault: which requests it matches and what it does.
type Rule struct {
	// ID names the rule for fault ls and fault rm; Compile fills in one
	// when it is empty.
	ID string `json:"id,omitempty"`
	// Service is the target: the callee whose hops the rule matches.
	Service string `json:"service"`
	// Caller narrows the rule to hops from that service ("" any; the
	// pseudo-service "client" is a caller outside the stack).
	Caller string `json:"caller,omitempty"`
	// Route is a glob over the request path: * matches any run of
	// characters (slashes too), ? one character.
	Route  string       `json:"route,omitempty"`
	Method string       `json:"method,omitempty"`
	Header *HeaderMatch `json:"header,omitempty"`
	// Direction is when the fault applies (request by default).
	Direction Direction `json:"direction,omitempty"`
	// Probability is the chance, drawn per request, that a matching
	// request gets the fault; 0 means 1.
	Probability float64 `json:"probability,omitempty"`
	// First limits the rule to the first N requests it matches (0: all).
	// Matches are counted before the probability is drawn.
	First int `json:"first,omitempty"`
	// Expires ends the rule; zero never.
	Expires time.Time `json:"expires,omitzero"`
	Fault   Fault     `json:"fault"`
}

// httpMatchers reports whether the rule looks inside an HTTP request.
func (r *Rule) httpMatchers() bool { return r.Route != "" || r.Method != "" || r.Header != nil }

// Validate checks a rule, naming the rule's service and the field at fault.
func (r *Rule) Validate() error {
	where := fmt.Sprintf("fault rule for service %q", r.Service)
	if r.ID != "" {
		where = fmt.Sprintf("fault rule %s (service %q)", r.ID, r.Service)
	}
	f := &r.Fault
	switch {
	case r.Service == "":
		return fmt.Errorf("fault rule %s: no target service; name the service whose hops it affects", r.ID)
	case f.Kind == KindNone || f.Kind >= kindCount:
		return fmt.Errorf("%s: no fault kind; give one of %s", where, strings.Join(kindNames[1:], ", "))
	case r.Probability < 0 || r.Probability > 1:
		return fmt.Errorf("%s: probability %g is outside 0..1", where, r.Probability)
	case r.First < 0:
		return fmt.Errorf("%s: first %d is negative", where, r.First)
	case f.Duration < 0 || f.Jitter < 0:
		return fmt.Errorf("%s: durations must not be negative", where)
	case f.Kind == Latency && f.Duration == 0 && f.Jitter == 0:
		return fmt.Errorf("%s: latency needs a duration (like 200ms)", where)
	case f.Kind == Abort && (f.Status < 100 || f.Status > 599):
		return fmt.Errorf("%s: abort status %d is not an HTTP status (100..599)", where, f.Status)
	case f.Kind == AbortGRPC && (f.Status < 1 || f.Status > 16):
		return fmt.Errorf("%s: gRPC status %d is not an error code (1..16, e.g. 14 UNAVAILABLE)", where, f.Status)
	case f.Kind == Bandwidth && f.Rate <= 0:
		return fmt.Errorf("%s: bandwidth needs a rate in bytes per second above 0", where)
	case f.Kind == SlowBody && f.Duration == 0:
		return fmt.Errorf("%s: slow-body needs the pause between chunks (like 100ms)", where)
	case f.Kind == SlowBody && f.Chunk < 0:
		return fmt.Errorf("%s: slow-body chunk %d is negative", where, f.Chunk)
	case f.Kind == LimitData && f.Bytes <= 0:
		return fmt.Errorf("%s: limit-data needs a byte count above 0", where)
	case f.Kind == SlowClose && f.Duration == 0:
		return fmt.Errorf("%s: slow-close needs the delay (like 1s)", where)
	case f.Dist > Normal:
		return fmt.Errorf("%s: unknown jitter distribution", where)
	case r.Direction == Response && (f.Kind == Bandwidth || f.Kind == SlowBody || f.Kind == PortDown || f.Kind == Timeout || f.Kind == SlowClose || f.Kind == LimitData):
		return fmt.Errorf("%s: %s has no direction; leave direction out", where, f.Kind)
	}
	if err := checkGlob(r.Route); err != nil {
		return fmt.Errorf("%s: route %q: %w", where, r.Route, err)
	}
	if h := r.Header; h != nil {
		if h.Name == "" {
			return fmt.Errorf("%s: header match without a header name", where)
		}
		if h.Value != "" && h.Regex != "" {
			return fmt.Errorf("%s: header %q: give a value or a regex, not both", where, h.Name)
		}
		if h.Regex != "" {
			if _, err := regexp.Compile(h.Regex); err != nil {
				return fmt.Errorf("%s: header %q regex: %w", where, h.Name, err)
			}
		}
	}
	return nil
}

// String describes the rule in one line, as fault ls prints it.
func (r *Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Fault.String())
	if r.Direction == Response {
		b.WriteString(" on response")
	}
	for _, kv := range [...][2]string{{"caller", r.Caller}, {"route", r.Route}, {"method", r.Method}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if h := r.Header; h != nil {
		switch {
		case h.Regex != "":
			fmt.Fprintf(&b, " header %s~/%s/", h.Name, h.Regex)
		case h.Value != "":
			fmt.Fprintf(&b, " header %s=%s", h.Name, h.Value)
		default:
			fmt.Fprintf(&b, " header %s present", h.Name)
		}
	}
	if r.Probability > 0 && r.Probability < 1 {
		fmt.Fprintf(&b, " p=%g", r.Probability)
	}
	if r.First > 0 {
		fmt.Fprintf(&b, " first %d", r.First)
	}
	return b.String()
}

// String describes the fault ("latency 200ms±20ms normal", "abort 503").
func (f Fault) String() string {
	switch f.Kind {
	case Latency:
		s := "latency " + f.Duration.String()
		if f.Jitter > 0 {
			s += "±" + f.Jitter.String()
			if f.Dist == Normal {
				s += " normal"
			}
		}
		return s
	case Abort, AbortGRPC:
		return fmt.Sprintf("%s %d", f.Kind, f.Status)
	case LimitData:
		return fmt.Sprintf("limit-data %dB", f.Bytes)
	case SlowClose:
		return "slow-close " + f.Duration.String()
	case Hang, Timeout:
		if f.Duration > 0 {
			return fmt.Sprintf("%s %s", f.Kind, f.Duration)
		}
		return f.Kind.String()
	case Reset:
		if f.Duration > 0 {
			return "reset after " + f.Duration.String()
		}
		return "reset"
	case Bandwidth:
		return fmt.Sprintf("bandwidth %dB/s", f.Rate)
	case SlowBody:
		return fmt.Sprintf("slow-body %dB/%s", max(f.Chunk, 1), f.Duration)
	}
	return f.Kind.String()
}
