package record

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Format is how the JSON mirror writes records: spip's own flat keys (the original's), or
// Elastic Common Schema.
type Format uint8

// Formats.
const (
	FormatSpip Format = iota
	FormatECS
)

// ParseFormat reads output.json_format.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "spip", "":
		return FormatSpip, nil
	case "ecs":
		return FormatECS, nil
	}
	return 0, fmt.Errorf("json format %q: want spip or ecs", s)
}

func (f Format) String() string {
	if f == FormatECS {
		return "ecs"
	}
	return "spip"
}

// ECSVersion is the ECS release whose field definitions the ECS form follows; they are kept,
// with their source, in testdata/ecs and checked by the tests.
const ECSVersion = "8.17.0"

// ECSField is one field of the ECS form: a row of Fields under its ECS name, or a fact the ECS
// form adds that spip's own keys do not spell out (event.kind, related.ip, observer.type …).
type ECSField struct {
	Name, Type string
	Row        *FieldDef // nil for an added field
	// Doc says what an added field holds.
	Doc string

	path  []string
	order int
	value func(b []byte, r *Record, e *Encoder) ([]byte, bool) // added fields and value overrides
}

// Path is the name split at its dots.
func (f *ECSField) Path() []string { return f.path }

// constant is the value of a field that is the same JSON in every record.
func constant(json string) func([]byte, *Record, *Encoder) ([]byte, bool) {
	return func(b []byte, _ *Record, _ *Encoder) ([]byte, bool) { return append(b, json...), true }
}

// ecsAdded are the ECS form's own fields. Each is an ECS field (the tests check the name and type
// against Elastic's definitions); category and type pairs are ones ECS expects.
var ecsAdded = []ECSField{
	{Name: "ecs.version", Type: "keyword", Doc: "the ECS release the record follows",
		value: constant(`"` + ECSVersion + `"`)},
	{Name: "event.kind", Type: "keyword", Doc: "`event`",
		value: constant(`"event"`)},
	{Name: "event.category", Type: "keyword", Doc: "connections `[network]`; spip's own events `[process]`",
		value: func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
			return append(b, ecsCategorization[r.Kind].category...), true
		}},
	{Name: "event.type", Type: "keyword", Doc: "connections `[connection, end]` (written when it ended); started `[start]`, stopping `[end]`, summary and warning `[info]`",
		value: func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
			return append(b, ecsCategorization[r.Kind].typ...), true
		}},
	{Name: "event.module", Type: "keyword", Doc: "`spip`",
		value: constant(`"spip"`)},
	{Name: "event.dataset", Type: "keyword", Doc: "`spip.connections`, the data stream's dataset",
		value: constant(`"spip.connections"`)},
	{Name: "log.level", Type: "keyword", Doc: "the journald priority's name: `info` (connections), `notice`, `warning`",
		value: func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
			return append(append(append(b, '"'), r.Priority().String()...), '"'), true
		}},
	{Name: "network.type", Type: "keyword", Doc: "`ipv4` or `ipv6`, of the source address (IPv4-mapped counts as IPv4)",
		value: func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
			if r.Kind != KindConnection || !r.Source.IsValid() {
				return b, false
			}
			if r.Source.Addr().Unmap().Is4() {
				return append(b, `"ipv4"`...), true
			}
			return append(b, `"ipv6"`...), true
		}},
	{Name: "related.ip", Type: "ip", Doc: "the source and the original destination address",
		value: func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
			if r.Kind != KindConnection || !r.Source.IsValid() {
				return b, false
			}
			src := r.Source.Addr().Unmap()
			b = append(src.AppendTo(append(b, `["`...)), '"')
			if r.Destination.IsValid() && r.Destination.Addr().Unmap() != src {
				b = append(r.Destination.Addr().Unmap().AppendTo(append(b, `,"`...)), '"')
			}
			return append(b, ']'), true
		}},
	{Name: "observer.hostname", Type: "keyword", Doc: "the host name of the machine spip runs on",
		value: func(b []byte, _ *Record, e *Encoder) ([]byte, bool) {
			if e.hostname == "" {
				return b, false
			}
			return AppendJSONText(b, e.hostname), true
		}},
	{Name: "observer.type", Type: "keyword", Doc: "`sensor`",
		value: constant(`"sensor"`)},
	{Name: "observer.vendor", Type: "keyword", Doc: "`spip`",
		value: constant(`"spip"`)},
	{Name: "observer.product", Type: "keyword", Doc: "`spip`",
		value: constant(`"spip"`)},
}

