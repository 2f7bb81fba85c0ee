// Package sink delivers records to their outputs through bounded queues that drop and count, never block.
package sink

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"spip/pkg/record"
)

// backend is one output. put and flush run only on the sink's own goroutine.
type backend interface {
	// put encodes r and writes or buffers it. A false return means r was lost.
	put(r *record.Record) (ok bool, err error)
	// flush writes what put buffered and returns how many records that write lost.
	flush() (lost int, err error)
	// check is called every few seconds while idle or busy; a backend repairs itself here.
	check() error
	reopen() error
	close() error
	// interrupt ends a write that blocks in the output, and makes later ones fail at once;
	// called from another goroutine when the drain deadline passes.
	interrupt()
}

// Sink is one output with its own queue, writer goroutine and counters.
type Sink struct {
	name     string
	be       backend
	queue    chan *record.Record
	capacity int // for connection records; the rest of the channel is controlReserve
	maxBytes int64
	bytes    atomic.Int64 // what the queued records hold (recordCost), for the byte bound
	reopenC  chan struct{}
	done     chan struct{}
	stopped  chan struct{}
	onFault  func(name string, err error, recovered bool)

	written atomic.Uint64
	dropped atomic.Uint64 // queue full
	failed  atomic.Uint64 // lost by a failing write
	beats   atomic.Uint64 // the writer goroutine's proof of life
	// inWrite is when the output write in progress began (unix ns), 0 when none is: a writer
	// blocked in its output (a FIFO nobody reads, stdout to a stopped journald) is slow, not stuck.
	inWrite atomic.Int64
	faulty  atomic.Bool
	mu      sync.Mutex
	lastErr error
}

// Stats is a snapshot of a sink's counters.
type Stats struct {
	Name     string
	Written  uint64
	Dropped  uint64 // the queue was full
	Failed   uint64 // the output refused or lost them
	Queued   int
	Capacity int
	// QueuedBytes is what the queued records hold; connection records past QueueBytes are
	// dropped (and counted in Dropped) like those past Capacity.
	QueuedBytes, QueueBytes int64
	LastErr                 string
	Faulty                  bool
	// Beats advances while the writer goroutine is alive, also while it waits on a stalled
	// output; it stands still only when the goroutine is stuck (a deadlock, a hung write).
	Beats uint64
	// Blocked is how long the output write in progress has been waiting, 0 when none is.
	Blocked time.Duration
}

// Lost is every record this sink did not deliver.
func (s Stats) Lost() uint64 { return s.Dropped + s.Failed }

// controlReserve is queue room only spip's own records (summaries, warnings, started,
// stopping) may use: a flood of connection records must not crowd out the record that
// accounts for its losses. One queue keeps them in order with the connection records.
const controlReserve = 256

// DefaultQueueBytes is the byte bound of a sink's queue until LimitBytes sets another
// (output.queue_bytes).
const DefaultQueueBytes = 128 << 20

// recordOverhead is what a queued record holds beyond its payload and strings: the Record
// itself (addresses, session id, the protocol facts), the channel slot; an estimate on the
// safe side, so the bound errs towards less memory.
const recordOverhead = 512

// recordCost is the memory a queued record is counted for. A record is never changed once
// emitted, so the writer subtracts exactly what Offer added.
func recordCost(r *record.Record) int64 {
	n := recordOverhead + cap(r.Payload) + len(r.Message) + len(r.DestError) + len(r.CommunityID)
	for _, f := range r.Fields {
		n += len(f.Str) + 32
	}
	return int64(n)
}

