package control

import (
	"testing"
	"time"

	"github.com/devstack/devstack/trace"
)

// A trace query survives the trip to the supervisor: status ranges and
// id prefixes included.
func TestTraceQueryRoundTrip(t *testing.T) {
	for _, q := range []trace.Query{
		{},
		{Service: "orders", Status: trace.StatusRange{Min: 400, Max: 499}, Errors: true, Limit: 5},
		{Status: trace.StatusRange{Min: 500, Max: 504}, IDPrefix: "abcd", MinDuration: time.Second},
		{Service: "gateway", Probes: true},
		{Status: trace.StatusRange{Min: 404, Max: 404}, Route: "/x", QueryHas: "region=EU", Since: time.Unix(1700000000, 5).UTC()},
	} {
		got, err := ParseTraceQuery(EncodeTraceQuery(q))
		if err != nil || got != q {
			t.Errorf("round trip of %+v: %+v, %v", q, got, err)
		}
	}
	if _, err := ParseTraceQuery(map[string][]string{"status": {"7xx"}}); err == nil {
		t.Error("status 7xx: no error")
	}
}
