package trace

import (
	"testing"
	"time"
	"unsafe"
)

func TestStoreRecordDropsWhenFull(t *testing.T) {
	st, err := Open("", StoreOptions{Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Hold the index so the background goroutine blocks on its first span
	// and the buffer fills up behind it.
	st.mu.RLock()
	for i := range 10 {
		st.Record(&Span{TraceID: TraceID{1}, SpanID: SpanID{byte(i + 1)}, Start: time.Unix(1, 0)})
	}
	dropped := st.Dropped()
	st.mu.RUnlock()
	st.Flush()
	if dropped < 5 {
		t.Errorf("Dropped = %d, want at least 5 of 10 with a buffer of 4", dropped)
	}
	if got := uint64(st.Stats().Spans) + st.Dropped(); got != 10 {
		t.Errorf("indexed + dropped = %d, want 10", got)
	}
}

func TestStoredSpanSize(t *testing.T) {
	// One size class: keep it there when adding fields.
	if n := unsafe.Sizeof(storedSpan{}); n > 208 {
		t.Errorf("storedSpan is %d bytes, want at most 208", n)
	}
}
