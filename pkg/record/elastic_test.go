package record

import (
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
)

// The ECS form and the files under packaging/elastic are made from ECSFields, which is made
// from Fields: a new row gets its ECS name, its mapping and its journald rename without anyone
// spelling it again. go test ./pkg/record -run TestElasticFiles -update rewrites the files;
// without -update the test fails when they differ from what the table makes.

const elasticDir = "../../packaging/elastic"

// ecsDefs reads Elastic's published field definitions (testdata/ecs/SOURCE.md): name → type.
func ecsDefs(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/ecs/fields.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	for _, r := range rows[1:] {
		if r[0] != ECSVersion {
			t.Fatalf("testdata/ecs/fields.csv is ECS %s, record.ECSVersion says %s", r[0], ECSVersion)
		}
		defs[r[2]] = r[3]
	}
	return defs
}

// TestECSNames: every ECS name is either Elastic's, with Elastic's type, or spip's own under
// spip.*, which ECS does not define; ECS names are never invented. Every row of the table has
// made its decision (an empty ECS name or type fails here and in TestFieldsTable).
func TestECSNames(t *testing.T) {
	defs := ecsDefs(t)
	for _, f := range ECSFields {
		if f.Name == "" || f.Type == "" {
			t.Errorf("%+v: no ECS name or type: every row must say where it goes in ECS", f)
			continue
		}
		if own, ok := strings.CutPrefix(f.Name, "spip."); ok {
			if _, clash := defs[f.Name]; clash || own == "" {
				t.Errorf("%s: spip's own name clashes with ECS", f.Name)
			}
			if f.Row != nil && own != string(f.Row.Key) {
				t.Errorf("%s: a spip.* name is spip. and the record key (%s)", f.Name, f.Row.Key)
			}
			continue
		}
		want, ok := defs[f.Name]
		switch {
		case !ok:
			t.Errorf("%s is not an ECS %s field: put spip's own facts under spip.*", f.Name, ECSVersion)
		case want != f.Type:
			t.Errorf("%s: type %s, ECS %s says %s", f.Name, f.Type, ECSVersion, want)
		}
	}
	// The row's JSON type must suit its Elasticsearch type.
	for _, f := range ECSFields {
		if f.Row == nil || ecsValue[f.Name] != nil {
			continue
		}
		ok := map[JSONType][]string{
			JSONInt:     {"long", "unsigned_long"},
			JSONBool:    {"boolean"},
			JSONString:  {"keyword", "wildcard", "match_only_text", "text", "ip", "date"},
			JSONStrings: {"keyword", "wildcard", "ip"},
		}[f.Row.Type]
		if !slices.Contains(ok, f.Type) {
			t.Errorf("%s (%s, JSON %s) cannot be mapped as %s", f.Name, f.Row.Key, f.Row.Type, f.Type)
		}
	}
}

// TestECSNoConflicts: one field per name, and no name is both a value and an object.
func TestECSNoConflicts(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range ECSFields {
		if seen[f.Name] {
			t.Errorf("%s: two fields write it", f.Name)
		}
		seen[f.Name] = true
	}
	for _, f := range ECSFields {
		for i := 1; i < len(f.path); i++ {
			if p := strings.Join(f.path[:i], "."); seen[p] {
				t.Errorf("%s is a value and an object (%s)", p, f.Name)
			}
		}
	}
}

// TestECSCategorization: event.kind, event.category and event.type take only values ECS allows,
// and every category is paired only with types ECS expects for it.
func TestECSCategorization(t *testing.T) {
	b, err := os.ReadFile("testdata/ecs/allowed_values.json")
	if err != nil {
		t.Fatal(err)
	}
	var allowed struct {
		Kind     []string            `json:"event.kind"`
		Type     []string            `json:"event.type"`
		Category map[string][]string `json:"event.category"`
	}
	if err := json.Unmarshal(b, &allowed); err != nil {
		t.Fatal(err)
	}
	enc := NewECSEncoder(testSensor, "vps-1")
	for _, c := range append(goldenCases(), udpCases()...) {
		doc := decodeECS(t, enc.AppendECS(nil, c.rec))
		ev := doc["event"].(map[string]any)
		if !slices.Contains(allowed.Kind, ev["kind"].(string)) {
			t.Errorf("%s: event.kind %v", c.name, ev["kind"])
		}
		for _, cat := range ev["category"].([]any) {
			expected, ok := allowed.Category[cat.(string)]
			if !ok {
				t.Errorf("%s: event.category %v is not an ECS category", c.name, cat)
			}
			for _, typ := range ev["type"].([]any) {
				if !slices.Contains(allowed.Type, typ.(string)) {
					t.Errorf("%s: event.type %v is not an ECS type", c.name, typ)
				}
				if !slices.Contains(expected, typ.(string)) {
					t.Errorf("%s: event.type %v is not one ECS expects with category %v (%v)", c.name, typ, cat, expected)
				}
			}
		}
	}
}

