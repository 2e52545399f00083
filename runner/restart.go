package runner

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RestartPolicy is a parsed Compose restart: value.
type RestartPolicy struct {
	Mode       string // "no", "always", "on-failure", "unless-stopped"
	MaxRetries int    // for on-failure; 0 = unlimited
}

// ParseRestart parses the Compose restart: syntax.
func ParseRestart(s string) (RestartPolicy, error) {
	switch s {
	case "", "no", "\"no\"":
		return RestartPolicy{Mode: "no"}, nil
	case "always", "unless-stopped", "on-failure":
		return RestartPolicy{Mode: s}, nil
	}
	if rest, ok := strings.CutPrefix(s, "on-failure:"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return RestartPolicy{}, fmt.Errorf("restart %q: the retry count must be a whole number, e.g. on-failure:3", s)
		}
		return RestartPolicy{Mode: "on-failure", MaxRetries: n}, nil
	}
	return RestartPolicy{}, fmt.Errorf("restart %q is not a restart policy; use no, always, on-failure[:N] or unless-stopped", s)
}

// ShouldRestart decides whether an exit leads to a restart. retries is the
// number of restarts already done in the current failure streak.
// stopRequested is true when the user stopped the service.
func (p RestartPolicy) ShouldRestart(e Exit, retries int, stopRequested bool) bool {
	if stopRequested {
		return false
	}
	switch p.Mode {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		if e.Success() {
			return false
		}
		return p.MaxRetries == 0 || retries < p.MaxRetries
	}
	return false
}

// Backoff bounds: the first restart waits backoffMin, each following one in
// a streak doubles, up to backoffMax. A run that lasted stableRun resets the
// streak, as Docker does.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	stableRun  = 10 * time.Second
)

// backoff is the delay before restart number n (n ≥ 1) of a streak.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}
