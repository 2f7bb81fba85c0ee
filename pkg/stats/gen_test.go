package stats

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"spip/pkg/record"
)

// genStart is the generated set's first second: 2026-11-26 08:00:00 UTC.
var genStart = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

// genRec is one generated record: a record as the sensor makes it, and the protocol fields
// that the protocol issue's sensor adds (written next to the record's own fields).
type genRec struct {
	r      record.Record
	sensor string
	extra  []kv
}

type kv struct {
	k record.Key
	v string
}

// genSpec shapes a generated set.
type genSpec struct {
	seed    uint64
	n       int
	span    time.Duration
	ipv6    bool // IPv6 sources only
	hostile bool // terminal escapes and bidi overrides in payloads, user agents, banners, warnings
	events  bool // summary, warning and started records
	big     int  // every big-th payload is 4 KiB (0: none)
}

var hostileUA = "Mozilla/5.0 \x1b[31mRED\x1b[0m\x1b]0;owned\x07 \u202eevil\u202c"

// generate makes a fixed set of records from spec: a few heavy scanners and a long tail,
// Zipf-distributed ports, silent connections, HTTP, TLS, SSH, Redis and binary payloads.
func generate(spec genSpec) []genRec {
	rnd := rand.New(rand.NewPCG(spec.seed, 17))
	ports := []uint16{23, 80, 443, 8080, 3389, 445, 6379, 2222, 5900, 8443, 21, 25, 1433, 9200}
	zipf := rand.NewZipf(rand.New(rand.NewPCG(spec.seed, 5)), 1.3, 2, uint64(len(ports)-1))
	srcZipf := rand.NewZipf(rand.New(rand.NewPCG(spec.seed, 7)), 1.2, 4, 4000)
	paths := []string{"/", "/.env", "/wp-login.php", "/cgi-bin/luci/;stok=/locale", "/actuator/health", "/.git/config"}
	uas := []string{"Mozilla/5.0 zgrab/0.x", "curl/8.5.0", "python-requests/2.31", "Go-http-client/1.1", "masscan/1.3"}
	snis := []string{"example.com", "www.example.org", "api.example.net"}
	ja4s := []string{"t13d1516h2_8daaf6152771_b0da82dd1658", "t13d1715h2_5b57614c22b0_3d5424432f57", "t12d190800_d83cc789557e_7af1ed941c26"}
	banners := []string{"SSH-2.0-libssh_0.9.6", "SSH-2.0-Go", "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"}
	if spec.hostile {
		uas = append(uas, hostileUA)
		paths = append(paths, "/\x1b[2J\x1b[H/clear")
		banners = append(banners, "SSH-2.0-\x1b[?1049hx\u202etxt.exe")
	}
	addr := func(k uint64) netip.Addr {
		if spec.ipv6 {
			var b [16]byte
			copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8})
			binary.BigEndian.PutUint16(b[6:], uint16(k%7))
			binary.BigEndian.PutUint64(b[8:], k*2654435761+1)
			return netip.AddrFrom16(b)
		}
		nets := [][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
		n := nets[k%3]
		return netip.AddrFrom4([4]byte{n[0], n[1], n[2] + byte(k/3/250%3), byte(k/3%250 + 1)})
	}
	var out []genRec
	sensors := []string{"edge-1", "edge-2"}
	for i := range spec.n {
		t := genStart.Add(time.Duration(rnd.Int64N(int64(spec.span))))
		src := addr(srcZipf.Uint64())
		port := ports[zipf.Uint64()]
		if rnd.IntN(10) == 0 {
			port = uint16(1024 + rnd.IntN(60000))
		}
		g := genRec{sensor: sensors[rnd.IntN(len(sensors))]}
		r := &g.r
		r.Kind, r.Time = record.KindConnection, t
		r.SessionID = uuid.UUID(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(i)), spec.seed))
		r.Source = netip.AddrPortFrom(src, uint16(32768+rnd.IntN(28000)))
		dst := netip.MustParseAddr("198.51.100.2")
		if spec.ipv6 {
			dst = netip.MustParseAddr("2001:db8:5be::2")
		}
		r.Destination = netip.AddrPortFrom(dst, port)
		r.Close = record.CloseEOF
		r.Duration = time.Duration(rnd.IntN(5000)) * time.Millisecond
		switch k := rnd.IntN(100); {
		case k < 40: // silent
			r.Close = record.CloseTimeout
			if rnd.IntN(50) == 0 {
				r.Close = record.CloseOverload
			}
		case k < 65:
			p, u := paths[rnd.IntN(len(paths))], uas[rnd.IntN(len(uas))]
			r.Payload = []byte("GET " + p + " HTTP/1.1\r\nHost: 198.51.100.2\r\nUser-Agent: " + u + "\r\n\r\n")
			g.extra = []kv{{keyProtocol, "http"}, {"http_method", "GET"}, {keyHTTPPath, p}, {keyHTTPUserAgent, u}}
		case k < 78:
			sni, ja4 := snis[rnd.IntN(len(snis))], ja4s[rnd.IntN(len(ja4s))]
			r.Payload = append([]byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}, sni...)
			g.extra = []kv{{keyProtocol, "tls"}, {keyTLSSNI, sni}, {keyJA4, ja4}}
		case k < 88:
			b := banners[rnd.IntN(len(banners))]
			r.Payload = []byte(b + "\r\n")
			g.extra = []kv{{keyProtocol, "ssh"}, {keySSHBanner, b}}
		case k < 94:
			r.Payload = []byte("*1\r\n$4\r\nPING\r\n")
		default:
			r.Payload = []byte{0x00, 0x00, 0x00, 0x54, 0xff, 0x53, 0x4d, 0x42, 0x72, byte(rnd.IntN(4))}
			if spec.hostile && rnd.IntN(2) == 0 {
				r.Payload = []byte("\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[6n\x9b31m\u202e")
			}
		}
		if spec.big > 0 && i%spec.big == 0 {
			r.Payload = bytes.Repeat([]byte("A"), 4096)
			r.Truncated = true
			g.extra = nil
		}
		r.BytesReceived = uint64(len(r.Payload))
		out = append(out, g)
	}
	if spec.events {
		ev := func(k record.Kind, off time.Duration, msg string, f ...record.Field) {
			out = append(out, genRec{sensor: "edge-1", r: record.Record{Kind: k, Time: genStart.Add(off), Message: msg, Fields: f}})
		}
		ev(record.KindStarted, 0, "spip started")
		ev(record.KindSummary, 10*time.Minute, "journald sink lost 39 records", record.Str(record.KeySink, "journald"), record.Int(record.KeyDropped, 39), record.Int(record.KeyDroppedTotal, 39))
		ev(record.KindSummary, 11*time.Minute, "suppressed", record.Int(record.KeyOverloadTotal, 3), record.Int(record.KeyRateLimited, 120), record.Int(record.KeyRateLimitedTotal, 120),
			record.Int(record.KeyUDPDropped, 5), record.Int(record.KeyUDPDroppedTotal, 5))
		ev(record.KindWarning, 12*time.Minute, "json sink failing: write: no space left on device", record.Str(record.KeySink, "json"))
		if spec.hostile {
			ev(record.KindWarning, 13*time.Minute, "json sink failing: \x1b[2J\x1b]0;pwned\x07 cleared")
		}
	}
	// In time order, as a sensor writes them (journalctl's --since seeks on that order).
	slices.SortStableFunc(out, func(a, b genRec) int { return a.r.Time.Compare(b.r.Time) })
	return out
}