// TestECSGolden: each golden record's ECS form, compared byte for byte with testdata/*.ecs.json
// after its meaning is checked, and validated against the shipped index template's mappings:
// every field mapped (no dynamic field), every value of its mapped type, dates parse.
func TestECSGolden(t *testing.T) {
	mappings := shippedMappings(t, "index-template.json")
	enc := NewECSEncoder(testSensor, "vps-1")
	for _, c := range append(goldenCases(), udpCases()...) {
		t.Run(c.name, func(t *testing.T) {
			js := enc.AppendJSON(nil, c.rec)
			checkECS(t, js, c.rec)
			validateAgainst(t, mappings, decodeECS(t, js))
			compareGolden(t, filepath.Join("testdata", c.name+".ecs.json"), js)
		})
	}
	// The ECS encoder does not change the journal.
	r := goldenCases()[0].rec
	if !bytes.Equal(enc.AppendJournal(nil, r), NewEncoder(testSensor).AppendJournal(nil, r)) {
		t.Error("the ECS encoder's journald entry differs from the spip encoder's")
	}
}

// udpCases are UDP flows (issue 14's records), for the ECS form only: a DNS query sent three
// times and an NTP monlist request, with their facts as the dispatcher fills them.
func udpCases() []golden {
	udp := func(payload []byte, src, dst string, datagrams uint64) *Record {
		r := conn(payload, src, dst)
		r.Transport, r.Datagrams = UDP, datagrams
		protocol.Identify(protocol.UDP, r.Payload, &r.Facts)
		r.CommunityID = communityid.Hash(0, communityid.UDP, r.Source, r.Destination)
		return r
	}
	dnsQuery := []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0x00, 0xff, 0x00, 0x01}
	ntpMonlist := []byte{0x17, 0x00, 0x03, 0x2a, 0x00, 0x00, 0x00, 0x00}
	return []golden{
		{"udp_dns_any", udp(dnsQuery, "203.0.113.7:53000", "198.51.100.2:53", 3)},
		{"udp_ntp_monlist", udp(append(ntpMonlist, make([]byte, 40)...), "[2001:db8::7]:123", "[fd00:5be::2]:123", 1)},
	}
}

func decodeECS(t testing.TB, js []byte) map[string]any {
	t.Helper()
	if bytes.Count(js, []byte("\n")) != 1 || js[len(js)-1] != '\n' {
		t.Fatalf("not one line: %.200q", js)
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("not JSON: %v: %.300q", err, js)
	}
	return doc
}

// checkECS checks the ECS form says what the record says.
func checkECS(t testing.TB, js []byte, r *Record) {
	t.Helper()
	doc := decodeECS(t, js)
	get := func(path string) any {
		var v any = doc
		for _, seg := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[seg]
		}
		return v
	}
	if got := get("@timestamp"); got != string(appendTime(nil, r.Time)) {
		t.Errorf("@timestamp %v", got)
	}
	if got := get("event.action"); got != r.Kind.String() {
		t.Errorf("event.action %v, want %s", got, r.Kind)
	}
	if r.Kind != KindConnection {
		return
	}
	if got := get("spip.payload_hex"); got != hex.EncodeToString(r.Payload) {
		t.Errorf("spip.payload_hex %.80v", got)
	}
	if got := get("spip.payload"); got != string(bytes.ToValidUTF8(r.Payload, []byte("\uFFFD"))) && !invalidRunes(r.Payload) {
		t.Errorf("spip.payload %.80q", got)
	}
	if got := get("source.ip"); got != r.Source.Addr().Unmap().String() {
		t.Errorf("source.ip %v", got)
	}
	if got := get("event.id"); got != r.SessionID.String() {
		t.Errorf("event.id %v", got)
	}
	if got, _ := get("event.duration").(json.Number); got.String() != fmt.Sprint(r.Duration.Nanoseconds()) {
		t.Errorf("event.duration %v, want %d ns", got, r.Duration.Nanoseconds())
	}
	if r.Destination.IsValid() {
		if got := get("destination.ip"); got != r.Destination.Addr().Unmap().String() {
			t.Errorf("destination.ip %v", got)
		}
	} else if get("destination.ip") != nil || get("destination.port") != nil {
		t.Errorf("unknown destination written: %v", get("destination"))
	}
}

