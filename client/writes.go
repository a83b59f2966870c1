package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"ratelab"
	"ratelab/wire"
)

// The writer schedules script updates.
//
// Design. Updates wait in a FIFO queue per script. A new unconditional
// update whose script's last queued update has not been sent yet is
// merged into it: the queued update takes the newest name and text, and
// the new caller joins its waiters. At most one write per script is in
// flight, so writes of one script reach the server in the order they were
// submitted and the last text submitted is the one that stays.
//
// One scheduler goroutine picks the head update of every script that has
// none in flight and whose per-script buckets admit a write now, oldest
// first, up to MaxBatch of them; asks the pacer for the request's other
// buckets; and sends them, as a PUT when there is one and as a bulk
// request when there are more. While quota is short, updates keep
// arriving and merging, so a burst of updates to one script becomes as
// many writes as its limit allows. A 429 (which the pacer makes rare)
// puts the updates back at the head of their queues, merged with anything
// that arrived meanwhile, to be sent again after the server's delay.
//
// Updates with IfVersion set are compare-and-swaps: they are never merged
// with another update, and a version mismatch fails them alone.
type writer struct {
	c *Client
	// ctx is the context of every write request; Close cancels it.
	ctx      context.Context
	cancel   context.CancelFunc
	signal   chan struct{}
	slots    chan struct{} // one token per write request allowed in flight
	stop     chan struct{}
	done     chan struct{}
	startMu  sync.Mutex
	started  bool
	inflight sync.WaitGroup

	mu     sync.Mutex
	queues map[string][]*writeEntry
	seq    uint64
	closed bool
	// lastID is the last script submitted: GET /api/v2/ratelimits lists
	// the per-script policies only for a named script.
	lastID string
}

// writeEntry is one queued write of one script: one or more callers'
// updates merged.
type writeEntry struct {
	seq      uint64
	upd      ratelab.ScriptUpdate
	waiters  []*Pending
	inflight bool
	// retries is what the entry's writes have used of the client's
	// retries (see retryOf).
	retries retryState
	// notBefore delays a PUT retried after a network error.
	notBefore time.Time
}

// Pending is a submitted script update. Its result is the version of the
// script that the write carrying the update produced.
type Pending struct {
	done  chan struct{}
	res   ratelab.BulkResult
	entry *writeEntry
	id    string
	stop  func() bool
}

// Done returns a channel closed when the result is ready.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the outcome once Done is closed: the script as stored,
// or the update's error. Before that it returns the zero BulkResult.
func (p *Pending) Result() ratelab.BulkResult {
	select {
	case <-p.done:
		return p.res
	default:
		return ratelab.BulkResult{}
	}
}

// Wait waits for the result or the end of ctx. Ending ctx here does not
// withdraw the update; the context given to Submit does.
func (p *Pending) Wait(ctx context.Context) (*ratelab.Script, error) {
	select {
	case <-p.done:
		return p.res.Script, p.res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *writer) init(c *Client, inflight int) {
	w.c = c
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.signal = make(chan struct{}, 1)
	w.slots = make(chan struct{}, inflight)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	w.queues = map[string][]*writeEntry{}
}

// errClosed is the error of updates submitted to or pending in a closed
// client.
var errClosed = errors.New("client: client closed")

// Submit queues an update of upd.ID and returns at once; the update is
// sent when the server's limits allow it.
//
// Coalescing semantics: when the script's last queued update has not been
// sent yet and neither it nor upd is a compare-and-swap (IfVersion set),
// upd is merged into it: only the newest name and text are sent, and every
// merged caller gets the version that write produced. A caller whose
// update was superseded thus gets a version containing the newer text —
// which includes its own write in the sense of the script's history: its
// write was applied and immediately replaced, never lost silently. Each
// caller gets either such a version or an error; when the merged write
// fails (for instance the server rejects the newest text), every merged
// caller gets that error.
//
// ctx governs the update until it is sent: when ctx ends first, the
// caller gets ctx's error, and its update is withdrawn unless other
// callers' updates were merged with it (they were promised the newest
// text, so the merged write still goes). Once sent, a write is not
// withdrawn.
//
// The update's ClientID is ignored: the server records the client of the
// credentials.
func (c *Client) Submit(ctx context.Context, upd ratelab.ScriptUpdate) *Pending {
	p := &Pending{done: make(chan struct{}), id: upd.ID}
	if err := validateUpdate(upd); err != nil {
		p.res.Err = err
		close(p.done)
		return p
	}
	w := &c.w
	w.start()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		p.res.Err = errClosed
		close(p.done)
		return p
	}
	q := w.queues[upd.ID]
	var e *writeEntry
	if n := len(q); n > 0 && !q[n-1].inflight && q[n-1].upd.IfVersion == 0 && upd.IfVersion == 0 {
		e = q[n-1]
		e.upd.Name, e.upd.Text = upd.Name, upd.Text
		c.stats.coalesced.Add(1)
	} else {
		w.seq++
		e = &writeEntry{seq: w.seq, upd: upd}
		w.queues[upd.ID] = append(q, e)
	}
	e.waiters = append(e.waiters, p)
	p.entry = e
	if ctx.Done() != nil {
		// Registered under the lock, so that finish (which takes it) sees
		// p.stop; f runs in its own goroutine and waits for the lock.
		p.stop = context.AfterFunc(ctx, func() { w.withdraw(p, ctx.Err()) })
	}
	w.lastID = upd.ID
	w.mu.Unlock()
	w.wake()
	return p
}

