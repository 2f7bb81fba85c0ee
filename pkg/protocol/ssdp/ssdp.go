// Package ssdp reads an SSDP (UPnP discovery) M-SEARCH request: what it searches for.
package ssdp

import "bytes"

// MaxTarget bounds the search target kept; a longer one is cut and says so.
const MaxTarget = 255

// Search is an M-SEARCH request.
type Search struct {
	Target string // the ST header's value, bytes as sent
	Cut    bool   // Target was longer than MaxTarget
}

var start = []byte("M-SEARCH * HTTP/1.")

// Match reports whether p starts like an M-SEARCH request.
func Match(p []byte) bool { return bytes.HasPrefix(p, start) }

// Parse reads an M-SEARCH request's ST header. ok is false when p is not an M-SEARCH request;
// a request without ST still is one, with an empty Target.
func Parse(p []byte) (s Search, ok bool) {
	if !Match(p) {
		return s, false
	}
	rest := p
	for {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return s, true
		}
		rest = rest[nl+1:]
		line := rest
		if end := bytes.IndexByte(line, '\n'); end >= 0 {
			line = line[:end]
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return s, true // end of the headers
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !bytes.EqualFold(bytes.TrimSpace(name), []byte("ST")) {
			continue
		}
		value = bytes.TrimSpace(value)
		if len(value) > MaxTarget {
			value, s.Cut = value[:MaxTarget], true
		}
		s.Target = string(value)
		return s, true
	}
}
