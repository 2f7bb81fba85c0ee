package hostcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Conntrack is the connection-tracking table as procfs shows it.
type Conntrack struct {
	Max, Count int
	// TimeWait and Close are the host's TCP timeouts in seconds: the hold time of a NATed flow
	// without spip's own timeout policy.
	TimeWait, Close int
}

// ReadConntrack reads nf_conntrack_max, nf_conntrack_count and the TIME_WAIT and CLOSE
// timeouts. It fails when the conntrack module is not loaded (the files do not exist yet).
func ReadConntrack(proc string) (Conntrack, error) {
	var c Conntrack
	for _, f := range []struct {
		name string
		v    *int
	}{
		{"nf_conntrack_max", &c.Max}, {"nf_conntrack_count", &c.Count},
		{"nf_conntrack_tcp_timeout_time_wait", &c.TimeWait}, {"nf_conntrack_tcp_timeout_close", &c.Close},
	} {
		b, err := os.ReadFile(filepath.Join(proc, "sys", "net", "netfilter", f.name))
		if err != nil {
			return c, fmt.Errorf("conntrack: %w", err)
		}
		if *f.v, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return c, fmt.Errorf("conntrack: %s: %w", f.name, err)
		}
	}
	return c, nil
}

// SustainedRate is how many new connections per second the free part of the table absorbs for
// good when each holds an entry for hold seconds: past it the kernel drops new SYNs host-wide.
func (c Conntrack) SustainedRate(hold int) int {
	free := c.Max - c.Count
	if free <= 0 || hold <= 0 {
		return 0
	}
	return free / hold
}
