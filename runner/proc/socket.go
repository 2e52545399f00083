//go:build linux

package proc

import (
	"bufio"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Sockets finds which process holds a socket. It remembers each process's
// fds from its last listing, which makes the next lookup in the same
// process cheap (see holds); give each long-lived user one of its own. The
// zero value is ready; it is safe for concurrent use.
type Sockets struct {
	// lastFDs keeps each process's fd names from its last listing. A stale
	// entry, even of a pid reused by another process, costs only a link
	// read that fails or differs: the listing after it settles the answer.
	lastFDs fdCache
}

// Owner finds which of the process trees rooted at roots holds the
// client end of a TCP connection: client is the connection's client
// address (the peer address the server sees), server the address it
// connected to. It returns the root whose tree holds the socket.
//
// The proxy calls it to learn which service opened a connection. It reads
// only the socket's entry (sock_diag) and the fd directories of the
// trees' processes, not every process on the machine, and stops at the
// first tree that holds it: put the likeliest roots first. tree lists a
// root's processes; nil means Descendants.
func (s *Sockets) Owner(client, server netip.AddrPort, roots []int, tree func(root int) []int) (int, bool) {
	inode, answered := diagInode(client, server)
	if !answered {
		// No sock_diag (an old or restricted kernel): scan the tables.
		inode = connInode(client.Port(), server.Port())
	}
	if inode == "" {
		return 0, false
	}
	want := "socket:[" + inode + "]"
	if tree == nil {
		tree = Descendants
	}
	for _, root := range roots {
		for _, pid := range tree(root) {
			if s.holds(pid, want) {
				return root, true
			}
		}
	}
	return 0, false
}

// connInode finds the inode of the socket whose local port is lport and
// remote port rport, in /proc/net/tcp then tcp6. On loopback the pair of
// ports is unique.
func connInode(lport, rport uint16) string {
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if inode := scanConn(path, lport, rport); inode != "" {
			return inode
		}
	}
	return ""
}

func scanConn(path string, lport, rport uint16) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		if hexPort(fields[1]) == lport && hexPort(fields[2]) == rport && fields[9] != "0" {
			return fields[9]
		}
	}
	return ""
}

// hexPort reads the port of an "ADDR:PORT" field of /proc/net/tcp.
func hexPort(field string) uint16 {
	i := strings.LastIndexByte(field, ':')
	if i < 0 {
		return 0
	}
	p, err := strconv.ParseUint(field[i+1:], 16, 16)
	if err != nil {
		return 0
	}
	return uint16(p)
}

// Descendants returns pid and every process below it, from the kernel's
// per-task children lists.
func Descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, err := os.ReadDir(procPath(out[i], "task"))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile(procPath(out[i], "task/"+t.Name()+"/children"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// holds reports whether pid has a file descriptor whose link is want. It
// runs for every new connection whose caller is looked up, over every fd
// of the likeliest service: links are read relative to the open fd
// directory (no path walk from /proc per fd) into one buffer.
//
// Listing the directory costs the kernel as much per fd as reading a
// link, so the fds of the process's last listing are tried first, without
// listing again: a new socket takes the lowest free fd, which is most
// often one that an earlier, now closed, connection had. Only when none of
// them is the socket is the directory listed, and its other fds read.
//
// Fds are tried from the highest down: a process's low fds are its
// long-lived ones (standard streams, listeners, its poller, kept
// connections), and on the shop under load the caller's socket was in the
// upper half of the list in 82% of lookups, in the lowest quarter in none.
func (s *Sockets) holds(pid int, want string) bool {
	d, err := os.Open(procPath(pid, "fd"))
	if err != nil {
		return false
	}
	defer d.Close()
	dfd := int(d.Fd())
	var buf [64]byte // a socket link is "socket:[inode]"; longer links are not want
	is := func(name string) bool {
		k, err := unix.Readlinkat(dfd, name, buf[:])
		return err == nil && string(buf[:k]) == want
	}
	// An fd read here and not want cannot become want before the listing
	// below: the socket looked for was open before this call.
	tried := s.lastFDs.get(pid)
	for _, n := range slices.Backward(tried) {
		if is(n) {
			return true
		}
	}
	names, _ := d.Readdirnames(-1)
	s.lastFDs.put(pid, names)
	// A set, not a scan of tried per name: a process may hold thousands
	// of fds, and this would then be quadratic.
	done := make(map[string]bool, len(tried))
	for _, n := range tried {
		done[n] = true
	}
	for _, n := range slices.Backward(names) {
		if !done[n] && is(n) {
			return true
		}
	}
	return false
}

// fdCache holds the fd names of processes, by pid (see Sockets).
type fdCache struct {
	mu sync.Mutex
	m  map[int][]string
}

func (c *fdCache) get(pid int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[pid]
}

func (c *fdCache) put(pid int, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 1024 {
		c.m = map[int][]string{} // dead processes go with the rest
	}
	c.m[pid] = names
}
