package fault

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseHeader reads an X-Devstack-Fault header value: one fault, written
// KIND[=VALUE], optionally followed by ";response" to apply it to the
// response:
//
//	latency=200ms   abort=503   grpc-abort=14   reset   hang   hang=2s
//	bandwidth=1024  slow-body=100ms   latency=50ms;response
func ParseHeader(v string) (Fault, Direction, error) {
	v = strings.TrimSpace(v)
	dir := Request
	if base, opt, ok := strings.Cut(v, ";"); ok {
		d, err := ParseDirection(strings.TrimSpace(opt))
		if err != nil {
			return Fault{}, Request, fmt.Errorf("%s %q: %w", TriggerHeader, v, err)
		}
		v, dir = strings.TrimSpace(base), d
	}
	name, val, hasVal := strings.Cut(v, "=")
	k, err := ParseKind(name)
	if err != nil {
		return Fault{}, Request, fmt.Errorf("%s %q: %w", TriggerHeader, v, err)
	}
	f := Fault{Kind: k}
	bad := func(want string) (Fault, Direction, error) {
		return Fault{}, Request, fmt.Errorf("%s %q: %s needs %s", TriggerHeader, v, k, want)
	}
	switch k {
	case Latency, SlowBody:
		if f.Duration, err = time.ParseDuration(val); err != nil || f.Duration <= 0 {
			return bad("a duration, like " + k.String() + "=200ms")
		}
	case Hang, Timeout:
		if hasVal {
			if f.Duration, err = time.ParseDuration(val); err != nil || f.Duration < 0 {
				return bad("a duration, or none")
			}
		}
	case Abort, AbortGRPC:
		if f.Status, err = strconv.Atoi(val); err != nil {
			return bad("a status code, like abort=503")
		}
	case Bandwidth:
		if f.Rate, err = strconv.ParseInt(val, 10, 64); err != nil {
			return bad("bytes per second, like bandwidth=1024")
		}
	default:
		if hasVal {
			return bad("no value")
		}
	}
	r := Rule{Service: "header", Direction: dir, Fault: f}
	if err := r.Validate(); err != nil {
		return Fault{}, Request, fmt.Errorf("%s %q: %w", TriggerHeader, v, err)
	}
	return f, dir, nil
}