func validateUpdate(upd ratelab.ScriptUpdate) error {
	if upd.ID == "" {
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "id must not be empty")
	}
	if upd.IfVersion < 0 {
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "IfVersion must not be negative")
	}
	return ratelab.ValidateScript(upd.Name, upd.Text)
}

// UpdateScript replaces a script's name and text through the coalescing
// scheduler and waits for the result (see Submit). With upd.IfVersion set
// it is a compare-and-swap that fails with ECONFLICT when the script is
// at another version.
func (c *Client) UpdateScript(ctx context.Context, upd ratelab.ScriptUpdate) (*ratelab.Script, error) {
	return c.Submit(ctx, upd).Wait(ctx)
}

// PutScript is UpdateScript reporting whether the write created the
// script. The orgID is ignored.
func (c *Client) PutScript(ctx context.Context, _ string, upd ratelab.ScriptUpdate) (*ratelab.Script, bool, error) {
	p := c.Submit(ctx, upd)
	if _, err := p.Wait(ctx); err != nil {
		return nil, false, err
	}
	return p.res.Script, p.res.Created, nil
}

// UpdateScripts submits every update and waits for all of them; the
// results are in input order. Unlike the storage implementations it does
// not apply them in one transaction: they are batched into bulk requests
// as the limits allow, and two updates of the same script in one call
// are merged (both get the version with the later text). The error is
// ctx's when it ended first.
func (c *Client) UpdateScripts(ctx context.Context, _ string, upds []ratelab.ScriptUpdate) ([]ratelab.BulkResult, error) {
	ps := make([]*Pending, len(upds))
	for i, u := range upds {
		ps[i] = c.Submit(ctx, u)
	}
	out := make([]ratelab.BulkResult, len(upds))
	for i, p := range ps {
		select {
		case <-p.done:
			out[i] = p.res
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// Modify reads a script, lets fn change its Name and Text, and writes it
// back as a compare-and-swap on the version read; when another writer
// got there first (409 or 412) it reads and tries again, up to 10 times.
// An error from fn stops it and is returned as is.
func (c *Client) Modify(ctx context.Context, id string, fn func(*ratelab.Script) error) (*ratelab.Script, error) {
	const attempts = 10
	var err error
	for range attempts {
		var s *ratelab.Script
		s, err = c.FindScript(ctx, "", id)
		if err != nil {
			return nil, err
		}
		version := s.Version
		if err := fn(s); err != nil {
			return nil, err
		}
		var out *ratelab.Script
		out, err = c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: id, Name: s.Name, Text: s.Text, IfVersion: version})
		switch ratelab.ErrorCode(err) {
		case "":
			return out, nil
		case ratelab.ECONFLICT, ratelab.EPRECONDITION:
			continue
		}
		return nil, err
	}
	return nil, fmt.Errorf("modify script %s: still conflicting after %d attempts: %w", id, attempts, err)
}

// start launches the scheduler on first use.
func (w *writer) start() {
	w.startMu.Lock()
	defer w.startMu.Unlock()
	if !w.started {
		w.started = true
		go w.run()
	}
}

func (w *writer) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// close fails every pending update and stops the scheduler.
func (w *writer) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	var fail []*writeEntry
	for id, q := range w.queues {
		keep := q[:0]
		for _, e := range q {
			if e.inflight {
				keep = append(keep, e)
			} else {
				fail = append(fail, e)
			}
		}
		w.queues[id] = keep
	}
	w.mu.Unlock()
	for _, e := range fail {
		w.finish(e, ratelab.BulkResult{Err: errClosed})
	}
	w.startMu.Lock()
	started := w.started
	w.started = true // no scheduler starts after Close
	w.startMu.Unlock()
	close(w.stop)
	w.cancel()
	if started {
		<-w.done
	}
	w.inflight.Wait()
}

// lastScript returns the id of the last script submitted.
func (w *writer) lastScript() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastID
}

