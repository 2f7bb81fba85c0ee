package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"

	"spip/pkg/record"
	"spip/pkg/sink/journald"
)

// journalFlood writes n connection records the way spip's journald sink encodes them straight
// to journald's socket, as fast as journald takes them: the send blocks when journald's socket
// is full, so nothing is lost and the time it takes is journald's ingest rate for spip's
// entries. The payloads carry tag and the sequence number, as the connections' do.
func journalFlood(n int, tag, sensor string) (Result, error) {
	res := Result{Mode: "journal", Attempted: n}
	w, err := journald.Dial(journald.SocketPath, 0)
	if err != nil {
		return res, err
	}
	defer w.Close()
	enc := record.NewEncoder(sensor)
	src := netip.MustParseAddr("198.51.100.7")
	dst := netip.MustParseAddr("203.0.113.9")
	var buf, payload []byte
	start := time.Now()
	cpu0 := cpuSeconds()
	for i := 0; i < n; i++ {
		port := uint16(1 + i%65535)
		payload = payloadTo(payload[:0], tag, i, port, 40000+i%20000)
		r := record.Record{Kind: record.KindConnection, Time: time.Now(), SessionID: uuid.Must(uuid.NewV7()),
			Source: netip.AddrPortFrom(src, uint16(40000+i%20000)), Destination: netip.AddrPortFrom(dst, port),
			Payload: payload, BytesReceived: uint64(len(payload)), Duration: time.Millisecond}
		buf = enc.AppendJournal(buf[:0], &r)
		if err := w.Write(buf); err != nil {
			return res, fmt.Errorf("entry %d: %w", i, err)
		}
		res.Connected++
	}
	res.GenCPU = cpuSeconds() - cpu0
	res.SendSeconds = time.Since(start).Seconds()
	res.OfferedRate = float64(n) / res.SendSeconds
	return res, nil
}
