// Package hostcheck inspects the host a redirect is loaded on: its TCP listeners and who owns them, its firewall, its IPv6.
package hostcheck

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Proc is where procfs is mounted; tests point it at a fake tree.
const Proc = "/proc"

// Listener is one listening TCP socket of the current network namespace.
type Listener struct {
	Addr  netip.Addr
	Port  uint16
	Inode uint64
	// Commands are the names (comm) of the processes holding the socket, sorted; empty when no
	// readable process holds it (systemd's own sockets show as "systemd").
	Commands []string
}

// Loopback reports whether the socket only accepts loopback traffic, which a redirect on the
// external interfaces cannot reach.
func (l Listener) Loopback() bool { return l.Addr.Unmap().IsLoopback() }

// Has reports whether a process named comm holds the socket.
func (l Listener) Has(comm string) bool {
	for _, c := range l.Commands {
		if c == comm {
			return true
		}
	}
	return false
}

// Scan is the listener table with its owners.
type Scan struct {
	Listeners []Listener
	// Unreadable names (comm) the processes whose open files could not be read (not root, or
	// no CAP_SYS_PTRACE): a socket they hold shows no owner.
	Unreadable []string
}

// MissedAny reports whether a process named comm could not be read.
func (s Scan) MissedAny(comm string) bool {
	for _, c := range s.Unreadable {
		if c == comm {
			return true
		}
	}
	return false
}

// Listeners reads the TCP listeners of the calling thread's network namespace from proc
// (/proc/thread-self/net/tcp and tcp6) and finds the processes that hold them by scanning
// every /proc/PID/fd the caller may read. Socket inodes are global, so processes of any
// namespace the caller sees are matched.
func Listeners(proc string) (Scan, error) { return scan(proc, "tcp", stateListen) }

// UDPListeners reads the bound, unconnected UDP sockets (the state the kernel shows as 07,
// "close") of the calling thread's network namespace, with their owners, as Listeners does:
// the sockets a UDP service receives on, and also the unconnected sockets of UDP clients.
func UDPListeners(proc string) (Scan, error) { return scan(proc, "udp", stateUnconnected) }

func scan(proc, proto, state string) (Scan, error) {
	var s Scan
	for _, name := range []string{proto, proto + "6"} {
		f, err := os.Open(filepath.Join(proc, "thread-self", "net", name))
		if errors.Is(err, fs.ErrNotExist) && name == proto+"6" {
			continue // IPv6 disabled at boot
		}
		if err != nil {
			return Scan{}, fmt.Errorf("listeners: %w", err)
		}
		ls, err := parseTable(f, name == proto+"6", state)
		f.Close()
		if err != nil {
			return Scan{}, fmt.Errorf("listeners: %s: %w", f.Name(), err)
		}
		s.Listeners = append(s.Listeners, ls...)
	}
	byInode := map[uint64][]int{}
	for i, l := range s.Listeners {
		byInode[l.Inode] = append(byInode[l.Inode], i)
	}
	var err error
	s.Unreadable, err = owners(proc, func(inode uint64, comm string) {
		for _, i := range byInode[inode] {
			if !s.Listeners[i].Has(comm) {
				s.Listeners[i].Commands = append(s.Listeners[i].Commands, comm)
				sort.Strings(s.Listeners[i].Commands)
			}
		}
	})
	if err != nil {
		return Scan{}, err
	}
	sort.Slice(s.Listeners, func(i, j int) bool {
		a, b := s.Listeners[i], s.Listeners[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Addr.Less(b.Addr)
	})
	return s, nil
}

// PortsOf returns the ports, sorted and unique, that a process named comm listens on.
func (s Scan) PortsOf(comm string) []uint16 {
	var out []uint16
	for _, l := range s.Listeners {
		if l.Has(comm) && (len(out) == 0 || out[len(out)-1] != l.Port) {
			out = append(out, l.Port)
		}
	}
	return out
}

// Socket states as /proc/net/{tcp,udp} print them.
const (
	stateListen      = "0A" // TCP_LISTEN
	stateUnconnected = "07" // TCP_CLOSE: a UDP socket that is bound but not connected
)

// parseTable reads the kernel's /proc/net/tcp (and udp) format, keeping the sockets in state:
// addresses are the raw network-order bytes printed as native-endian 32-bit hex words, ports
// are plain hex.
func parseTable(f *os.File, v6 bool, state string) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			return nil, fmt.Errorf("short line %q", sc.Text())
		}
		if fields[3] != state {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			return nil, fmt.Errorf("bad local address %q", fields[1])
		}
		addr, err := parseAddr(hexAddr, v6)
		if err != nil {
			return nil, err
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port %q", hexPort)
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad inode %q", fields[9])
		}
		out = append(out, Listener{Addr: addr, Port: uint16(port), Inode: inode})
	}
	return out, sc.Err()
}

func parseAddr(s string, v6 bool) (netip.Addr, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || (v6 && len(raw) != 16) || (!v6 && len(raw) != 4) {
		return netip.Addr{}, fmt.Errorf("bad address %q", s)
	}
	// Each 32-bit word was printed as a number in host order: undo that.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}

// owners calls found for every socket inode a readable process holds and returns the names of
// the processes that could not be read for lack of permission.
func owners(proc string, found func(inode uint64, comm string)) ([]string, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("processes: %w", err)
	}
	var unreadable []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		// comm stays readable when fd is not.
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil {
			continue // exited meanwhile
		}
		name := strings.TrimSuffix(string(comm), "\n")
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				unreadable = append(unreadable, name)
			}
			continue // exited meanwhile
		}
		var inodes []uint64
		denied := false
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil {
				denied = denied || errors.Is(err, fs.ErrPermission)
				continue
			}
			if n, ok := socketInode(target); ok {
				inodes = append(inodes, n)
			}
		}
		if denied {
			unreadable = append(unreadable, name)
		}
		for _, n := range inodes {
			found(n, name)
		}
	}
	return unreadable, nil
}

func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return n, err == nil
}

// IPv6Disabled reports whether the kernel was booted without IPv6 (ipv6.disable=1): a socket
// unit listening on [::] then fails to bind.
func IPv6Disabled(proc string) bool {
	_, err := os.Stat(filepath.Join(proc, "sys", "net", "ipv6"))
	return errors.Is(err, fs.ErrNotExist)
}
