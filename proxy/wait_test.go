package proxy

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitForNeverEndsEarly(t *testing.T) {
	var gate atomic.Bool
	for _, spin := range []*atomic.Bool{nil, &gate} {
		testWaitForNeverEndsEarly(t, spin)
		if gate.Load() {
			t.Fatal("a spun wait kept the spin gate")
		}
	}
}

func testWaitForNeverEndsEarly(t *testing.T, spin *atomic.Bool) {
	for _, d := range []time.Duration{time.Microsecond, 3 * time.Millisecond, 20 * time.Millisecond} {
		for range 5 {
			start := time.Now()
			if !waitFor(nil, d, spin) {
				t.Fatalf("waitFor(nil, %v) reported a cancellation", d)
			}
			if got := time.Since(start); got < d {
				t.Fatalf("waitFor(nil, %v) returned after %v", d, got)
			}
			ctx, cancel := context.WithCancel(context.Background())
			start = time.Now()
			ok := waitFor(ctx, d, spin)
			cancel()
			if got := time.Since(start); !ok || got < d {
				t.Fatalf("waitFor(ctx, %v) = %v after %v", d, ok, got)
			}
		}
	}
}

func TestWaitForEndsWhenTheClientGoesAway(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var gate atomic.Bool
	done := make(chan bool)
	go func() { done <- waitFor(ctx, time.Hour, &gate) }()
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("waitFor reported a full wait after its context ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitFor still waiting 10s after its context ended")
	}
	if waitFor(ctx, time.Millisecond, nil) {
		t.Fatal("waitFor on an ended context reported a full wait")
	}
	if gate.Load() {
		t.Fatal("a wait the client left kept the spin gate")
	}
}

// BenchmarkWaitOvershoot reports how late a 5 ms injected delay ends, at
// the median and the 99th percentile, for waitFor and for time.Sleep
// side by side (go test -run '^$' -bench WaitOvershoot ./proxy/).
func BenchmarkWaitOvershoot(b *testing.B) {
	for _, c := range []struct {
		name string
		wait func(time.Duration)
	}{
		{"waitFor", func(d time.Duration) { waitFor(nil, d, nil) }},
		{"waitForSpun", func(d time.Duration) { waitFor(nil, d, new(atomic.Bool)) }},
		{"timeSleep", time.Sleep},
	} {
		b.Run(c.name, func(b *testing.B) {
			const d = 5 * time.Millisecond
			late := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				c.wait(d)
				late = append(late, time.Since(start)-d)
			}
			slices.Sort(late)
			b.ReportMetric(float64(late[len(late)/2].Microseconds()), "p50-late-µs")
			b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "p99-late-µs")
		})
	}
}
