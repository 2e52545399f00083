package knob

import (
	"fmt"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Query parameter names.
const (
	ParamSlow = "slow"
	ParamFail = "fail"
)

// MaxDelay bounds a slow knob so that a typo cannot hang a stack for hours.
const MaxDelay = time.Minute

// Set holds the knobs of one request, by service name.
type Set struct {
	slow map[string]time.Duration
	fail map[string]int
}

// Parse reads the slow and fail parameters of q. When a service is named
// twice for the same knob, the last entry wins.
func Parse(q url.Values) (Set, error) {
	s := Set{slow: map[string]time.Duration{}, fail: map[string]int{}}
	for entry := range entries(q, ParamSlow) {
		name, val, err := split(ParamSlow, entry)
		if err != nil {
			return Set{}, err
		}
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 || d > MaxDelay {
			return Set{}, fmt.Errorf("knob slow=%s: want a duration between 0 and %s, like payments:300ms", entry, MaxDelay)
		}
		s.slow[name] = d
	}
	for entry := range entries(q, ParamFail) {
		name, val, err := split(ParamFail, entry)
		if err != nil {
			return Set{}, err
		}
		code, err := strconv.Atoi(val)
		if err != nil || code < 400 || code > 599 {
			return Set{}, fmt.Errorf("knob fail=%s: want an HTTP status between 400 and 599, like inventory:503", entry)
		}
		s.fail[name] = code
	}
	return s, nil
}

// Delay is how long service should sleep before answering (0 for none).
func (s Set) Delay(service string) time.Duration { return s.slow[service] }

// Fail is the status service should answer with instead of working, 0 for none.
func (s Set) Fail(service string) int { return s.fail[service] }

// Forward copies the knob parameters of in into out, so that a service passes
// them on to its upstream calls unchanged.
func Forward(out, in url.Values) {
	for _, p := range []string{ParamSlow, ParamFail} {
		if v, ok := in[p]; ok {
			out[p] = append([]string(nil), v...)
		}
	}
}

// entries yields the non-empty comma-separated entries of every value of param.
func entries(q url.Values, param string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range q[param] {
			for e := range strings.SplitSeq(v, ",") {
				if e = strings.TrimSpace(e); e != "" && !yield(e) {
					return
				}
			}
		}
	}
}

func split(param, entry string) (name, val string, err error) {
	name, val, ok := strings.Cut(entry, ":")
	if !ok || name == "" || val == "" {
		return "", "", fmt.Errorf("knob %s=%s: want service:value", param, entry)
	}
	return name, val, nil
}
