// Package socket opens and inspects spip's sockets: the listener, and where each accepted connection was really headed.
package socket

import "errors"

// ErrNotRedirected means the kernel has no NAT record for the connection: it was not redirected,
// so its local address is the destination the peer dialled.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")
