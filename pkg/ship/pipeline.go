package ship

import (
	"sync"
	"time"
)

// batch is the rows of one INSERT per table and the cursor of its last entry.
type batch struct {
	conn, ev   []byte
	nConn, nEv int
	cursor     []byte
	evDone     bool // the events went in on an earlier try
	started    time.Time
}

func (b *batch) rows() int { return b.nConn + b.nEv }

// pipeline hands batches from the reader to the sender in journal order: the sender takes
// full batches first and the one being filled only when it is old enough, so a cursor is never
// saved ahead of a batch that was not acknowledged. The reader blocks (and with it journalctl,
// and the journal is the buffer) while queuedBatches wait.
type pipeline struct {
	mu      sync.Mutex
	space   *sync.Cond
	max     int
	cur     *batch
	queue   []*batch
	free    []*batch
	closed  bool
	aborted bool
	wake    chan struct{}
}

func newPipeline(max int) *pipeline {
	p := &pipeline{max: max, wake: make(chan struct{}, 1)}
	p.space = sync.NewCond(&p.mu)
	return p
}

func (p *pipeline) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// add lets fill append one entry to the batch being filled.
func (p *pipeline) add(fill func(*batch)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.aborted {
		return
	}
	if p.cur == nil {
		if n := len(p.free); n > 0 {
			p.cur, p.free = p.free[n-1], p.free[:n-1]
		} else {
			p.cur = &batch{}
		}
		p.cur.started = time.Now()
	}
	fill(p.cur)
	if p.cur.rows() < p.max && len(p.cur.conn)+len(p.cur.ev) < maxBatchBytes {
		return
	}
	for len(p.queue) >= queuedBatches && !p.aborted {
		p.space.Wait()
	}
	p.queue = append(p.queue, p.cur)
	p.cur = nil
	p.signal()
}

// close says the reader is done: take returns what is left, then nil.
func (p *pipeline) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
}

// abort drops everything and unblocks the reader.
func (p *pipeline) abort() {
	p.mu.Lock()
	p.aborted = true
	p.queue, p.cur = nil, nil
	p.space.Broadcast()
	p.mu.Unlock()
}

// take returns the next batch to send, waiting as long as needed; nil once the reader is done
// and everything was taken. beat is called while it waits.
func (p *pipeline) take(wait time.Duration, beat func()) *batch {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			b := p.queue[0]
			p.queue = p.queue[1:]
			p.space.Signal()
			p.mu.Unlock()
			return b
		}
		next := wait
		if b := p.cur; b != nil && b.rows() > 0 {
			age := time.Since(b.started)
			if p.closed || age >= wait {
				p.cur = nil
				p.mu.Unlock()
				return b
			}
			next = wait - age
		}
		if p.closed {
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		beat()
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
		select {
		case <-p.wake:
		case <-t.C:
		}
	}
}

// release returns a sent batch for reuse.
func (p *pipeline) release(b *batch) {
	b.conn, b.ev, b.cursor = b.conn[:0], b.ev[:0], b.cursor[:0]
	b.nConn, b.nEv, b.evDone = 0, 0, false
	p.mu.Lock()
	if len(p.free) < queuedBatches+1 {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}
