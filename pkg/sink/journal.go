package sink

import (
	"errors"
	"time"

	"spip/pkg/record"
	"spip/pkg/sink/journald"
)

// journalSendTimeout bounds one attempt to hand journald a batch. While journald is stalled the
// writer retries the same entries, the queue fills, and the accept loop sees only counted drops.
const journalSendTimeout = 250 * time.Millisecond

// journalBatchBytes is the encoded size at which put sends what it holds without waiting for
// the flush; journald.MaxBatch entries are sent in one system call.
const journalBatchBytes = 1 << 20

type journal struct {
	w *journald.Writer
	// enc encodes into buf, one entry after the other; ends[i] is where entry i ends. The
	// batch goes out in flush (or once it holds MaxBatch entries or journalBatchBytes): one
	// sendmmsg for many datagrams, and no allocation per record.
	enc     *record.Encoder
	buf     []byte
	ends    []int
	entries [][]byte
	lost    int // entries of the batches sent since the last flush that journald did not get
	stop    <-chan struct{}
	// stalled reports a stall as it begins, so STATUS= shows it while it lasts, and beat
	// proves the writer alive on every retry.
	stalled func(error)
	beat    func()
	// last is the outcome of the last send, which flush reports: a sink whose every send
	// fails must stay faulty, not flap to "recovered" after each batch (its own warnings about
	// the fault would keep it flapping forever).
	last error
}

// NewJournal returns a sink writing native-protocol entries to the journald socket at path.
func NewJournal(path string, enc *record.Encoder, queueSize int) (*Sink, error) {
	w, err := journald.Dial(path, journalSendTimeout)
	if err != nil {
		return nil, err
	}
	j := &journal{w: w, enc: enc, buf: make([]byte, 0, journalBatchBytes+64<<10),
		ends: make([]int, 0, journald.MaxBatch), entries: make([][]byte, 0, journald.MaxBatch)}
	s := newSink("journald", j, queueSize)
	j.stop = s.done
	j.stalled = s.result
	j.beat = func() { s.beats.Add(1) }
	return s, nil
}

// put encodes r into the batch; a full batch is sent now. Entries are counted as written here
// and as lost, by flush, when their send fails.
func (j *journal) put(r *record.Record) (bool, error) {
	j.buf = j.enc.AppendJournal(j.buf, r)
	j.ends = append(j.ends, len(j.buf))
	if len(j.ends) == journald.MaxBatch || len(j.buf) >= journalBatchBytes {
		j.send()
	}
	return true, nil
}

// send hands the batch to journald and empties it. An entry the kernel refuses is lost and
// counted; a stall keeps the rest and tries again, unless spip is stopping.
func (j *journal) send() {
	if len(j.ends) == 0 {
		return
	}
	j.entries = j.entries[:0]
	start := 0
	for _, end := range j.ends {
		j.entries = append(j.entries, j.buf[start:end])
		start = end
	}
	rest := j.entries
	for stalls := 0; len(rest) > 0; {
		n, err := j.w.WriteBatch(rest)
		rest = rest[n:]
		j.last = err
		if err == nil {
			break // the next flush reports the recovery
		}
		if !errors.Is(err, journald.ErrTimeout) {
			// Refused (journald gone, an entry too large): this entry is lost, the next may pass.
			j.lost++
			rest = rest[1:]
			continue
		}
		// Stalled: keep the entries and try again, unless spip is stopping. Report the stall
		// once, now: it may last minutes.
		if stalls == 0 {
			j.stalled(err)
		}
		stalls++
		j.beat()
		select {
		case <-j.stop:
			j.lost += len(rest)
			rest = nil
		default:
		}
	}
	j.buf, j.ends = j.buf[:0], j.ends[:0]
	clear(j.entries) // keep no entry alive
}

func (j *journal) flush() (int, error) {
	j.send()
	lost := j.lost
	j.lost = 0
	return lost, j.last
}

func (j *journal) check() error  { return nil }
func (j *journal) reopen() error { return nil }
func (j *journal) close() error  { return j.w.Close() }

// interrupt has nothing to cut: every send to journald is bounded by the writer's send timeout.
func (j *journal) interrupt() {}
