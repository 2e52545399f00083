package trace

import "testing"

// A span's text is reused with the span: a hop's head costs no allocation
// once the pool holds spans that went through a store.
func TestRecycledSpanReusesItsText(t *testing.T) {
	head := []byte("GET /orders/42 HTTP/1.1\nHost: orders:8080\nUser-Agent: curl/8.5\nAccept: */*\n")
	s := NewSpan()
	s.Text(head)
	s.Recycle()
	var got string
	allocs := testing.AllocsPerRun(100, func() {
		s := NewSpan()
		got = s.Text(head)
		s.Recycle()
	})
	if got != string(head) {
		t.Fatalf("Text = %q", got)
	}
	// The race detector makes sync.Pool drop items at random.
	if allocs > 0 && !raceOn {
		t.Errorf("%.1f allocations per span; want 0", allocs)
	}
	big := NewSpan()
	big.Text(make([]byte, 2*maxPooledText))
	big.Recycle()
	if cap(big.text) != 0 {
		t.Errorf("a recycled span kept %d bytes of text; want at most %d", cap(big.text), maxPooledText)
	}
}
