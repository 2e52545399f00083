//go:build linux

package proc

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxCmdLen bounds the command line PortHolder returns, in characters.
const maxCmdLen = 80

// PortHolder reports which process listens on TCP port: a socket in LISTEN
// state on that port, on any local address, IPv4 or IPv6, in the caller's
// network namespace. cmd is the holder's command line joined with spaces
// and cut to 80 characters. ok is false when nothing listens or the owner
// cannot be seen (another user's process when not running as root); the
// caller then reports the port as busy without naming the holder.
//
// When several processes share the socket (inherited after fork, or
// SO_REUSEPORT), the lowest pid is returned.
func PortHolder(port int) (pid int, cmd string, ok bool) {
	if port <= 0 || port > 65535 {
		return 0, "", false
	}
	inodes := make(map[string]bool)
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		listenInodes(procRoot+"/"+f, port, inodes)
	}
	if len(inodes) == 0 {
		return 0, "", false
	}
	pid, ok = socketOwner(inodes)
	if !ok {
		return 0, "", false
	}
	return pid, commandLine(pid), true
}

// listenInodes adds to inodes the socket inode of every LISTEN socket on port
// found in a /proc/net/tcp{,6} table:
//
//	sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode
//	0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 ...
func listenInodes(path string, port int, inodes map[string]bool) {
	f, err := os.Open(path)
	if err != nil {
		return // no IPv6, or procfs not mounted
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		local := fields[1]
		i := strings.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(local[i+1:], 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if inode := fields[9]; inode != "0" {
			inodes[inode] = true
		}
	}
}

// socketOwner finds the lowest pid holding a file descriptor for one of the
// socket inodes.
func socketOwner(inodes map[string]bool) (int, bool) {
	pids, err := listPIDs()
	if err != nil {
		return 0, false
	}
	for _, pid := range pids {
		dir := procPath(pid, "fd")
		d, err := os.Open(dir)
		if err != nil {
			continue // exited, or not ours to read
		}
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, n := range names {
			link, err := os.Readlink(dir + "/" + n)
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(link, "socket:[")
			if !ok {
				continue
			}
			if inodes[strings.TrimSuffix(inode, "]")] {
				return pid, true
			}
		}
	}
	return 0, false
}

// commandLine returns the command line of pid joined with spaces, or its
// comm in brackets when the command line is empty (kernel threads, zombies),
// cut to maxCmdLen characters.
func commandLine(pid int) string {
	var s string
	if b, err := os.ReadFile(procPath(pid, "cmdline")); err == nil {
		s = strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
	}
	if s == "" {
		if b, err := os.ReadFile(procPath(pid, "comm")); err == nil {
			s = "[" + strings.TrimSpace(string(b)) + "]"
		}
	}
	return truncate(s, maxCmdLen)
}

// truncate cuts s to at most n characters, ending in "..." when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-3]) + "..."
}