// jsonLines encodes recs as the JSON mirror does.
func jsonLines(recs []genRec) []byte {
	var b []byte
	for i := range recs {
		g := &recs[i]
		start := len(b)
		b = record.NewEncoder(g.sensor).AppendJSON(b, &g.r)
		if len(g.extra) > 0 {
			line := b[start : len(b)-2] // without "}\n"
			var add []byte
			for _, e := range g.extra {
				add = append(add, ',')
				add = record.AppendJSONString(add, []byte(e.k))
				add = append(add, ':')
				add = record.AppendJSONString(add, []byte(e.v))
			}
			b = append(append(append(b[:start], line...), add...), "}\n"...)
		}
	}
	return b
}

// exportStream encodes recs as `journalctl -o export` prints them: journald's native fields,
// the trusted ones journalctl adds, a blank line after each entry.
func exportStream(recs []genRec) []byte {
	var b []byte
	for i := range recs {
		g := &recs[i]
		b = append(b, "__CURSOR=s=0;i="+strconv.Itoa(i)+"\n__REALTIME_TIMESTAMP="+strconv.FormatInt(g.r.Time.UnixMicro(), 10)+
			"\n__MONOTONIC_TIMESTAMP="+strconv.Itoa(i+1)+"\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_PID=1\n"...)
		b = record.NewEncoder(g.sensor).AppendJournal(b, &g.r)
		for _, e := range g.extra {
			b = appendExportField(b, e.k.JournalName(), e.v)
		}
		b = append(b, '\n')
	}
	return b
}

func appendExportField(b []byte, name, v string) []byte {
	if !bytes.ContainsRune([]byte(v), '\n') {
		return fmt.Appendf(b, "%s=%s\n", name, v)
	}
	b = append(b, name+"\n"...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	return append(append(b, v...), '\n')
}
