package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devstack/devstack/runner/project"
)

// Before a handover, a declared port held by a stranger stops up; one
// held by the running supervisor (its proxy) does not.
func TestPortsForHandover(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := writeProject(t, fmt.Sprintf("services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:%d:80\"]\n", port))
	p, err := project.Load(t.Context(), project.LoadOptions{WorkDir: dir, Name: "ho"})
	if err != nil {
		t.Fatal(err)
	}
	// The holder is this test process. As "the supervisor", it may hold it.
	if err := portsForHandover(p, p.WithDependencies(nil), os.Getpid(), nil); err != nil {
		t.Errorf("port held by the supervisor itself: %v", err)
	}
	// Held by a process that is not the supervisor nor its descendant (a
	// child of ours stands for the supervisor here): a conflict, named.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	err = portsForHandover(p, p.WithDependencies(nil), other.Process.Pid, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d of service \"web\"", port)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("port held by a stranger: got %v; want an error naming port %d, web and pid %d", err, port, os.Getpid())
	}
}

// up -d on an edited file that the new supervisor would refuse (here an
// external plugin whose executable does not exist) must fail before the
// running stack hands over: the services keep running, the same
// processes, and the error says the stack was left as it is.
func TestUpDetachedOnARefusedEditLeavesTheStackRunning(t *testing.T) {
	file := `
services:
  web:
    x-devstack: {run: "exec sleep 300"}
  api:
    x-devstack: {run: "exec sleep 300"}
`
	dir := writeProject(t, file)
	c := newCLI(t, dir)
	c.must("up", "-d")
	ids := map[string]string{}
	for _, s := range c.ps() {
		ids[s.Name] = s.ID
	}
	edited := file + `x-devstack:
  plugins:
    - {name: flaky, path: bin/nosuch}
`
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, `plugin "flaky"`) || !strings.Contains(r.stderr, "the running stack was left as it is") {
		t.Fatalf("up -d on a refused edit: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, s := range c.ps() {
		if s.State != "running" || s.ID != ids[s.Name] {
			t.Errorf("after the refused edit, %s is %s as %s; want still running as %s", s.Name, s.State, s.ID, ids[s.Name])
		}
	}
}