// invalidRunes: encoding/json and bytes.ToValidUTF8 replace invalid bytes differently (one
// U+FFFD per byte against one per run); the payload's exact check is in checkJSON.
func invalidRunes(p []byte) bool { return !bytes.Equal(bytes.ToValidUTF8(p, nil), p) }

// shippedMappings reads a shipped template's mappings as flat name → type.
func shippedMappings(t testing.TB, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(elasticDir, file))
	if err != nil {
		t.Fatalf("%v (go test ./pkg/record -run TestElasticFiles -update writes it)", err)
	}
	var tpl struct {
		Template struct {
			Mappings struct {
				Properties map[string]any `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	flat := map[string]string{}
	var walk func(prefix string, props map[string]any)
	walk = func(prefix string, props map[string]any) {
		for k, v := range props {
			m := v.(map[string]any)
			if sub, ok := m["properties"].(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			flat[prefix+k], _ = m["type"].(string)
		}
	}
	walk("", tpl.Template.Mappings.Properties)
	return flat
}

// validateAgainst checks a document as Elasticsearch would index it under these mappings.
func validateAgainst(t testing.TB, mappings map[string]string, doc map[string]any) {
	t.Helper()
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				walk(prefix+k+".", x)
			}
			return
		}
		name := strings.TrimSuffix(prefix, ".")
		typ, ok := mappings[name]
		if !ok {
			t.Errorf("%s is not mapped in the template", name)
			return
		}
		vals := []any{v}
		if a, ok := v.([]any); ok {
			vals = a
		}
		for _, x := range vals {
			if err := validValue(typ, x); err != nil {
				t.Errorf("%s (%s): %v", name, typ, err)
			}
		}
	}
	walk("", doc)
}

func validValue(typ string, v any) error {
	switch typ {
	case "keyword", "wildcard", "match_only_text", "text", "constant_keyword":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%T %v is not text", v, v)
		}
	case "ip":
		s, _ := v.(string)
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%q is not an address", s)
		}
	case "date":
		s, _ := v.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("%q is not a date: %v", s, err)
		}
	case "long":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%T %v is not a number", v, v)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Errorf("%v is not a long", n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%T %v is not a boolean", v, v)
		}
	default:
		return fmt.Errorf("no check for type %s", typ)
	}
	return nil
}

// shipperFields are what Filebeat or Elastic Agent add to a document, mapped too so they are
// searchable although the template maps nothing dynamically. Their types come from ECS.
var shipperFields = []string{
	"data_stream.type", "data_stream.dataset", "data_stream.namespace", "event.ingested",
	"agent.name", "agent.type", "agent.version", "agent.id", "agent.ephemeral_id",
	"host.name", "host.hostname", "log.file.path", "tags",
}

// mappingFor is one field's mapping. Keywords stop at 1024 characters: longer values (a
// stranger's Host header, SNI) stay in _source unindexed instead of making the document fail.
func mappingFor(typ string, opensearch bool) map[string]any {
	if opensearch {
		// OpenSearch before 2.15 has no wildcard, before 2.12 no match_only_text, and no
		// constant_keyword. A keyword above 8191 characters (32766 bytes in UTF-8) cannot be indexed.
		switch typ {
		case "wildcard":
			return map[string]any{"type": "keyword", "ignore_above": 8191}
		case "match_only_text":
			return map[string]any{"type": "text"}
		case "constant_keyword":
			typ = "keyword"
		}
	}
	if typ == "keyword" {
		return map[string]any{"type": "keyword", "ignore_above": 1024}
	}
	return map[string]any{"type": typ}
}

func templateProperties(t *testing.T, opensearch bool) map[string]any {
	defs := ecsDefs(t)
	props := map[string]any{}
	put := func(name, typ string) {
		m := props
		path := strings.Split(name, ".")
		for _, seg := range path[:len(path)-1] {
			sub, ok := m[seg].(map[string]any)
			if !ok {
				sub = map[string]any{"properties": map[string]any{}}
				m[seg] = sub
			}
			m = sub["properties"].(map[string]any)
		}
		m[path[len(path)-1]] = mappingFor(typ, opensearch)
	}
	for _, f := range ECSFields {
		put(f.Name, f.Type)
	}
	for _, n := range shipperFields {
		typ, ok := defs[n]
		if !ok {
			t.Fatalf("shipper field %s is not in ECS", n)
		}
		put(n, typ)
	}
	return props
}

func indexTemplate(t *testing.T, opensearch bool) map[string]any {
	settings := map[string]any{"index.default_pipeline": pipelineName}
	meta := map[string]any{
		"description": "spip connection records in Elastic Common Schema " + ECSVersion + ": made from spip's field table",
		"ecs_version": ECSVersion,
	}
	if opensearch {
		meta["description"] = "spip connection records (ECS " + ECSVersion + ") for OpenSearch: wildcard as keyword, match_only_text as text, constant_keyword as keyword"
	}
	return map[string]any{
		"index_patterns": []string{"logs-spip.connections-*"},
		"data_stream":    map[string]any{},
		// Above the built-in logs-*-* template's 100, so this one applies to spip's stream.
		"priority": 200,
		"_meta":    meta,
		"template": map[string]any{
			"settings": settings,
			"mappings": map[string]any{
				// Nothing is mapped by guess: a field spip does not know stays in _source, unindexed.
				"dynamic":        false,
				"date_detection": false,
				"properties":     templateProperties(t, opensearch),
			},
		},
	}
}

const pipelineName = "logs-spip.connections"

// A record read from the journal (Filebeat's or Elastic Agent's journald input: SPIP_X as
// journald.custom.spip_x) is marked first, since the renames remove what identified it, and the
// mark is the condition of every processor that turns it into the ECS form; a record from the
// JSON mirror in ECS form needs none of them.
const (
	journalMark  = "spip_from_journal"
	fromJournald = "ctx." + journalMark + " == true"
)

func ingestPipeline() map[string]any {
	var procs []map[string]any
	add := func(kind string, body map[string]any) {
		procs = append(procs, map[string]any{kind: body})
	}
	add("set", map[string]any{"if": "ctx.journald?.custom?.spip_event != null", "field": journalMark, "value": true})
	for _, f := range ECSFields {
		if f.Row == nil || f.Row.JSONOnly {
			continue
		}
		src := "journald.custom." + strings.ToLower(f.Row.Key.JournalName())
		switch {
		case f.Type == "date":
			add("date", map[string]any{"if": fromJournald + " && ctx.journald.custom." + strings.ToLower(f.Row.Key.JournalName()) + " != null",
				"field": src, "target_field": f.Name, "formats": []string{"ISO8601"}})
		case ecsAlso[f.Row.ECS] != nil || f.Name != f.Row.ECS:
			// A second name: copied from the first once that is in place (below).
		default:
			add("rename", map[string]any{"if": fromJournald, "field": src, "target_field": f.Name, "ignore_missing": true})
		}
		if f.Type == "long" || f.Type == "boolean" {
			add("convert", map[string]any{"if": fromJournald, "field": f.Name, "type": f.Type, "ignore_missing": true})
		}
	}
	for _, f := range ECSFields {
		if f.Row != nil && f.Name != f.Row.ECS && ecsValue[f.Name] == nil {
			add("set", map[string]any{"if": fromJournald + " && ctx." + strings.ReplaceAll(f.Row.ECS, ".", "?.") + " != null",
				"field": f.Name, "copy_from": f.Row.ECS})
		}
		if f.Type == "date" && f.Row != nil {
			add("remove", map[string]any{"if": fromJournald, "field": "journald.custom." + strings.ToLower(f.Row.Key.JournalName()), "ignore_missing": true})
		}
	}
	// What the ECS encoder adds or converts (ecsAdded, ecsValue), for records from the journal.
	add("script", map[string]any{"if": fromJournald, "lang": "painless", "source": journaldScript})
	add("remove", map[string]any{"field": journalMark, "ignore_missing": true})
	// Both inputs: when it arrived, and the session id as the document id, so a record sent
	// twice (systemd-journal-upload is at-least-once) is stored once per backing index.
	add("set", map[string]any{"field": "event.ingested", "value": "{{{_ingest.timestamp}}}"})
	add("set", map[string]any{"if": "ctx.event?.id != null", "field": "_id", "value": "{{{event.id}}}"})
	return map[string]any{
		"description": "spip: records from the JSON mirror in ECS form pass through; records from the journal get their ECS names (made from spip's field table)",
		"processors":  procs,
		"_meta":       map[string]any{"ecs_version": ECSVersion},
	}
}

// journaldScript does in the pipeline what AppendECS does in spip, for records from the journal.
var journaldScript = strings.Join([]string{
	`ctx.ecs = ['version': '` + ECSVersion + `'];`,
	`if (ctx.event == null) { ctx.event = [:]; }`,
	`String a = ctx.event.action;`,
	`ctx.event.kind = 'event'; ctx.event.module = 'spip'; ctx.event.dataset = 'spip.connections';`,
	`ctx.event.category = a == 'connection' ? ['network'] : ['process'];`,
	`ctx.event.type = a == 'connection' ? ['connection', 'end'] : a == 'started' ? ['start'] : a == 'stopping' ? ['end'] : ['info'];`,
	`if (ctx.event.duration != null) { ctx.event.duration = ((Number) ctx.event.duration).longValue() * 1000000L; }`,
	`if (ctx.observer == null) { ctx.observer = [:]; }`,
	`ctx.observer.type = 'sensor'; ctx.observer.vendor = 'spip'; ctx.observer.product = 'spip';`,
	`if (ctx.host?.hostname != null) { ctx.observer.hostname = ctx.host.hostname; }`,
	`if (ctx.destination?.ip == '') { ctx.remove('destination'); }`,
	// journalctl prints a value that is not UTF-8 as an array of bytes; spip.payload_hex has them.
	`if (ctx.spip?.payload instanceof List) { ctx.spip.remove('payload'); }`,
	// The second names converted from a row's value (ecsAlso with an ecsValue entry).
	`if (ctx.spip?.tls_version != null) {`,
	`  String v = ctx.spip.tls_version; ctx.tls = ctx.tls == null ? [:] : ctx.tls;`,
	`  if (v.startsWith('ssl')) { ctx.tls.version = v.substring(3); ctx.tls.version_protocol = 'ssl'; } else { ctx.tls.version = v; ctx.tls.version_protocol = 'tls'; }`,
	`}`,
	`if (ctx.spip?.http_host != null && ctx.spip.http_host != '') {`,
	`  String h = ctx.spip.http_host; int c = h.lastIndexOf(':');`,
	`  if (h.startsWith('[') && h.indexOf(']') > 0) { h = h.substring(1, h.indexOf(']')); } else if (c > 0 && c == h.indexOf(':')) { h = h.substring(0, c); }`,
	`  ctx.url = ctx.url == null ? [:] : ctx.url; ctx.url.domain = h;`,
	`}`,
	`if (ctx.url?.original != null && ctx.url.original.startsWith('/')) {`,
	`  String p = ctx.url.original; int q = p.indexOf('?'); int f = p.indexOf('#');`,
	`  int end = q < 0 ? f : (f < 0 ? q : Math.min(q, f)); ctx.url.path = end < 0 ? p : p.substring(0, end);`,
	`}`,
	`if (ctx.source?.ip != null) {`,
	`  ctx.network = ctx.network == null ? [:] : ctx.network;`,
	`  ctx.network.type = ctx.source.ip.contains(':') ? 'ipv6' : 'ipv4';`,
	`  ctx.related = ['ip': ctx.destination?.ip != null && ctx.destination.ip != ctx.source.ip ? [ctx.source.ip, ctx.destination.ip] : [ctx.source.ip]];`,
	`}`,
}, "\n")

func marshalIndent(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestElasticFiles: the shipped template (and its OpenSearch form) and pipeline are what the
// table makes, and have the shape Elasticsearch's _index_template and _ingest/pipeline APIs take.
func TestElasticFiles(t *testing.T) {
	files := map[string]any{
		"index-template.json":            indexTemplate(t, false),
		"index-template.opensearch.json": indexTemplate(t, true),
		"ingest-pipeline.json":           ingestPipeline(),
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		got := marshalIndent(t, files[n])
		compareGolden(t, filepath.Join(elasticDir, n), got)
	}
	for _, n := range []string{"index-template.json", "index-template.opensearch.json"} {
		checkTemplateShape(t, n)
	}
	checkPipelineShape(t)
}

// checkTemplateShape checks the body of PUT _index_template/<name> (Elasticsearch 8.x).
func checkTemplateShape(t *testing.T, file string) {
	b, err := os.ReadFile(filepath.Join(elasticDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var tpl map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&tpl); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	top := []string{"index_patterns", "composed_of", "template", "priority", "version", "_meta", "data_stream",
		"allow_auto_create", "ignore_missing_component_templates", "deprecated"}
	for k := range tpl {
		if !slices.Contains(top, k) {
			t.Errorf("%s: %q is not a key of an index template", file, k)
		}
	}
	if p, _ := tpl["index_patterns"].([]any); len(p) != 1 || p[0] != "logs-spip.connections-*" {
		t.Errorf("%s: index_patterns %v", file, tpl["index_patterns"])
	}
	if _, ok := tpl["data_stream"].(map[string]any); !ok {
		t.Errorf("%s: no data_stream object", file)
	}
	if n, _ := tpl["priority"].(json.Number).Int64(); n <= 100 {
		t.Errorf("%s: priority %d, must be above the built-in logs template's 100", file, n)
	}
	inner, _ := tpl["template"].(map[string]any)
	for k := range inner {
		if !slices.Contains([]string{"settings", "mappings", "aliases", "lifecycle", "data_stream_options"}, k) {
			t.Errorf("%s: template.%s is not a key of an index template's template", file, k)
		}
	}
	known := []string{"keyword", "wildcard", "match_only_text", "text", "long", "ip", "date", "boolean", "constant_keyword"}
	if strings.Contains(file, "opensearch") {
		known = []string{"keyword", "text", "long", "ip", "date", "boolean"}
	}
	for name, typ := range shippedMappings(t, file) {
		if !slices.Contains(known, typ) {
			t.Errorf("%s: %s has type %q", file, name, typ)
		}
	}
}

// checkPipelineShape checks the body of PUT _ingest/pipeline/<name>: built-in processors only
// (no plugin), and every field it writes is one the template maps.
func checkPipelineShape(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(elasticDir, "ingest-pipeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Description string                      `json:"description"`
		Processors  []map[string]map[string]any `json:"processors"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&struct {
		Description string                      `json:"description"`
		Processors  []map[string]map[string]any `json:"processors"`
		Meta        map[string]any              `json:"_meta"`
	}{}); err != nil {
		t.Fatalf("ingest-pipeline.json: %v", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	mapped := shippedMappings(t, "index-template.json")
	builtin := []string{"rename", "convert", "date", "set", "remove", "script"}
	for i, proc := range p.Processors {
		if len(proc) != 1 {
			t.Errorf("processor %d has %d kinds", i, len(proc))
		}
		for kind, body := range proc {
			if !slices.Contains(builtin, kind) {
				t.Errorf("processor %d: %s", i, kind)
			}
			for _, k := range []string{"target_field", "field"} {
				if kind == "remove" || (k == "field" && (kind == "rename" || kind == "date")) {
					continue
				}
				if f, ok := body[k].(string); ok && f != "_id" && f != journalMark {
					if _, ok := mapped[f]; !ok {
						t.Errorf("processor %d (%s) writes %s, which the template does not map", i, kind, f)
					}
				}
			}
		}
	}
}

// ecsTable is README's table of where each record key goes in the ECS form.
func ecsTable() string {
	var b strings.Builder
	b.WriteString("| JSON key | ECS field | type |\n|---|---|---|\n")
	for i := range Fields {
		f := &Fields[i]
		names := []string{"`" + f.ECS + "`"}
		for _, n := range ecsAlso[f.ECS] {
			names = append(names, "`"+n+"`")
		}
		note := ""
		if f.ECS == "event.duration" {
			note = " (nanoseconds)"
		}
		fmt.Fprintf(&b, "| `%s` | %s%s | %s |\n", f.Key, strings.Join(names, ", "), note, f.ECSType)
	}
	return b.String()
}

// TestECSDocTable: README's ECS table is made from the field table (-update rewrites it).
func TestECSDocTable(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := replaceBetween(t, old, "ecs-table", ecsTable())
	if bytes.Equal(doc, old) {
		return
	}
	if *update {
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md: its ECS table differs from record.Fields (go test ./pkg/record -run TestECSDocTable -update)")
}
