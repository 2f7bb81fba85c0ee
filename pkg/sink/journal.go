package sink

import (
	"errors"
	"time"

	"spip/pkg/journald"
	"spip/pkg/record"
)

// journalSendTimeout bounds one attempt to hand journald an entry. While journald is stalled the
// writer retries the same entry, the queue fills, and the accept loop sees only counted drops.
const journalSendTimeout = 250 * time.Millisecond

type journal struct {
	w    *journald.Writer
	enc  *record.Encoder
	buf  []byte
	stop <-chan struct{}
}

// NewJournal returns a sink writing native-protocol entries to the journald socket at path.
func NewJournal(path string, enc *record.Encoder, queueSize int) (*Sink, error) {
	w, err := journald.Dial(path, journalSendTimeout)
	if err != nil {
		return nil, err
	}
	j := &journal{w: w, enc: enc, buf: make([]byte, 0, 16<<10)}
	s := newSink("journald", j, queueSize)
	j.stop = s.done
	return s, nil
}

func (j *journal) put(r *record.Record) (bool, error) {
	j.buf = j.enc.AppendJournal(j.buf[:0], r)
	var stalled error
	for {
		err := j.w.Write(j.buf)
		if err == nil {
			return true, stalled
		}
		if !errors.Is(err, journald.ErrTimeout) {
			return false, err
		}
		// Stalled: keep the entry and try again, unless spip is stopping.
		stalled = err
		select {
		case <-j.stop:
			return false, err
		default:
		}
	}
}

func (j *journal) flush() (int, error) { return 0, nil }
func (j *journal) check() error        { return nil }
func (j *journal) reopen() error       { return nil }
func (j *journal) close() error        { return j.w.Close() }