// withdraw removes a caller whose Submit context ended before its update
// was sent.
func (w *writer) withdraw(p *Pending, err error) {
	w.mu.Lock()
	e := p.entry
	select {
	case <-p.done:
		w.mu.Unlock()
		return
	default:
	}
	if e.inflight {
		w.mu.Unlock()
		return
	}
	e.waiters = slices.DeleteFunc(e.waiters, func(x *Pending) bool { return x == p })
	if len(e.waiters) == 0 {
		q := w.queues[p.id]
		q = slices.DeleteFunc(q, func(x *writeEntry) bool { return x == e })
		if len(q) == 0 {
			delete(w.queues, p.id)
		} else {
			w.queues[p.id] = q
		}
	}
	p.res = ratelab.BulkResult{Err: err}
	close(p.done)
	w.mu.Unlock()
	w.wake()
}

// finish delivers a write's result to its waiters.
func (w *writer) finish(e *writeEntry, res ratelab.BulkResult) {
	w.mu.Lock()
	waiters := e.waiters
	e.waiters = nil
	for _, p := range waiters {
		p.res = res
		close(p.done)
	}
	w.mu.Unlock()
	for _, p := range waiters {
		if p.stop != nil {
			p.stop()
		}
	}
}

// run is the scheduler loop.
func (w *writer) run() {
	defer close(w.done)
	// Learn the exact policies and their scopes before the first write.
	w.c.ensureLimits(w.ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := w.dispatch(w.c.now())
		if wait < 0 {
			// Nothing ready that quota would admit: sleep until woken.
			wait = time.Hour
		}
		if wait == 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-w.stop:
			return
		case <-w.signal:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// dispatch sends at most one write request and returns how long to wait
// before the next attempt: 0 to try again at once, -1 to wait for news.
func (w *writer) dispatch(now time.Time) time.Duration {
	c := w.c
	w.mu.Lock()
	var ready []*writeEntry
	next := time.Duration(-1)
	consider := func(d time.Duration) {
		if d > 0 && (next < 0 || d < next) {
			next = d
		}
	}
	for id, q := range w.queues {
		e := q[0]
		if e.inflight {
			continue
		}
		if e.notBefore.After(now) {
			consider(e.notBefore.Sub(now))
			continue
		}
		kind := kindPutScript
		if c.maxBatch > 1 {
			kind = kindBulk
		}
		if d := c.pace.scriptWait(kind, id, now); d > 0 {
			consider(d)
			continue
		}
		ready = append(ready, e)
	}
	w.mu.Unlock()
	if len(ready) == 0 {
		return next
	}
	// A free request slot, or wait for one.
	select {
	case w.slots <- struct{}{}:
	default:
		// Every slot is taken; a write that ends frees one and wakes the
		// scheduler.
		return next
	}
	slices.SortFunc(ready, func(a, b *writeEntry) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	if len(ready) > c.maxBatch {
		ready = ready[:c.maxBatch]
	}
	kind := kindPutScript
	if len(ready) > 1 {
		kind = kindBulk
	}
	ids := make([]string, len(ready))
	for i, e := range ready {
		ids[i] = e.upd.ID
	}
	tk := c.pace.reserve(kind, ids, now)
	switch {
	case tk.learn != nil:
		<-w.slots
		select {
		case <-tk.learn:
		case <-w.stop:
		}
		return 0
	case tk.wait > 0:
		<-w.slots
		return tk.wait
	}
	// Take the updates as they are now: anything merged until this point
	// is in the write.
	w.mu.Lock()
	batch := make([]*writeEntry, 0, len(ready))
	upds := make([]ratelab.ScriptUpdate, 0, len(ready))
	for _, e := range ready {
		if len(e.waiters) == 0 || w.queues[e.upd.ID] == nil || w.queues[e.upd.ID][0] != e {
			continue // withdrawn meanwhile
		}
		e.inflight = true
		batch = append(batch, e)
		upds = append(upds, e.upd)
	}
	w.mu.Unlock()
	if len(batch) == 0 {
		c.pace.abandon(kind, tk) // nothing goes: give back what it drew
		<-w.slots
		return 0
	}
	w.inflight.Add(1)
	go func() {
		defer w.inflight.Done()
		defer func() { <-w.slots; w.wake() }()
		w.send(kind, tk, batch, upds)
	}()
	return 0
}

// send sends one write request for batch (upds are the updates as taken)
// and settles each entry.
func (w *writer) send(kind string, tk ticket, batch []*writeEntry, upds []ratelab.ScriptUpdate) {
	c := w.c
	ctx := w.ctx
	ids := make([]string, len(upds))
	for i, u := range upds {
		ids[i] = u.ID
	}
	r := &apiRequest{kind: kind, ids: ids, method: http.MethodPost, path: wire.BulkPath}
	if len(upds) == 1 {
		u := upds[0]
		body := wire.ScriptPut{Name: u.Name, Text: u.Text}
		if u.IfVersion > 0 {
			body.Version = &u.IfVersion
		}
		r.method, r.path, r.body, r.idempotent = http.MethodPut, wire.ScriptURLPath(u.ID), body, true
		c.stats.puts.Add(1)
	} else {
		var body wire.BulkRequest
		for _, u := range upds {
			it := wire.ScriptPut{ID: u.ID, Name: u.Name, Text: u.Text}
			if u.IfVersion > 0 {
				v := u.IfVersion
				it.Version = &v
			}
			body.Scripts = append(body.Scripts, it)
		}
		r.body = body
		c.stats.bulks.Add(1)
		c.stats.bulkItems.Add(int64(len(upds)))
	}
	b, _ := json.Marshal(r.body)
	resp, err := c.send(ctx, r, b)
	now := c.now()
	if err != nil {
		c.pace.abandon(kind, tk)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w while the write was in flight (it may have been applied): %w", errClosed, err)
	}
	if err == nil {
		c.observe(kind, ids, tk, resp, now)
		c.maybeRefresh(ctx)
	}
	if rt := retryOf(r, resp, err); rt != retryNone {
		if err == nil {
			err = responseError(resp)
		}
		var ended time.Time
		if rt == retryBackoff {
			ended = now
		}
		w.requeue(batch, rt, ended, err)
		return
	}
	if err != nil {
		if !r.idempotent {
			// A bulk POST may have been applied: it is not resent.
			err = fmt.Errorf("bulk update: %w", err)
		}
		for _, e := range batch {
			w.settle(e, ratelab.BulkResult{Err: err})
		}
		return
	}
	if r.method == http.MethodPut {
		var s ratelab.Script
		if err := decode(resp, http.StatusOK, &s); err != nil {
			w.settle(batch[0], ratelab.BulkResult{Err: err})
			return
		}
		w.settle(batch[0], ratelab.BulkResult{Script: &s, Created: resp.status == http.StatusCreated})
		return
	}
	var br wire.BulkResponse
	if err := decode(resp, http.StatusOK, &br); err != nil {
		for _, e := range batch {
			w.settle(e, ratelab.BulkResult{Err: err})
		}
		return
	}
	for i, e := range batch {
		if i >= len(br.Results) {
			w.settle(e, ratelab.BulkResult{Err: fmt.Errorf("bulk update: the response has %d results for %d updates", len(br.Results), len(batch))})
			continue
		}
		it := br.Results[i]
		switch {
		case it.Error != nil:
			w.settle(e, ratelab.BulkResult{Err: &APIError{Status: it.Status, Body: *it.Error}})
		case it.Script == nil:
			w.settle(e, ratelab.BulkResult{Err: fmt.Errorf("bulk update: item %d has neither script nor error", i)})
		default:
			w.settle(e, ratelab.BulkResult{Script: it.Script, Created: it.Status == http.StatusCreated})
		}
	}
}

// settle removes a sent entry from its queue and delivers its result.
func (w *writer) settle(e *writeEntry, res ratelab.BulkResult) {
	w.mu.Lock()
	q := w.queues[e.upd.ID]
	q = slices.DeleteFunc(q, func(x *writeEntry) bool { return x == e })
	if len(q) == 0 {
		delete(w.queues, e.upd.ID)
	} else {
		w.queues[e.upd.ID] = q
	}
	w.mu.Unlock()
	w.finish(e, res)
}

// requeue puts entries whose write is to be retried as rt says back at
// the head of their queues, merging the unconditional update queued
// behind each, or fails them with err once they have used up their
// retries. backoffFrom, when not zero, is when the write ended: a retry
// after backoff waits from then.
func (w *writer) requeue(batch []*writeEntry, rt retry, backoffFrom time.Time, err error) {
	c := w.c
	for _, e := range batch {
		if !c.retrying(&e.retries, rt) {
			w.settle(e, ratelab.BulkResult{Err: err})
			continue
		}
		w.mu.Lock()
		e.inflight = false
		e.notBefore = time.Time{}
		if !backoffFrom.IsZero() {
			e.notBefore = backoffFrom.Add(backoff(e.retries.attempts - 1))
		}
		q := w.queues[e.upd.ID]
		if len(q) > 1 && q[0] == e && e.upd.IfVersion == 0 && q[1].upd.IfVersion == 0 {
			next := q[1]
			e.upd.Name, e.upd.Text = next.upd.Name, next.upd.Text
			e.waiters = append(e.waiters, next.waiters...)
			for _, p := range next.waiters {
				p.entry = e
			}
			w.queues[e.upd.ID] = slices.Delete(q, 1, 2)
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			w.settle(e, ratelab.BulkResult{Err: errClosed})
		}
	}
}
