package fault

import (
	"testing"
	"time"
)

// The proxy's cost per request: a service no rule names, and one whose
// rule matches.
func BenchmarkDecide(b *testing.B) {
	s, err := Compile([]Rule{{Service: "payments", Route: "/charge*", Fault: Fault{Kind: Latency, Duration: time.Millisecond}}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	var tab Table
	tab.Store(s)
	for _, svc := range []string{"orders", "payments"} {
		b.Run(svc, func(b *testing.B) {
			b.ReportAllocs()
			var d Decision
			for b.Loop() {
				r := Req{Service: svc, Method: "POST", Path: "/charge/1"}
				if set := tab.Load(); set.Targets(r.Service) {
					set.Decide(&r, &d)
				}
			}
		})
	}
}
