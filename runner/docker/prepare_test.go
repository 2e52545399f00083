package docker

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Prepare creates the service's containers and starts its ambassador
// ahead; Start then starts those very containers and takes the
// ambassador over; undo removes what Prepare made.
func TestPrepareThenStartUsesWhatWasMade(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: {{IMAGE}}
    environment: {NAME: b}
    ports: ["8080"]
    deploy: {replicas: 2}
`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l := &logs{}
	spec, _ := s.frontedSpec(ctx, "b", 8080, l)

	state := func(name string) (string, container.ContainerState) {
		t.Helper()
		res, err := s.b.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("inspecting %s: %v", name, err)
		}
		return res.Container.ID, res.Container.State.Status
	}
	undo, err := s.b.Prepare(ctx, spec)
	if err != nil || undo == nil {
		t.Fatalf("Prepare: undo %v, err %v", undo != nil, err)
	}
	names := []string{s.p.Name + "-b-1", s.p.Name + "-b-2"}
	ids := map[string]string{}
	for _, n := range names {
		id, st := state(n)
		if st != container.StateCreated {
			t.Fatalf("after Prepare, %s is %s; want created", n, st)
		}
		ids[n] = id
	}
	// The ambassador's start goes on after Prepare returns.
	if err := s.b.preparedStart(ctx, ambassadorName(s.p, spec.Service)); err != nil {
		t.Fatal(err)
	}
	ambID, ambSt := state(ambassadorName(s.p, spec.Service))
	if ambSt != container.StateRunning {
		t.Fatalf("after Prepare, the ambassador is %s; want running", ambSt)
	}

	inst, err := s.b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, l)
	}
	di := inst.(*Instance)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = di.Stop(ctx, syscall.SIGKILL, 0)
	})
	for _, n := range names {
		if id, st := state(n); id != ids[n] || st != container.StateRunning {
			t.Errorf("after Start, %s is %s %s; want the prepared %s running", n, shortID(id), st, shortID(ids[n]))
		}
	}
	if di.amb == nil || di.amb.id != ambID || di.amb.adopted {
		t.Errorf("Start did not take over the prepared ambassador %s: %+v", shortID(ambID), di.amb)
	}
	if !strings.Contains(l.String(), "ambassador: "+ReadyLine) {
		t.Errorf("the status log lacks the ambassador's ready line:\n%s", l)
	}
	if strings.Contains(l.String(), "reattaching") || strings.Contains(l.String(), "recreating") {
		t.Errorf("Start treated what Prepare made as leftovers:\n%s", l)
	}
	if err := di.Stop(ctx, syscall.SIGKILL, 0); err != nil {
		t.Fatal(err)
	}

	// Prepared again, then never started: undo leaves nothing.
	undo, err = s.b.Prepare(ctx, spec)
	if err != nil || undo == nil {
		t.Fatalf("second Prepare: undo %v, err %v", undo != nil, err)
	}
	undo()
	left, err := s.b.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelProject+"="+s.p.Name)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range left.Items {
		t.Errorf("after undo, container %s (%s) is left", firstName(c.Names), c.State)
	}
}

// Prepare leaves a service that builds to Start: its image is not there
// yet, and nothing is made.
func TestPrepareSkipsMissingImage(t *testing.T) {
	s := newStack(t, `
services:
  b:
    image: devstack-test-absent:{{TAG}}
`)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	undo, err := s.b.Prepare(ctx, specFor(s.p, "b", &logs{}))
	if err != nil || undo != nil {
		t.Fatalf("Prepare of a service without its image: undo %v, err %v; want neither", undo != nil, err)
	}
	if _, err := s.b.cli.ContainerInspect(ctx, s.p.Name+"-b-1", client.ContainerInspectOptions{}); err == nil {
		t.Error("Prepare created a container for a service whose image is missing")
	}
}
