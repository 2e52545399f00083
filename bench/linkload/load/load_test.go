package load

import (
	"testing"
)

// TestFiftyConcurrentCheckoutsLinkHonestly: with 50 checkouts in flight
// through a service that drops the trace context, no hop the proxy links
// by inference is shown as certain and in the wrong trace; the calls that
// carry the request id they were given are linked for certain; and the
// hops whose context was propagated are all right.
func TestFiftyConcurrentCheckoutsLinkHonestly(t *testing.T) {
	res, err := Run(t.Context(), Options{Concurrency: 50, Checkouts: 200, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Checkouts != 200 || res.Inferred < 200 || res.Propagated == 0 {
		t.Fatalf("the load did not run as planned: %s", res)
	}
	if res.WrongCertain != 0 {
		t.Errorf("%d inferred hops are in the wrong trace and shown as certain", res.WrongCertain)
	}
	// The request id settles every call that carries it.
	if res.Evidence == 0 || res.EvidenceCertain != res.Evidence {
		t.Errorf("of %d calls carrying their request id, %d were linked for certain", res.Evidence, res.EvidenceCertain)
	}
	if res.PropagatedWrong != 0 {
		t.Errorf("%d hops with their context propagated landed in another trace", res.PropagatedWrong)
	}
	if res.Ambiguous == 0 {
		t.Errorf("50 checkouts in flight, and no link shown as a guess: %s", res)
	}
}
