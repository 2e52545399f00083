package runner_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
	"github.com/devstack/devstack/runner/process"
	"github.com/devstack/devstack/runner/project"
)

// Without a Rerouter (no proxy), Replace restarts in place, and the
// stream of status changes says the service stopping is coming back,
// with the cause; once it is back, the intent is gone.
func TestReplaceInPlaceStreamsIntent(t *testing.T) {
	dir := t.TempDir()
	bin, _ := os.Executable()
	yaml := strings.NewReplacer("{{BIN}}", bin, "{{DIR}}", dir).Replace("services:" + svc("a", "block", ""))
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []runner.Change
	be := &process.Backend{}
	r, err := runner.New(p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return be, nil },
		Logs:       &memSink{}, RunID: testRunID(),
		OnStatus: func(c runner.Change) {
			mu.Lock()
			changes = append(changes, c)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Down(ctx, runner.StopOptions{})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	before := r.Status()[0].ID
	res, err := r.Replace(ctx, "a", runner.ReplaceOptions{Cause: "a.go changed"})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Status()[0]
	if res.Beside || st.ID == before || st.State != runner.StateRunning || st.Reloads != 1 {
		t.Fatalf("after an in-place replace: %+v (result %+v; pid before %s)", st, res, before)
	}
	mu.Lock()
	defer mu.Unlock()
	var stopped bool
	for _, c := range changes {
		if c.Status.State == runner.StateStopped {
			stopped = true
			if c.Intent != runner.IntentComingBack || c.Cause != "a.go changed" {
				t.Errorf("the stop for the reload has intent %q, cause %q", c.Intent, c.Cause)
			}
		}
	}
	last := changes[len(changes)-1]
	if !stopped || last.Intent != runner.IntentNone || last.Status.Reloads != 1 {
		t.Fatalf("changes: stopped %v, last %+v; want a stop, and the intent cleared at the end", stopped, last)
	}
}

// A reload replaces the services that depend on it with restart: true,
// and only those.
func TestReplaceReplacesRestartDependents(t *testing.T) {
	s := newStack(t, "services:"+svc("a", "block", "")+svc("b", "block", `    depends_on:
      a: {condition: service_started, restart: true}
`)+svc("c", "block", `    depends_on:
      a: {condition: service_started}
`))
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, st := range s.r.Status() {
		before[st.Name] = st.ID
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := s.r.Replace(ctx, "a", runner.ReplaceOptions{Cause: "a.go changed"}); err != nil {
		t.Fatal(err)
	}
	for _, st := range s.r.Status() {
		changed := st.ID != before[st.Name]
		if want := st.Name != "c"; changed != want || st.State != runner.StateRunning || (st.Reloads == 1) != want {
			t.Errorf("%s after a's reload: replaced %v (want %v), %+v", st.Name, changed, want, st)
		}
	}
}

// drainHold is a Rerouter whose drain holds until released, so that a
// test can act between a replacement's switch and its takeover.
type drainHold struct {
	fresh    uint16
	draining chan struct{}
	release  chan struct{}
	once     sync.Once
}

func (d *drainHold) FreshPorts(string) (map[uint16]uint16, error) {
	return map[uint16]uint16{8080: d.fresh}, nil
}
func (d *drainHold) Switch(string, map[uint16]uint16) error { return nil }
func (d *drainHold) Drain(ctx context.Context, _ string, _ time.Time) {
	d.once.Do(func() { close(d.draining) })
	select {
	case <-d.release:
	case <-ctx.Done():
	}
}

// A stop that comes while a replacement is switched to but has not taken
// over yet (the old instance drains) stops the replacement too: nothing
// outlives the stop.
func TestStopDuringAReloadStopsTheReplacementToo(t *testing.T) {
	dir := t.TempDir()
	bin, _ := os.Executable()
	yaml := strings.NewReplacer("{{BIN}}", bin, "{{DIR}}", dir).Replace("services:" + svc("a", "serve", `    ports: ["127.0.0.1:8080:8080"]
`))
	os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(yaml), 0o600)
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	free := func() uint16 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port)
	}
	first := free()
	rr := &drainHold{fresh: free(), draining: make(chan struct{}), release: make(chan struct{})}
	be := &process.Backend{}
	r, err := runner.New(p, runner.Options{
		BackendFor: func(*project.Service) (runner.Backend, error) { return be, nil },
		Logs:       &memSink{}, RunID: testRunID(), Rerouter: rr,
		ListenPort: func(string, project.Port) uint16 { return first },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Down(ctx, runner.StopOptions{})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.Up(ctx, nil); err != nil {
		t.Fatal(err)
	}
	replaced := make(chan error, 1)
	go func() {
		_, err := r.Replace(ctx, "a", runner.ReplaceOptions{Cause: "a.go changed"})
		replaced <- err
	}()
	select {
	case <-rr.draining:
	case <-ctx.Done():
		t.Fatal("the replacement never got to its drain")
	}
	if err := r.Stop(ctx, []string{"a"}, runner.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	close(rr.release)
	<-replaced
	// Both instances are gone: neither port answers.
	for _, port := range []uint16{first, rr.fresh} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("port %d still answers after the stop; an instance outlived it", port)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if st := r.Status()[0]; st.State != runner.StateStopped {
		t.Fatalf("a after the stop: %+v", st)
	}
}
