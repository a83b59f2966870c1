package limit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryStore is a Store that keeps every tier's TAT in this process.
//
// Concurrency design: keys are spread over a fixed number of shards, each
// a mutex, a map and an LRU list. A decision locks the shards of its tiers
// in ascending shard order (so two decisions can never wait on each other
// in a cycle), evaluates all tiers, commits, and unlocks: decisions that
// share no shard never contend, and a decision is atomic across its tiers.
// Looking up a known key allocates nothing.
//
// Memory is bounded two ways: an entry whose TAT is in the past carries no
// information and is reused in place or dropped by Sweep, and when
// MemoryConfig.MaxKeys is set the least recently used entry of a full shard
// is evicted (counted in Stats.Evictions when it still carried state).
//
// The zero MemoryStore is not usable; call NewMemoryStore. It is safe for
// concurrent use.
type MemoryStore struct {
	seed     maphash.Seed
	shards   []memShard
	mask     uint64
	perShard int // max entries per shard; 0 = unbounded
	now      func() time.Time

	evictions atomic.Int64
	stop      chan struct{}
	stopOnce  sync.Once
	sweeper   sync.WaitGroup
}

// MemoryConfig configures a MemoryStore. The zero value is usable.
type MemoryConfig struct {
	// Shards is the number of shards, rounded up to a power of two.
	// Default: 256.
	Shards int
	// MaxKeys caps the tracked keys; 0 means no cap. The cap is applied per
	// shard (MaxKeys / Shards each), so the total never exceeds it.
	MaxKeys int
	// SweepInterval, when positive, runs Sweep in the background at that
	// interval until Close.
	SweepInterval time.Duration
	// Now is the clock used when a Request has no Now. Default: time.Now.
	Now func() time.Time
}

type memKey struct {
	group, policy, key string
}

type memEntry struct {
	k          memKey
	tat        int64 // unix nanoseconds
	prev, next *memEntry
}

type memShard struct {
	mu   sync.Mutex
	m    map[memKey]*memEntry
	head memEntry // sentinel of the LRU list: head.next is the most recent
	_    [40]byte // keep shards on separate cache lines
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	n := 256
	if cfg.Shards > 0 {
		n = 1
		for n < cfg.Shards {
			n <<= 1
		}
	}
	s := &MemoryStore{
		seed:   maphash.MakeSeed(),
		shards: make([]memShard, n),
		mask:   uint64(n - 1),
		now:    cfg.Now,
		stop:   make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.MaxKeys > 0 {
		s.perShard = max(1, cfg.MaxKeys/n)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m = make(map[memKey]*memEntry)
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	if cfg.SweepInterval > 0 {
		s.sweeper.Add(1)
		go s.sweepLoop(cfg.SweepInterval)
	}
	return s
}

// Close stops the background sweeper, if any. The store stays usable.
func (s *MemoryStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.sweeper.Wait()
	return nil
}

func (s *MemoryStore) sweepLoop(every time.Duration) {
	defer s.sweeper.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep(s.now())
		}
	}
}

func (s *MemoryStore) shardOf(k *memKey) int {
	h := maphash.String(s.seed, k.group)
	h = h*31 ^ maphash.String(s.seed, k.policy)
	h = h*31 ^ maphash.String(s.seed, k.key)
	return int(h & s.mask)
}

// Decide implements Store.
func (s *MemoryStore) Decide(_ context.Context, req *Request, d *Decision) error {
	if err := req.Validate(); err != nil {
		return err
	}
	now := req.Now
	if now.IsZero() {
		now = s.now()
	}
	nowNs := now.UnixNano()

	n := len(req.Tiers)
	var (
		keys    [MaxTiers]memKey
		shard   [MaxTiers]int
		order   [MaxTiers]int // distinct shard indexes, ascending
		entries [MaxTiers]*memEntry
		backlog [MaxTiers]time.Duration
	)
	locked := 0
	for i := range n {
		keys[i] = memKey{req.Group, req.Tiers[i].Policy.Name, req.Tiers[i].Key}
		shard[i] = s.shardOf(&keys[i])
		// Insertion sort into order, skipping duplicates: n is tiny.
		j := locked
		for j > 0 && order[j-1] > shard[i] {
			j--
		}
		if j > 0 && order[j-1] == shard[i] {
			continue
		}
		copy(order[j+1:locked+1], order[j:locked])
		order[j] = shard[i]
		locked++
	}
	for _, o := range order[:locked] {
		s.shards[o].mu.Lock()
	}
	for i := range n {
		sh := &s.shards[shard[i]]
		if e := sh.m[keys[i]]; e != nil {
			entries[i] = e
			sh.touch(e) // any access counts as use, a rejection too
			if b := e.tat - nowNs; b > 0 {
				backlog[i] = time.Duration(b)
			}
		}
	}
	Evaluate(req, backlog[:n], d)
	if d.Allowed {
		for i := range n {
			ts := &d.Tiers[i]
			if !ts.Consumed {
				continue
			}
			tat := nowNs + int64(ts.ResetAfter)
			if e := entries[i]; e != nil {
				e.tat = tat
				continue
			}
			s.insert(shard[i], keys[i], tat, nowNs)
		}
	}
	for _, o := range order[:locked] {
		s.shards[o].mu.Unlock()
	}
	return nil
}

// insert adds an entry to a locked shard, evicting if the shard is full.
func (s *MemoryStore) insert(shardIdx int, k memKey, tat, nowNs int64) {
	sh := &s.shards[shardIdx]
	if s.perShard > 0 && len(sh.m) >= s.perShard {
		victim := sh.head.prev
		if victim.tat > nowNs {
			s.evictions.Add(1)
		}
		sh.unlink(victim)
		delete(sh.m, victim.k)
	}
	e := &memEntry{k: k, tat: tat}
	sh.m[k] = e
	sh.pushFront(e)
}

func (sh *memShard) pushFront(e *memEntry) {
	e.prev, e.next = &sh.head, sh.head.next
	sh.head.next.prev = e
	sh.head.next = e
}

func (sh *memShard) unlink(e *memEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *memShard) touch(e *memEntry) {
	if sh.head.next == e {
		return
	}
	sh.unlink(e)
	sh.pushFront(e)
}

// Sweep drops every entry whose TAT is not after now: such an entry
// carries no information, since a missing key behaves the same. It returns
// how many entries it dropped.
func (s *MemoryStore) Sweep(now time.Time) int {
	nowNs, dropped := now.UnixNano(), 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.tat <= nowNs {
				sh.unlink(e)
				delete(sh.m, k)
				dropped++
			}
		}
		sh.mu.Unlock()
	}
	return dropped
}

// MemoryStats describes a MemoryStore's occupancy.
type MemoryStats struct {
	// Keys is the number of tracked keys.
	Keys int
	// Evictions counts entries dropped by the MaxKeys cap while they still
	// carried state (their TAT was in the future).
	Evictions int64
}

// Stats returns the store's current occupancy.
func (s *MemoryStore) Stats() MemoryStats {
	st := MemoryStats{Evictions: s.evictions.Load()}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Keys += len(sh.m)
		sh.mu.Unlock()
	}
	return st
}