// ecsCategorization is event.category and event.type per record kind, as JSON arrays. ECS lists
// the types it expects with each category (tests/ecs: allowed_values.json); every pair here is
// one of them. intrusion_detection is not used: it expects allowed, denied or info, and a
// record says a connection happened, not that a detection rule fired.
var ecsCategorization = [...]struct{ category, typ string }{
	KindConnection: {`["network"]`, `["connection","end"]`},
	KindStarted:    {`["process"]`, `["start"]`},
	KindStopping:   {`["process"]`, `["end"]`},
	KindSummary:    {`["process"]`, `["info"]`},
	KindWarning:    {`["process"]`, `["info"]`},
}

// ecsValue overrides how a row's value is written where ECS wants another unit.
var ecsValue = map[string]func(b []byte, r *Record, e *Encoder) ([]byte, bool){
	// ECS durations are nanoseconds; duration_ms is milliseconds.
	"event.duration": func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
		return strconv.AppendInt(b, r.Duration.Nanoseconds(), 10), r.Kind == KindConnection
	},
	// Unknown original destination (destination_error says why): no destination at all, rather
	// than an empty address an ip field rejects.
	"destination.ip": func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
		if !r.Destination.IsValid() {
			return b, false
		}
		return append(r.Destination.Addr().Unmap().AppendTo(append(b, '"')), '"'), true
	},
	"destination.port": func(b []byte, r *Record, _ *Encoder) ([]byte, bool) {
		return strconv.AppendUint(b, uint64(r.Destination.Port()), 10), r.Destination.IsValid()
	},
	"tls.version": ecsConverted(KeyTLSVersion, func(v string) (string, bool) { v, _ = tlsVersion(v); return v, v != "" }),
	"tls.version_protocol": ecsConverted(KeyTLSVersion, func(v string) (string, bool) {
		_, p := tlsVersion(v)
		return p, true
	}),
	"url.domain": ecsConverted(KeyHTTPHost, urlDomain),
	"url.path":   ecsConverted(KeyHTTPPath, urlPath),
	// The message is spip's own summary line for every record, as journald's MESSAGE is.
	"message": func(b []byte, r *Record, e *Encoder) ([]byte, bool) {
		var m [160]byte
		return AppendJSONString(b, appendMessage(m[:0], r)), true
	},
}

// ecsAlso are second ECS names for a row's value, where ECS spells the same fact twice or
// splits it; those with an entry in ecsValue are converted from the row's value.
var ecsAlso = map[string][]string{
	"tls.client.server_name": {"destination.domain"},
	"network.packets":        {"source.packets"}, // UDP datagrams: spip never answers, so all are the source's
	"spip.tls_version":       {"tls.version", "tls.version_protocol"},
	"spip.http_host":         {"url.domain"},
	"url.original":           {"url.path"},
}

// rowText reads a connection row's value as text, and whether the record carries it.
func rowText(k Key, r *Record, e *Encoder) (string, bool) {
	f := fieldIndex[k]
	if f == nil || r.Kind != KindConnection || !f.present(r, e) {
		return "", false
	}
	switch {
	case f.text != nil:
		return f.text(r, e), true
	case f.raw != nil:
		return string(f.raw(r)), true
	case f.safe != nil:
		return string(f.safe(nil, r)), true
	}
	return "", false
}

// ecsConverted writes a value made from a row's text; conv says whether there is one.
func ecsConverted(k Key, conv func(string) (string, bool)) func(b []byte, r *Record, e *Encoder) ([]byte, bool) {
	return func(b []byte, r *Record, e *Encoder) ([]byte, bool) {
		v, ok := rowText(k, r, e)
		if !ok {
			return b, false
		}
		if v, ok = conv(v); !ok {
			return b, false
		}
		return AppendJSONText(b, v), true
	}
}

// tlsVersion splits spip's "1.3" / "ssl3.0" into ECS's tls.version and tls.version_protocol.
func tlsVersion(v string) (version, protocol string) {
	if rest, ok := strings.CutPrefix(v, "ssl"); ok {
		return rest, "ssl"
	}
	return v, "tls"
}

// urlDomain is the Host header without a port (and an IPv6 literal without brackets).
func urlDomain(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host, host != ""
}

// urlPath is the path of an origin-form request target ("/a/b?q" → "/a/b"); other forms
// ("*", an absolute URL, garbage) have none that spip vouches for.
func urlPath(target string) (string, bool) {
	if !strings.HasPrefix(target, "/") {
		return "", false
	}
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	return target, true
}

