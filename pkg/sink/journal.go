package sink

import (
	"errors"
	"time"

	"spip/pkg/record"
	"spip/pkg/sink/journald"
)

// journalSendTimeout bounds one attempt to hand journald an entry. While journald is stalled the
// writer retries the same entry, the queue fills, and the accept loop sees only counted drops.
const journalSendTimeout = 250 * time.Millisecond

type journal struct {
	w    *journald.Writer
	enc  *record.Encoder
	buf  []byte
	stop <-chan struct{}
	// stalled reports a stall as it begins, so STATUS= shows it while it lasts, and beat
	// proves the writer alive on every retry.
	stalled func(error)
	beat    func()
	// last is the outcome of the batch's last send, which flush reports: a sink whose every
	// send fails must stay faulty, not flap to "recovered" after each batch (its own warnings
	// about the fault would keep it flapping forever).
	last error
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
	j.stalled = s.result
	j.beat = func() { s.beats.Add(1) }
	return s, nil
}

func (j *journal) put(r *record.Record) (bool, error) {
	ok, err := j.send(r)
	j.last = err
	return ok, err
}

func (j *journal) send(r *record.Record) (bool, error) {
	j.buf = j.enc.AppendJournal(j.buf[:0], r)
	for stalls := 0; ; stalls++ {
		err := j.w.Write(j.buf)
		if err == nil {
			// The next flush reports the recovery.
			return true, nil
		}
		if !errors.Is(err, journald.ErrTimeout) {
			return false, err
		}
		// Stalled: keep the entry and try again, unless spip is stopping. Report the stall
		// once, now: it may last minutes.
		if stalls == 0 {
			j.stalled(err)
		}
		j.beat()
		select {
		case <-j.stop:
			return false, err
		default:
		}
	}
}

func (j *journal) flush() (int, error) { return 0, j.last }
func (j *journal) check() error        { return nil }
func (j *journal) reopen() error       { return nil }
func (j *journal) close() error        { return j.w.Close() }
