package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writing process and a reading
// test, which can wait for what it expects without polling.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) snapshot() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.b.String(), s.changed
}

func (s *syncBuffer) String() string {
	out, _ := s.snapshot()
	return out
}

// waitOutput waits until the output contains want.
func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		out, changed := b.snapshot()
		if strings.Contains(out, want) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %q in output:\n%s", want, out)
		}
	}
}
