package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// up SERVICE must check and hold only the ports of what it starts (the
// service and its dependencies), so that the user can run another service
// of the project on its own port, in an IDE, while devstack runs the rest;
// a later up of that service then finds the port taken, names its holder,
// and binds it once it is free. Applying a changed file keeps to the same
// rule.
func TestUpServiceHoldsOnlyThePortsOfWhatItStarts(t *testing.T) {
	ide, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ide.Close()
	ports := map[string]int{"web": freeLoopbackPort(t), "api": freeLoopbackPort(t), "other": ide.Addr().(*net.TCPAddr).Port}
	file := func(greeting string) string {
		return fmt.Sprintf(`
services:
  web:
    x-devstack: {run: "exec sleep 300", port_env: PORT}
    environment: {GREETING: %s}
    ports: ["127.0.0.1:%d:8000"]
    depends_on: [api]
  api:
    x-devstack: {run: "exec sleep 300", port_env: PORT}
    ports: ["127.0.0.1:%d:8000"]
  other:
    x-devstack: {run: "exec sleep 300", port_env: PORT}
    ports: ["127.0.0.1:%d:8000"]
`, greeting, ports["web"], ports["api"], ports["other"])
	}
	dir := writeProject(t, file("hello"))
	c := newCLI(t, dir)
	held := func(svc string) bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[svc]))
		if err != nil {
			return true
		}
		l.Close()
		return false
	}
	state := func() map[string]string {
		out := map[string]string{}
		for _, s := range c.ps() {
			out[s.Name] = string(s.State)
		}
		return out
	}

	c.must("up", "-d", "web")
	if !held("web") || !held("api") {
		t.Fatalf("up -d web: the ports of web (%d) and of api, which it depends on (%d), are not held", ports["web"], ports["api"])
	}
	if st := state(); st["web"] != "running" || st["api"] != "running" || st["other"] == "running" {
		t.Fatalf("up -d web: states %v; want web and api running, other not", st)
	}

	// restart, stop and start with no service mean the services the
	// stack started, as Compose's mean the containers it created: other,
	// never started, is left to the user.
	for _, args := range [][]string{{"restart"}, {"stop"}, {"start"}} {
		c.must(args...)
	}
	if st := state(); st["web"] != "running" || st["api"] != "running" || st["other"] == "running" {
		t.Fatalf("after restart, stop and start: states %v; want web and api running, other not", st)
	}

	// A changed file is applied by a new supervisor, which starts what
	// ran; other's port, still the user's, must not stop it.
	if err := os.WriteFile(filepath.Join(dir, "devstack.yaml"), []byte(file("changed")), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("up", "-d", "web")
	if st := state(); st["web"] != "running" || st["api"] != "running" || st["other"] == "running" {
		t.Fatalf("up -d web after an edit: states %v; want web and api running, other not", st)
	}

	r := c.run("up", "-d", "other")
	if r.code == 0 {
		t.Fatal("up -d other succeeded while its port is the user's")
	}
	for _, want := range []string{fmt.Sprintf("port %d", ports["other"]), `service "other"`, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("up -d other: the error does not name %s:\n%s", want, r.stderr)
		}
	}
	if st := state(); st["web"] != "running" || st["api"] != "running" {
		t.Fatalf("a failed up -d other changed the running services: %v", st)
	}

	ide.Close()
	c.must("up", "-d", "other")
	if !held("other") {
		t.Fatalf("up -d other: its port %d is not held once free", ports["other"])
	}
	if st := state(); st["other"] != "running" {
		t.Fatalf("up -d other: states %v", st)
	}
}

// A port that is busy with no process to name (here a listening socket
// that no process holds: it is in flight in a unix socket's queue) is
// reported as such, with the command that names its holder where one
// exists, not as free and not with a wrong pid.
func TestPortBusyWithNoProcessToNameSaysSo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pair[1])
	if err := syscall.Sendmsg(pair[0], []byte{0}, syscall.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	// Only the message in flight holds the socket now.
	syscall.Close(pair[0])
	f.Close()
	l.Close()
	if probe, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		probe.Close()
		t.Fatal("the port is free once the test's own descriptors are closed: the in-flight socket did not keep it")
	}

	c := newCLI(t, writeProject(t, fmt.Sprintf(`
services:
  web:
    x-devstack: {run: "exec sleep 300", port_env: PORT}
    ports: ["127.0.0.1:%d:%d"]
`, port, port)))
	r := c.run("up", "-d")
	if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("port %d of service \"web\" is already in use by a process devstack cannot see", port)) {
		t.Fatalf("up -d on a port no process holds: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
