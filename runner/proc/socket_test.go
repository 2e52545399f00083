//go:build linux

package proc

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

func TestSocketOwnerFindsTheTreeHoldingTheClientEnd(t *testing.T) {
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
	root, ok := SocketOwner(client, server, []int{other.Process.Pid, os.Getpid()}, nil)
	if !ok || root != os.Getpid() {
		t.Fatalf("owner %d %v, want this process %d", root, ok, os.Getpid())
	}
	if _, ok := SocketOwner(client, server, []int{other.Process.Pid}, nil); ok {
		t.Fatal("matched a tree that does not hold the socket")
	}
	if _, ok := SocketOwner(netip.MustParseAddrPort("127.0.0.1:1"), server, []int{os.Getpid()}, nil); ok {
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
