package control

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// stops is a Stack that records the grace of each stop and restart.
type stops struct {
	noStack
	mu  sync.Mutex
	got []string
}

func (s *stops) record(op string, o runner.StopOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := "none"
	if o.Grace != nil {
		g = o.Grace.String()
	}
	s.got = append(s.got, op+" "+g)
	return nil
}

func (s *stops) Stop(_ context.Context, _ []string, o runner.StopOptions) error {
	return s.record("stop", o)
}

func (s *stops) Restart(_ context.Context, _ []string, o runner.StopOptions) error {
	return s.record("restart", o)
}

// A stop's grace must reach the stack as the client sent it: none when
// none was given (not zero), zero when zero was; down and handover too.
func TestStopGraceCrossesTheAPI(t *testing.T) {
	st := &stops{}
	srv := &Server{Stack: st, Token: "tok", Events: func() (<-chan runner.Event, func()) { return nil, func() {} }}
	srv.Down = func(_ context.Context, _ bool, o runner.StopOptions) error { return st.record("down", o) }
	srv.Handover = func(_ context.Context, o runner.StopOptions) error { return st.record("handover", o) }
	c, err := Dial(t.Context(), serveAPI(t, srv), "tok")
	if err != nil {
		t.Fatal(err)
	}
	zero, five := time.Duration(0), 5*time.Second
	ctx := t.Context()
	for _, call := range []func() error{
		func() error { return c.Do(ctx, "stop", []string{"web"}, runner.StopOptions{}, nil) },
		func() error { return c.Do(ctx, "stop", []string{"web"}, runner.StopOptions{Grace: &zero}, nil) },
		func() error { return c.Do(ctx, "restart", nil, runner.StopOptions{Grace: &five}, nil) },
		func() error { return c.Down(ctx, false, runner.StopOptions{Grace: &zero}, nil) },
		func() error { return c.Handover(ctx, runner.StopOptions{Grace: &five}, nil) },
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	want := "stop none, stop 0s, restart 5s, down 0s, handover 5s"
	if got := strings.Join(st.got, ", "); got != want {
		t.Errorf("the stack got %s; want %s", got, want)
	}
	// A grace that is not one fails before anything stops.
	err = c.post(ctx, "/v1/stop", request{Grace: "-1s"}, nil)
	if err == nil || !strings.Contains(err.Error(), `grace "-1s": want a duration of 0s or more`) {
		t.Errorf("a negative grace: %v", err)
	}
	if len(st.got) != 5 {
		t.Errorf("a bad grace reached the stack: %v", st.got)
	}
}