// ECSFields is the ECS form's schema: every row of Fields under its ECS name, its second names,
// and the added fields, in the order the ECS form writes them (sorted by path, so each object's
// members are written together).
var ECSFields []*ECSField

// ecsIndex finds a row's ECS fields (itself and its second names) by key.
var ecsIndex = map[Key][]*ECSField{}

func init() {
	for i := range Fields {
		row := &Fields[i]
		names := append([]string{row.ECS}, ecsAlso[row.ECS]...)
		for _, n := range names {
			f := &ECSField{Name: n, Type: row.ECSType, Row: row, value: ecsValue[n]}
			ECSFields = append(ECSFields, f)
			ecsIndex[row.Key] = append(ecsIndex[row.Key], f)
		}
	}
	for i := range ecsAdded {
		ECSFields = append(ECSFields, &ecsAdded[i])
	}
	for _, f := range ECSFields {
		f.path = strings.Split(f.Name, ".")
	}
	slices.SortStableFunc(ECSFields, func(a, b *ECSField) int { return slices.Compare(a.path, b.path) })
	for i, f := range ECSFields {
		f.order = i
	}
}

// AppendECS appends r as one ECS document (nested JSON objects) and a newline.
func (e *Encoder) AppendECS(b []byte, r *Record) []byte {
	var buf [64]*ECSField
	fields := buf[:0]
	var own [16]ecsOwn
	owns := own[:0]
	for _, f := range ECSFields {
		switch {
		case f.Row == nil, f.Row.Key == KeyMessage:
			fields = append(fields, f)
		case r.Kind == KindConnection:
			if f.Row.Scope&ScopeConnection != 0 && f.Row.present(r, e) {
				fields = append(fields, f)
			}
		case eventCommon(f.Row.Key):
			fields = append(fields, f)
		}
	}
	if r.Kind != KindConnection {
		for i := range r.Fields {
			for _, f := range ecsIndex[r.Fields[i].Key] {
				fields = append(fields, f)
				owns = append(owns, ecsOwn{f, &r.Fields[i]})
			}
		}
		slices.SortStableFunc(fields, func(a, b *ECSField) int { return a.order - b.order })
	}

	// The values first, so an object is opened only when one of its members has a value.
	var scratch [2048]byte
	vals := scratch[:0]
	var spans [64]struct {
		f          *ECSField
		start, end int
	}
	present := spans[:0]
	for _, f := range fields {
		start := len(vals)
		var ok bool
		if vals, ok = e.appendECSValue(vals, f, r, owns); ok {
			present = append(present, struct {
				f          *ECSField
				start, end int
			}{f, start, len(vals)})
		} else {
			vals = vals[:start]
		}
	}

	var openBuf [8]string
	open := openBuf[:0] // the objects around the next member
	comma := false
	b = append(b, '{')
	for _, p := range present {
		path := p.f.path
		common := 0
		for common < len(open) && common < len(path)-1 && open[common] == path[common] {
			common++
		}
		for len(open) > common {
			b = append(b, '}')
			open = open[:len(open)-1]
		}
		if comma {
			b = append(b, ',')
		}
		for _, seg := range path[common : len(path)-1] {
			b = append(append(append(b, '"'), seg...), `":{`...)
			open = append(open, seg)
		}
		b = append(append(append(b, '"'), path[len(path)-1]...), `":`...)
		b = append(b, vals[p.start:p.end]...)
		comma = true
	}
	for range open {
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

type ecsOwn struct {
	f     *ECSField
	field *Field
}

// eventCommon reports whether every event record carries the row (as the spip form writes them).
func eventCommon(k Key) bool {
	return k == KeyTimestamp || k == KeyTime || k == KeyEvent || k == KeySensor
}

func (e *Encoder) appendECSValue(b []byte, f *ECSField, r *Record, owns []ecsOwn) ([]byte, bool) {
	if f.value != nil {
		return f.value(b, r, e)
	}
	for _, o := range owns {
		if o.f == f {
			if o.field.IsInt {
				return strconv.AppendInt(b, o.field.Int, 10), true
			}
			return AppendJSONText(b, o.field.Str), true
		}
	}
	return appendJSONValue(b, f.Row, r, e), true
}

// String is the priority's syslog name, as ECS log.level takes it.
func (p Priority) String() string {
	switch p {
	case PriWarning:
		return "warning"
	case PriNotice:
		return "notice"
	}
	return "info"
}
