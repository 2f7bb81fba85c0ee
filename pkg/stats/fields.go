package stats

import "spip/pkg/record"

// slot is one record field the report reads. A record is read into an array of raw values,
// one per slot, by either decoder; nothing else of a record is kept.
type slot uint8

const (
	sEvent slot = iota
	sTimestamp
	sSensor
	sTransport
	sSourceIP
	sDestinationPort
	sPayload
	sPayloadHex
	sBytesReceived
	sCloseReason
	sProtocol
	sTLSSNI
	sJA4
	sHTTPPath
	sHTTPUserAgent
	sSSHBanner
	sSink
	sDropped
	sRateLimited
	sUDPDropped
	sMessage
	sRealtime // journald's __REALTIME_TIMESTAMP (µs), when SPIP_TIMESTAMP is missing
	nSlots
)

// Keys of the protocol fields (pkg/protocol), read by name so that stats works on records with
// and without them.
const (
	keyProtocol      = record.KeyProtocol
	keyTLSSNI        = record.KeyTLSSNI
	keyJA4           = record.KeyJA4
	keyHTTPPath      = record.KeyHTTPPath
	keyHTTPUserAgent = record.KeyHTTPUserAgent
	keySSHBanner     = record.KeySSHBanner
)

var slotKeys = [nSlots]record.Key{
	sEvent:           record.KeyEvent,
	sTimestamp:       record.KeyTimestamp,
	sSensor:          record.KeySensor,
	sTransport:       record.KeyTransport,
	sSourceIP:        record.KeySourceIP,
	sDestinationPort: record.KeyDestinationPort,
	sPayload:         record.KeyPayload,
	sPayloadHex:      record.KeyPayloadHex,
	sBytesReceived:   record.KeyBytesReceived,
	sCloseReason:     record.KeyCloseReason,
	sProtocol:        keyProtocol,
	sTLSSNI:          keyTLSSNI,
	sJA4:             keyJA4,
	sHTTPPath:        keyHTTPPath,
	sHTTPUserAgent:   keyHTTPUserAgent,
	sSSHBanner:       keySSHBanner,
	sSink:            record.KeySink,
	sDropped:         record.KeyDropped,
	sRateLimited:     record.KeyRateLimited,
	sUDPDropped:      record.KeyUDPDropped,
	sMessage:         record.KeyMessage,
}

// jsonSlots and journalSlots map a field name of each encoding to its slot.
var jsonSlots, journalSlots = func() (map[string]slot, map[string]slot) {
	js, jn := map[string]slot{}, map[string]slot{}
	for s, k := range slotKeys {
		if k == "" {
			continue
		}
		js[string(k)] = slot(s)
		jn[k.JournalName()] = slot(s)
	}
	delete(jn, record.KeyMessage.JournalName())
	jn["MESSAGE"] = sMessage
	jn["__REALTIME_TIMESTAMP"] = sRealtime
	return js, jn
}()

// slotIndex finds a field name's slot without hashing the whole name: a table indexed by the
// name's length and its first and last bytes, checked by one comparison. Names that share a
// place in it go through the map instead.
type slotIndex struct {
	names map[string]slot
	place [1024]int16 // slot+1; 0 none; -1 shared
	keys  [nSlots]string
}

func newSlotIndex(names map[string]slot) *slotIndex {
	x := &slotIndex{names: names}
	for name, s := range names { // one name per slot
		if i := placeOf(name); x.place[i] == 0 {
			x.place[i] = int16(s) + 1
			x.keys[s] = name
		} else {
			x.place[i] = -1
		}
	}
	return x
}

func placeOf[T string | []byte](name T) int {
	n := len(name)
	if n == 0 {
		return 0
	}
	return (n*61 + int(name[0])*7 + int(name[n-1])) & 1023
}

func (x *slotIndex) lookup(name []byte) (slot, bool) {
	if len(name) == 0 {
		return 0, false
	}
	switch p := x.place[placeOf(name)]; {
	case p == 0:
		return 0, false
	case p > 0:
		s := slot(p - 1)
		return s, x.keys[s] == string(name)
	}
	s, ok := x.names[string(name)]
	return s, ok
}

// ecsSlots maps the dotted ECS names of the slots' fields (record.Fields) to the slots, for a
// mirror written with output.json_format = "ecs".
var ecsSlots = func() map[string]slot {
	m := map[string]slot{}
	for _, f := range record.Fields {
		if s, ok := jsonSlots[string(f.Key)]; ok && f.ECS != "" {
			m[f.ECS] = s
		}
	}
	return m
}()

var jsonIndex, journalIndex = newSlotIndex(jsonSlots), newSlotIndex(journalSlots)

// raw is one record as read: the value of each slot, nil when absent. Values point into the
// buffer of the batch that holds the record.
type raw [nSlots][]byte
