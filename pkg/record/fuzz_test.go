package record

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
)

// FuzzRecord feeds arbitrary peer bytes through both encoders and the ECS form. Whatever a stranger sends, the
// JSON line stays one valid line with the payload encoding/json would give and an exact hex copy,
// and the journald entry has exactly the expected fields with SPIP_PAYLOAD byte for byte: no
// payload can add, hide or overwrite a field. Seeds live in testdata/fuzz/FuzzRecord.
func FuzzRecord(f *testing.F) {
	for _, s := range []string{
		"", "GET / HTTP/1.0\r\n\r\n", "\x00", "\n", "\nMESSAGE_ID=0ac47f5aa9004466bb382a7164e382ab\n",
		"_SYSTEMD_UNIT=x", "SPIP_SOURCE_IP=1.2.3.4\n", "\xff\xfe\xfd", "\u2028\u2029", "\"\\\x7f",
	} {
		f.Add([]byte(s))
	}
	for _, p := range []string{"../protocol/tls/testdata/clienthello/python_alpn.bin", "../protocol/ssh/testdata/ssh_openssh.bin", "../protocol/http/testdata/curl_http_ua.bin"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	enc := NewEncoder(testSensor)
	ecs := NewECSEncoder(testSensor, "vps-1")
	srcs := []netip.AddrPort{
		netip.MustParseAddrPort("203.0.113.7:40000"),
		netip.MustParseAddrPort("[::ffff:203.0.113.7]:40000"),
		netip.MustParseAddrPort("[2001:db8::7]:40000"),
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 1<<16 {
			payload = payload[:1<<16] // the largest payload cap
		}
		r := &Record{
			Kind:          KindConnection,
			Time:          testTime,
			SessionID:     testID,
			Source:        srcs[len(payload)%len(srcs)],
			Destination:   netip.MustParseAddrPort("198.51.100.2:23"),
			Payload:       payload,
			BytesReceived: uint64(len(payload)),
			Duration:      time.Second,
			Close:         CloseEOF,
		}
		// What the sensor adds: the protocol facts of these bytes and the Community ID.
		protocol.Identify(protocol.TCP, payload, &r.Facts)
		r.CommunityID = communityid.Hash(0, communityid.TCP, r.Source, r.Destination)
		if len(payload)%2 == 1 {
			r.Destination = netip.AddrPort{}
			r.CommunityID = ""
			r.DestError = "origdst: " + string(payload[:min(len(payload), 16)])
		}
		checkJSON(t, enc.AppendJSON(nil, r), r)
		checkECS(t, ecs.AppendJSON(nil, r), r)
		checkJournal(t, enc.AppendJournal(nil, r), r)
	})
}
