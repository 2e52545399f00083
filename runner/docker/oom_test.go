package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devstack/devstack/runner"
)

// A container the OOM killer ends is reported as such, with the limit it
// hit, not as a mere "killed" (exit code 137).
func TestOOMKillSaysOOMAndTheLimit(t *testing.T) {
	s := newStack(t, `
services:
  hog:
    image: {{IMAGE}}
    command: ["hog", "256"]
    mem_limit: 32m
    memswap_limit: 32m
`)
	r, l, events := runStack(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r.Up(ctx, nil) // it may be up, briefly, or already gone
	var st runner.ServiceStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if st = status(r, "hog"); st.LastExit != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hog never exited: %+v\n%s", st, l)
		}
	}
	e := st.LastExit
	if !e.OOM || e.MemoryLimit != 32<<20 {
		t.Fatalf("hog's exit: %+v; want an OOM kill at 32 MiB\n%s", e, l)
	}
	if got := e.String(); !strings.Contains(got, "out of memory") || !strings.Contains(got, "32 MiB") {
		t.Errorf("the exit reads %q; want it to say out of memory, at 32 MiB", got)
	}
	found := false
	for _, ev := range events() {
		found = found || strings.Contains(ev, "out of memory")
	}
	if !found {
		t.Errorf("no event says out of memory: %q", events())
	}
}
