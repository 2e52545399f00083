package logstore

import (
	"fmt"
	"testing"
	"time"
)

// receive returns the next line of ch, failing the test after a deadline.
func receive(t *testing.T, ch <-chan Line) Line {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line received")
		return Line{}
	}
}

// empty fails unless ch has nothing buffered.
func empty(t *testing.T, ch <-chan Line) {
	t.Helper()
	select {
	case l, ok := <-ch:
		t.Fatalf("unexpected %+v (open %v)", l, ok)
	default:
	}
}

func TestSubscribe(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	apiOnly, cancelAPI := s.Subscribe([]string{"api"})
	all, cancelAll := s.Subscribe(nil)
	defer cancelAll()

	write(t, s.Writer("api", Stdout), "one\ntw")
	write(t, s.Writer("db", Stderr), "db line\n")
	write(t, s.Writer("api", Stdout), "o\n")

	for _, want := range []string{"api out one", "api out two"} {
		if l := receive(t, apiOnly); fmt.Sprintf("%s %s %s", l.Service, l.Stream, l.Text) != want || l.Time.IsZero() {
			t.Fatalf("api subscriber got %+v, want %s", l, want)
		}
	}
	empty(t, apiOnly)
	for _, want := range []string{"api out one", "db err db line", "api out two"} {
		if l := receive(t, all); fmt.Sprintf("%s %s %s", l.Service, l.Stream, l.Text) != want {
			t.Fatalf("all subscriber got %+v, want %s", l, want)
		}
	}

	cancelAPI()
	cancelAPI() // twice is fine
	if _, ok := <-apiOnly; ok {
		t.Fatal("channel open after cancel")
	}
	write(t, s.Writer("api", Stdout), "after cancel\n")
	if l := receive(t, all); l.Text != "after cancel" {
		t.Fatalf("got %+v", l)
	}

	s.Close()
	if _, ok := <-all; ok {
		t.Fatal("channel open after Close")
	}
	cancelAll() // after Close is fine
	late, cancelLate := s.Subscribe(nil)
	defer cancelLate()
	if _, ok := <-late; ok {
		t.Fatal("Subscribe after Close returned an open channel")
	}
}

func TestSlowSubscriber(t *testing.T) {
	const buffer = 4
	s := open(t, t.TempDir(), Options{SubscriberBuffer: buffer})
	slow, cancel := s.Subscribe(nil)
	defer cancel()
	fast, cancelFast := s.Subscribe([]string{"api"})
	defer cancelFast()

	// Nobody reads slow; every write must still return. A blocking writer
	// would hang this loop, and the test with it.
	const n = 100
	w := s.Writer("api", Stdout)
	for i := range n {
		write(t, w, fmt.Sprintf("%d\n", i))
		if l := receive(t, fast); l.Text != fmt.Sprint(i) {
			t.Fatalf("fast subscriber got %q, want %d", l.Text, i)
		}
	}
	var first Line
	for i := range buffer {
		l := receive(t, slow)
		if i == 0 {
			first = l
		}
		if l.Text != fmt.Sprint(i) {
			t.Fatalf("slow subscriber got %q, want %d", l.Text, i)
		}
	}
	empty(t, slow)

	// With room again, the subscriber hears about the gap, then goes on.
	write(t, w, "resumed\n")
	if l := receive(t, slow); l.Stream != System || l.Service != "api" || l.Text != fmt.Sprintf("logstore: dropped %d lines (subscriber too slow)", n-buffer) {
		t.Fatalf("got %+v, want a drop notice for %d lines", l, n-buffer)
	}
	if l := receive(t, slow); l.Text != "resumed" {
		t.Fatalf("got %+v, want resumed", l)
	}

	// Dropped lines are still on disk, and live lines equal stored ones.
	s.Close()
	lines := read(t, s.dir, Query{})
	if len(lines) != n+1 {
		t.Fatalf("read %d lines, want %d", len(lines), n+1)
	}
	if lines[0] != first {
		t.Fatalf("stored %+v, published %+v", lines[0], first)
	}
}
