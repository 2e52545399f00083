//go:build linux

package proc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

func TestSocketOwnerFindsTheTreeHoldingTheClientEnd(t *testing.T) {
	var s Sockets
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A child process that is not ours to match, to show roots matter.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client := srv.RemoteAddr().(*net.TCPAddr).AddrPort()
	server := srv.LocalAddr().(*net.TCPAddr).AddrPort()

	viaDiag, ok := diagInode(client, server)
	if !ok || viaDiag != connInode(client.Port(), server.Port()) {
		t.Errorf("sock_diag inode %q (%v), /proc/net/tcp says %q", viaDiag, ok, connInode(client.Port(), server.Port()))
	}
	root, ok := s.Owner(client, server, []int{other.Process.Pid, os.Getpid()}, nil)
	if !ok || root != os.Getpid() {
		t.Fatalf("owner %d %v, want this process %d", root, ok, os.Getpid())
	}
	if _, ok := s.Owner(client, server, []int{other.Process.Pid}, nil); ok {
		t.Fatal("matched a tree that does not hold the socket")
	}
	if _, ok := s.Owner(netip.MustParseAddrPort("127.0.0.1:1"), server, []int{os.Getpid()}, nil); ok {
		t.Fatal("matched a connection that does not exist")
	}
	// The kernel's answer for no such socket is an answer: no scan of
	// /proc/net/tcp, whose length grows with every TIME_WAIT connection.
	if inode, answered := diagInode(netip.MustParseAddrPort("127.0.0.1:1"), server); inode != "" || !answered {
		t.Errorf("no such socket: inode %q, answered %v; want none, answered", inode, answered)
	}
	// Nor is a closed connection's client end (TIME_WAIT, no inode).
	c.Close()
	srv.Close()
	if inode, answered := diagInode(client, server); inode != "" || !answered {
		t.Errorf("closed connection: inode %q, answered %v; want none, answered", inode, answered)
	}
}

// holds tries the fds of a process's last listing before listing again:
// it must still find a socket on an fd that listing did not have, find
// one on a remembered fd number, and not find a socket that is gone.
func TestHoldsWithRememberedFDs(t *testing.T) {
	var s Sockets
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	// dial opens connections until one's fd is (in) or is not (!in) among
	// the remembered names of this process, and returns its link.
	pid := os.Getpid()
	dial := func(in bool) (net.Conn, string) {
		for range 256 {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
			rc, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			var fd int
			rc.Control(func(f uintptr) { fd = int(f); syscall.Fstat(fd, &st) })
			if slices.Contains(s.lastFDs.get(pid), strconv.Itoa(fd)) == in {
				return c, fmt.Sprintf("socket:[%d]", st.Ino)
			}
		}
		t.Fatalf("no fd that the remembered listing has (%v)", in)
		return nil, ""
	}
	first, want1 := dial(false)
	if !s.holds(pid, want1) {
		t.Fatal("did not find a socket this process holds")
	}
	_, want2 := dial(false)
	if !s.holds(pid, want2) {
		t.Fatal("did not find a socket on an fd the last listing did not have")
	}
	first.Close()
	third, want3 := dial(true)
	if !s.holds(pid, want3) {
		t.Fatal("did not find a socket on a remembered fd")
	}
	third.Close()
	if s.holds(pid, want3) || s.holds(pid, want1) {
		t.Fatal("found a socket that is closed")
	}
	// What one Sockets remembers is its own.
	var other Sockets
	if got := other.lastFDs.get(pid); got != nil {
		t.Fatalf("a new Sockets remembers fds %v", got)
	}
}
