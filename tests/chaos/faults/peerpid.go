package faults

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoPeer is returned by PeerPID when no local process holds the socket.
var ErrNoPeer = errors.New("faults: no local process holds the socket")

// PeerPID returns the PID of the local process that owns the client end of a TCP
// connection: remoteAddr is the address the proxy sees the client at (Request.RemoteAddr),
// which is the local address of the client's socket. It reads /proc/net/tcp and tcp6 for the
// socket's inode and /proc/*/fd for the process that holds it; Linux only, and other users'
// processes need root.
//
// Linux gives one local port to several connections to different servers, so more than one
// socket may be bound at remoteAddr; then the one connected to this process (the proxy's
// side) is meant. A socket shared by several processes (inherited over fork) is an error
// that lists them: killing one would not close it.
func PeerPID(remoteAddr string) (int, error) {
	addr, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return 0, fmt.Errorf("faults: peer address %q: %w", remoteAddr, err)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	inodes, err := peerInodes(addr)
	if err != nil {
		return 0, err
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("%w: no socket at %s", ErrNoPeer, remoteAddr)
	}
	pids, err := socketOwners(inodes)
	switch {
	case err != nil:
		return 0, err
	case len(pids) == 0:
		return 0, fmt.Errorf("%w: socket at %s", ErrNoPeer, remoteAddr)
	case len(pids) > 1:
		return 0, fmt.Errorf("faults: socket at %s held by several processes %v", remoteAddr, pids)
	}
	return pids[0], nil
}

// socket is one line of /proc/net/tcp or tcp6.
type socket struct {
	local, remote netip.AddrPort
	inode         string
}

// peerInodes returns the inodes of the sockets bound at addr: of all of them if there is
// one, else of those connected to a socket of this process.
func peerInodes(addr netip.AddrPort) (map[string]bool, error) {
	all, err := sockets()
	if err != nil {
		return nil, err
	}
	var at []socket
	for _, s := range all {
		if s.local == addr {
			at = append(at, s)
		}
	}
	if len(at) > 1 {
		ours := ownAddrs(all)
		at = slices.DeleteFunc(at, func(s socket) bool { return !ours[s.remote] })
	}
	inodes := map[string]bool{}
	for _, s := range at {
		inodes[s.inode] = true
	}
	return inodes, nil
}

// ownAddrs returns the local addresses of the sockets this process holds.
func ownAddrs(all []socket) map[netip.AddrPort]bool {
	mine := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if inode, ok := socketInode(fd); ok {
			mine[inode] = true
		}
	}
	addrs := map[netip.AddrPort]bool{}
	for _, s := range all {
		if mine[s.inode] {
			addrs[s.local] = true
		}
	}
	return addrs
}

// sockets reads the TCP sockets that a process holds (inode not 0) from /proc/net/tcp and
// tcp6.
func sockets() ([]socket, error) {
	var all []socket
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		socks, err := readTCPTable(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		all = append(all, socks...)
	}
	return all, nil
}

// readTCPTable reads one /proc/net/tcp* table. A line reads "sl local_address rem_address st
// tx:rx tr:when retrnsmt uid timeout inode ...".
func readTCPTable(name string) ([]socket, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []socket
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[9] == "0" {
			continue // inode 0: a socket no process holds any more (TIME_WAIT)
		}
		local, err1 := parseProcAddr(fields[1])
		remote, err2 := parseProcAddr(fields[2])
		if err1 == nil && err2 == nil {
			out = append(out, socket{local: local, remote: remote, inode: fields[9]})
		}
	}
	return out, sc.Err()
}

// parseProcAddr parses an address of /proc/net/tcp*: the IP as 32-bit words in host byte
// order (little-endian here), a colon, and the port in big-endian hex. IPv4-mapped IPv6
// addresses come back as IPv4.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("faults: bad /proc/net address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("faults: bad /proc/net port %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		slices.Reverse(raw[i : i+4])
	}
	ip, _ := netip.AddrFromSlice(net.IP(raw))
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// socketOwners returns the PIDs, in increasing order, of the processes with a file
// descriptor on one of the socket inodes.
func socketOwners(inodes map[string]bool) ([]int, error) {
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return nil, fmt.Errorf("list /proc/*/fd: %w", err)
	}
	var pids []int
	for _, fd := range fds {
		if inode, ok := socketInode(fd); !ok || !inodes[inode] {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// socketInode returns the inode of the socket that the descriptor link fd ("/proc/N/fd/M")
// points at; false if it is not a socket, or gone.
func socketInode(fd string) (string, bool) {
	target, err := os.Readlink(fd)
	if err != nil || !strings.HasPrefix(target, "socket:[") {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), true
}
