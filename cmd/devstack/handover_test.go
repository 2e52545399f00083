package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
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
