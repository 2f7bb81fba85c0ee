// Package origdst finds where a connection was really headed: its destination before an nftables redirect.
package origdst

import "errors"

// ErrNotRedirected means the kernel has no NAT record for the connection: it was not redirected,
// so its local address is the destination the peer dialled.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")
