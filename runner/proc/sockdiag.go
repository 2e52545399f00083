//go:build linux

package proc

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// diagInode asks the kernel for the inode of the one TCP socket with the
// given local and remote addresses, through NETLINK_SOCK_DIAG (what `ss`
// uses). Unlike reading /proc/net/tcp, whose size grows with every
// connection in TIME_WAIT, it costs the same however busy the machine is.
// answered is false only when the kernel could not be asked; an inode of
// "" with answered true means no open socket has those addresses (the
// connection is closed, or in TIME_WAIT, which has no inode).
func diagInode(local, remote netip.AddrPort) (inode string, answered bool) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	family := byte(unix.AF_INET)
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	// struct nlmsghdr (16 bytes) + struct inet_diag_req_v2 (56 bytes).
	const reqLen = 16 + 56
	msg := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], reqLen)
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(msg[8:], 1) // seq
	r := msg[16:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // all states
	// struct inet_diag_sockid: ports and addresses in network order.
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	putAddr(id[4:20], local.Addr(), family)
	putAddr(id[20:36], remote.Addr(), family)
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return "", false
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil || n < 16+72 {
		return "", false
	}
	if ne.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		// struct nlmsgerr: a negative errno first. ENOENT: no such socket.
		return "", int32(ne.Uint32(buf[16:])) == -int32(unix.ENOENT)
	}
	if ne.Uint16(buf[4:]) != unix.SOCK_DIAG_BY_FAMILY {
		return "", false
	}
	// struct inet_diag_msg: the inode is its last field, at offset 68.
	ino := ne.Uint32(buf[16+68:])
	if ino == 0 {
		return "", true // closing: no process holds it any more
	}
	return strconv.FormatUint(uint64(ino), 10), true
}

func putAddr(dst []byte, a netip.Addr, family byte) {
	if family == unix.AF_INET {
		b := a.Unmap().As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}
