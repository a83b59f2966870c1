package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults of Config's pipelining settings.
const (
	// DefaultMaxBatch bounds the decisions of one pipeline when
	// Config.MaxBatch is zero.
	DefaultMaxBatch = 64
	// DefaultMaxInFlight is Config.MaxInFlight's default on a single
	// Redis: one round trip at a time, all others sharing the next, which
	// gave the most decisions per second in BenchmarkRedisInterleaved
	// (bench/RESULTS.md; 1, 2 and 4 tried), as Redis runs one script at a
	// time anyway.
	DefaultMaxInFlight = 1
	// DefaultClusterMaxInFlight is its default on Redis Cluster, where a
	// pipeline's parts go to several masters at once.
	DefaultClusterMaxInFlight = 4
)

// batcher sends concurrent decisions to Redis together. A decision that
// finds fewer than maxInFlight round trips in flight and nobody waiting
// goes at once, alone; otherwise it waits in pending, and goes in the
// pipeline that the next round trip to end starts (its caller hands the
// pending calls to the first of them, which sends them and hands out the
// answers), or at once when it makes pending full. Every decision is still
// one script run of its own, atomic on its own; only the round trip is
// shared. A waiting decision waits at most for one round trip in flight,
// and its own deadline (Config.Timeout from the moment it began waiting)
// is the pipeline's deadline if it is the earliest.
type batcher struct {
	maxBatch, maxInFlight int

	mu       sync.Mutex
	inflight int
	pending  []*call
}

// roundTrip runs c on Redis, alone or in a pipeline. reusable is false
// when c may still be in use, so that it must not go back to the pool.
func (s *Store) roundTrip(ctx context.Context, c *call) (out []int64, err error, reusable bool) {
	b := s.batch
	if b == nil {
		return s.run(ctx, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, err, true
	}
	b.mu.Lock()
	if b.inflight < b.maxInFlight && len(b.pending) == 0 {
		b.inflight++
		b.mu.Unlock()
		out, err, reusable = s.run(ctx, c)
		s.finish()
		return out, err, reusable
	}
	c.deadline = time.Now().Add(s.timeout)
	c.batch = c.batch[:0]
	b.pending = append(b.pending, c)
	full := len(b.pending) >= b.maxBatch
	if full {
		c.batch = b.take(c.batch)
		b.inflight++
	}
	b.mu.Unlock()
	if !full {
		<-c.done
	}
	if len(c.batch) > 0 {
		// c leads: it sends the batch, c among them.
		s.flush(c.batch, c)
		clear(c.batch)
		c.batch = c.batch[:0]
		s.finish()
	}
	return c.out, c.err, true
}

// take moves up to maxBatch pending calls to dst. b.mu is held.
func (b *batcher) take(dst []*call) []*call {
	k := min(len(b.pending), b.maxBatch)
	dst = append(dst, b.pending[:k]...)
	n := copy(b.pending, b.pending[k:])
	clear(b.pending[n:])
	b.pending = b.pending[:n]
	return dst
}

// finish ends a round trip: when calls wait, it hands them, as the next
// pipeline, to the first of them, which sends them.
func (s *Store) finish() {
	b := s.batch
	b.mu.Lock()
	b.inflight--
	var lead *call
	if len(b.pending) > 0 && b.inflight < b.maxInFlight {
		lead = b.pending[0]
		lead.batch = b.take(lead.batch[:0])
		b.inflight++
	}
	b.mu.Unlock()
	if lead != nil {
		lead.done <- struct{}{}
	}
}

// flush sends calls in one pipeline (go-redis splits it per node on a
// Cluster), stores each answer in its call, and wakes every call but self,
// whose caller is the one flushing.
func (s *Store) flush(calls []*call, self *call) {
	deadline := calls[0].deadline
	for _, c := range calls[1:] {
		if c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if len(calls) == 1 {
		c := calls[0]
		c.out, c.err = s.exec(ctx, c)
		c.err = s.deadlineErr(ctx, c.err)
	} else {
		cmds := make([]*goredis.IntSliceCmd, len(calls))
		pipe := s.client.Pipeline()
		for i, c := range calls {
			cmd := goredis.NewIntSliceCmd(ctx, c.args...)
			cmd.SetFirstKeyPos(3)
			cmds[i] = cmd
			_ = pipe.Process(ctx, cmd) // queues it; errors come from Exec
		}
		s.scriptsSent.Add(uint64(len(calls)))
		s.pipelines.Add(1)
		s.pipelined.Add(uint64(len(calls)))
		sent := s.clock.local()
		_, _ = pipe.Exec(ctx) // each command holds its own error
		recv := s.clock.local()
		for i, c := range calls {
			c.sent, c.recv = sent, recv
			c.out, c.err = cmds[i].Val(), cmds[i].Err()
			if c.err != nil && goredis.HasErrorPrefix(c.err, "NOSCRIPT") {
				c.out, c.err = s.exec(ctx, c) // EVALSHA again, then EVAL
			}
			c.err = s.deadlineErr(ctx, c.err)
		}
	}
	for _, c := range calls {
		if c != self {
			c.done <- struct{}{}
		}
	}
}

// deadlineErr says that a call failed for want of an answer in time.
func (s *Store) deadlineErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("no answer within %v: %w", s.timeout, err)
	}
	return err
}
