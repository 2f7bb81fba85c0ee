// Package http reads an HTTP/1.x request line and its Host and User-Agent headers from captured bytes.
package http

import "bytes"

// Bounds on each value kept; longer ones are cut and marked.
const (
	MaxMethod    = 16
	MaxPath      = 1024
	MaxVersion   = 16
	MaxHost      = 255
	MaxUserAgent = 512
	maxHeaders   = 100 // header lines looked at before giving up on Host and User-Agent
)

// Cut marks a value that was longer than its bound, or whose end was not in the captured bytes.
type Cut uint8

// Cut bits.
const (
	CutPath Cut = 1 << iota
	CutHost
	CutUserAgent
)

// Request is what the first bytes of an HTTP request say. Values are raw bytes as sent, bounded.
type Request struct {
	Method, Path, Version, Host, UserAgent string
	Cut                                    Cut
}

// methods are the request methods recognised: RFC 9110's, PATCH, and WebDAV's, which scanners
// send. Anything else is not taken for HTTP.
var methods = []string{
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
}

// versions are the common ones, kept as constants so that recording them costs nothing.
var versions = []string{"1.1", "1.0", "2.0", "0.9"}

// intern returns the string of vs equal to b, or "" when there is none.
func intern(b []byte, vs []string) string {
	for _, v := range vs {
		if string(b) == v {
			return v
		}
	}
	return ""
}

// Match reports whether p begins like an HTTP/1.x request: a known method, then a space; or the
// HTTP/2 connection preface.
func Match(p []byte) bool {
	if bytes.HasPrefix(p, []byte("PRI * HTTP/2.0\r\n")) {
		return true
	}
	sp := bytes.IndexByte(p[:min(len(p), MaxMethod+1)], ' ')
	if sp <= 0 {
		return false
	}
	for _, m := range methods {
		if string(p[:sp]) == m {
			return true
		}
	}
	return false
}

// Parse reads the request line and headers at the start of p. It returns ok false when p does
// not begin like a request (see Match).
func Parse(p []byte) (Request, bool) {
	var r Request
	if !Match(p) {
		return r, false
	}
	line, rest, ended := nextLine(p)
	sp := bytes.IndexByte(line, ' ')
	if r.Method = intern(line[:sp], methods); r.Method == "" {
		r.Method = "PRI" // the HTTP/2 preface, the only other thing Match takes
	}
	target := line[sp+1:]
	var version []byte
	targetEnded := ended
	if i := bytes.LastIndexByte(target, ' '); i >= 0 && bytes.HasPrefix(target[i+1:], []byte("HTTP/")) {
		target, version = target[:i], target[i+1:]
		targetEnded = true
	} else if i := bytes.IndexByte(target, ' '); i >= 0 {
		target, targetEnded = target[:i], true // HTTP/0.9-style or junk after the target
	}
	var cut bool
	r.Path, cut = bound(target, MaxPath, targetEnded)
	if cut {
		r.Cut |= CutPath
	}
	if ended && len(version) > 0 {
		v := bytes.TrimPrefix(version, []byte("HTTP/"))
		if r.Version = intern(v, versions); r.Version == "" {
			r.Version, _ = bound(v, MaxVersion, true)
		}
	}
	for n := 0; ended && n < maxHeaders; n++ {
		line, rest, ended = nextLine(rest)
		if len(line) == 0 {
			break // the end of the headers, or of the bytes
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.Trim(value, " \t")
		switch {
		case r.Host == "" && bytes.EqualFold(name, []byte("Host")):
			if r.Host, cut = bound(value, MaxHost, ended); cut {
				r.Cut |= CutHost
			}
		case r.UserAgent == "" && bytes.EqualFold(name, []byte("User-Agent")):
			if r.UserAgent, cut = bound(value, MaxUserAgent, ended); cut {
				r.Cut |= CutUserAgent
			}
		}
	}
	return r, true
}

// nextLine splits off the line at the start of p (without CR LF or a bare LF); ended says the
// line's end was in p.
func nextLine(p []byte) (line, rest []byte, ended bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return bytes.TrimSuffix(p, []byte("\r")), nil, false
	}
	line = p[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, p[i+1:], true
}

// bound keeps at most n bytes of v; cut says v was longer, or its end was not seen.
func bound(v []byte, n int, ended bool) (string, bool) {
	if len(v) > n {
		return string(v[:n]), true
	}
	return string(v), !ended
}