func newSink(name string, be backend, queueSize int) *Sink {
	return &Sink{
		name:     name,
		be:       be,
		maxBytes: DefaultQueueBytes,
		queue:    make(chan *record.Record, queueSize+controlReserve),
		capacity: queueSize,
		reopenC:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
}

// Name is the sink's name in counters and summaries.
func (s *Sink) Name() string { return s.name }

// LimitBytes bounds what the queued connection records may hold (output.queue_bytes); call
// before Start. Payloads of up to 64 KiB make the record bound alone a bound on nothing useful.
func (s *Sink) LimitBytes(n int64) { s.maxBytes = n }

// Offer queues r, or counts it as dropped when the queue is full, in records or in bytes. It
// never blocks. spip's own records (few, small) may pass the byte bound, as they may use
// controlReserve: the summary that accounts for a flood's losses must get through.
func (s *Sink) Offer(r *record.Record) bool {
	if r.Kind == record.KindConnection && len(s.queue) >= s.capacity {
		s.dropped.Add(1)
		return false
	}
	c := recordCost(r)
	if b := s.bytes.Add(c); b > s.maxBytes && r.Kind == record.KindConnection {
		s.bytes.Add(-c)
		s.dropped.Add(1)
		return false
	}
	select {
	case s.queue <- r:
		return true
	default:
		s.bytes.Add(-c)
		s.dropped.Add(1)
		return false
	}
}

// took accounts for a record leaving the queue.
func (s *Sink) took(r *record.Record) *record.Record {
	s.bytes.Add(-recordCost(r))
	return r
}

// Reopen asks the writer to reopen its output (SIGHUP, after logrotate).
func (s *Sink) Reopen() {
	select {
	case s.reopenC <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	st := Stats{
		Name:        s.name,
		Written:     s.written.Load(),
		Dropped:     s.dropped.Load(),
		Failed:      s.failed.Load(),
		Queued:      len(s.queue),
		Capacity:    s.capacity,
		QueuedBytes: s.bytes.Load(),
		QueueBytes:  s.maxBytes,
		Faulty:      s.faulty.Load(),
		Beats:       s.beats.Load(),
	}
	if at := s.inWrite.Load(); at != 0 {
		st.Blocked = max(time.Since(time.Unix(0, at)), 1)
	}
	s.mu.Lock()
	if s.lastErr != nil {
		st.LastErr = s.lastErr.Error()
	}
	s.mu.Unlock()
	return st
}

// checkEvery is how often a backend gets to notice and repair a fault on its own.
const checkEvery = 2 * time.Second

// batchLinger is how long the writer lets records gather after a write. Without it a sensor
// at a few thousand connections a second wakes the writer and writes once per record; with it,
// once per batch. It delays a record by at most this much.
const batchLinger = 5 * time.Millisecond

func (s *Sink) run() {
	defer close(s.stopped)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	linger := time.NewTimer(0)
	<-linger.C
	for {
		s.beats.Add(1)
		select {
		case r := <-s.queue:
			s.put(s.took(r))
			// Drain what is already queued before one flush: one write per batch, not per record.
			// Stop looks in between: a batch against a stalled output must not outlast the
			// drain timeout by one send timeout per queued record.
			for n := 0; n < 4096 && !s.stopping(); n++ {
				select {
				case r = <-s.queue:
					s.beats.Add(1)
					s.put(s.took(r))
					continue
				default:
				}
				break
			}
			s.flush()
			// Sleep rather than wait on the queue: a send to a queue nobody waits on wakes nobody.
			linger.Reset(batchLinger)
			select {
			case <-linger.C:
			case <-s.done:
				linger.Stop()
			}
		case <-s.reopenC:
			s.flush()
			s.result(s.be.reopen())
		case <-tick.C:
			s.result(s.be.check())
		case <-s.done:
			return
		}
	}
}

func (s *Sink) stopping() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Sink) put(r *record.Record) {
	ok, err := s.be.put(r)
	if ok {
		s.written.Add(1)
	} else {
		s.failed.Add(1)
	}
	if err != nil {
		s.result(err)
	}
}

func (s *Sink) flush() {
	lost, err := s.be.flush()
	if lost > 0 {
		s.written.Add(^uint64(lost - 1))
		s.failed.Add(uint64(lost))
	}
	s.result(err)
}

// result tracks the sink's health and reports each change once, not each failed write.
func (s *Sink) result(err error) {
	if err != nil {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if !s.faulty.Swap(true) && s.onFault != nil {
			s.onFault(s.name, err, false)
		}
		return
	}
	if s.faulty.Swap(false) && s.onFault != nil {
		s.onFault(s.name, nil, true)
	}
}

// stop drains the queue until ctx ends, counts what is left as dropped and closes the output.
func (s *Sink) stop(ctx context.Context) {
	close(s.done)
	// A write blocked in a stalled output (a FIFO nobody reads) would hold the writer, and the
	// shutdown, forever: past the deadline it is cut, and what it held is counted as lost.
	defer context.AfterFunc(ctx, s.be.interrupt)()
	<-s.stopped
	for {
		select {
		case r := <-s.queue:
			s.took(r)
			if ctx.Err() != nil {
				s.dropped.Add(1)
				continue
			}
			s.put(r)
			if len(s.queue) == 0 {
				s.flush()
			}
			continue
		default:
		}
		break
	}
	s.flush()
	// Closing well says nothing about the output's health: only a failure is news.
	if err := s.be.close(); err != nil {
		s.result(err)
	}
}

// Fanout hands every record to every sink.
type Fanout struct {
	sinks []*Sink
}

// NewFanout returns a fanout over no sinks; Add them before Start.
func NewFanout() *Fanout { return &Fanout{} }

// Add registers a sink; call before Start.
func (f *Fanout) Add(s *Sink) { f.sinks = append(f.sinks, s) }

// Sinks lists the sinks.
func (f *Fanout) Sinks() []*Sink { return f.sinks }

// OnFault sets the function told about sink faults; call before Start.
func (f *Fanout) OnFault(fn func(name string, err error, recovered bool)) {
	for _, s := range f.sinks {
		s.onFault = fn
	}
}

// Start runs every sink's writer.
func (f *Fanout) Start() {
	for _, s := range f.sinks {
		go s.run()
	}
}

// Emit offers r to every sink and reports whether all of them took it.
func (f *Fanout) Emit(r *record.Record) bool {
	all := true
	for _, s := range f.sinks {
		if !s.Offer(r) {
			all = false
		}
	}
	return all
}

// Reopen asks every sink to reopen its output.
func (f *Fanout) Reopen() {
	for _, s := range f.sinks {
		s.Reopen()
	}
}

// Stats returns every sink's counters.
func (f *Fanout) Stats() []Stats {
	out := make([]Stats, len(f.sinks))
	for i, s := range f.sinks {
		out[i] = s.Stats()
	}
	return out
}

// Stop drains and closes every sink, all within ctx.
func (f *Fanout) Stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range f.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop(ctx)
		}()
	}
	wg.Wait()
}
