package limit

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryStore is a Store that keeps every tier's TAT in this process.
//
// Concurrency design: keys are spread over a fixed number of shards, each
// a mutex and a hash table. A decision locks the shards of its tiers in
// ascending shard order (so two decisions can never wait on each other in a
// cycle), evaluates all tiers, commits, and unlocks: decisions that share no
// shard never contend, and a decision is atomic across its tiers.
//
// Speed design: a decision hashes each (group, policy, key) once; the top
// bits of the hash pick the shard and the low bits the slot. Each shard's
// table is open-addressed with linear probing, and a slot holds the hash,
// the TAT and the key in one 64-byte cache line, so a decision on a known
// key usually costs one cache miss per tier and allocates nothing.
//
// Memory is bounded two ways: an entry whose TAT is in the past carries no
// information and is reused in place or dropped by Sweep, and when
// MemoryConfig.MaxKeys is set the least recently used entry of a full shard
// is evicted (counted in Stats.Evictions when it still carried state). Any
// access counts as a use, a rejection too. The recency list exists only
// when MaxKeys is set, since nothing else reads it.
//
// The zero MemoryStore is not usable; call NewMemoryStore. It is safe for
// concurrent use.
type MemoryStore struct {
	seed     maphash.Seed
	shards   []memShard
	shift    uint // a key's shard is hash >> shift
	perShard int  // max entries per shard; 0 = unbounded
	now      func() time.Time

	evictions atomic.Int64
	leaseSeq  atomic.Uint64
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

// Slot states: a slot's hash field is slotEmpty, slotDeleted (a tombstone
// that probes step over), or a key's hash with slotUsed set.
const (
	slotEmpty   = 0
	slotDeleted = 1
	slotUsed    = 1 << 63
)

// memSlot is one table slot, exactly one 64-byte cache line. tat is the
// instant after which the entry carries no information: the TAT of a GCRA
// tier, State.Until as an instant for the others (see State). A window
// tier keeps its counts in count and prev; a concurrency tier keeps
// ^index of its lease set in count (so count < 0 marks it).
type memSlot struct {
	hash        uint64
	tat         int64 // unix nanoseconds
	count, prev int64
	name        string // the partition key
	gp          string // see groupPolicy
}

// groupPolicy returns the gp of a slot: the group's length as a uvarint,
// the group, the policy name. The length makes it unambiguous.
func groupPolicy(group, policy string) string {
	b := make([]byte, 0, binary.MaxVarintLen64+len(group)+len(policy))
	b = binary.AppendUvarint(b, uint64(len(group)))
	return string(append(append(b, group...), policy...))
}

// isGroupPolicy reports whether gp is groupPolicy(group, policy), without
// building it.
func isGroupPolicy(gp, group, policy string) bool {
	var n uint64
	k := 0
	for shift := 0; ; shift += 7 {
		if k >= len(gp) || shift > 63 {
			return false
		}
		c := gp[k]
		k++
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	return n == uint64(len(group)) && len(gp) == k+len(group)+len(policy) &&
		gp[k:k+len(group)] == group && gp[k+len(group):] == policy
}

// memLease is one held slot of a concurrency tier.
type memLease struct {
	id     uint64
	expiry int64 // unix nanoseconds
}

// memLink links a slot into its shard's recency list by slot index; -1
// ends the list.
type memLink struct{ prev, next int32 }

type memShard struct {
	mu    sync.Mutex
	slots []memSlot // len is 0 or a power of two
	live  int       // slots holding an entry
	used  int       // live slots and tombstones
	// lru parallels slots when MaxKeys is set: head is the most recently
	// used slot, tail the least.
	lru        []memLink
	head, tail int32
	// sets holds the lease sets of concurrency tiers, indexed from their
	// slots; free lists the unused ones.
	sets [][]memLease
	free []int32
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
		shift:  uint(64 - bits.TrailingZeros(uint(n))),
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
		s.shards[i].head, s.shards[i].tail = -1, -1
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

// hash returns the hash of one tier's key. Its top bits pick the shard;
// with slotUsed set, it is what the key's slot holds.
func (s *MemoryStore) hash(group, policy, key string) uint64 {
	h := maphash.String(s.seed, key)
	h ^= maphash.String(s.seed, policy) * 0x9e3779b97f4a7c15
	return h ^ maphash.String(s.seed, group)*0xc2b2ae3d27d4eb4f
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
	// The per-tier scratch arrays live on the stack, and zeroing them is a
	// measurable part of a decision, so requests of up to four tiers (the
	// common case) get small ones.
	n := len(req.Tiers)
	if !req.Plain() {
		s.decideStates(req, d, now.UnixNano())
		return nil
	}
	if n == 1 {
		s.decideOne(req, d, now.UnixNano())
		return nil
	}
	if n <= 4 {
		var (
			hashes       [4]uint64
			shard, order [4]uint32
			slot         [4]int32
			backlog      [4]time.Duration
		)
		s.decide(req, d, now.UnixNano(), hashes[:n], shard[:n], order[:n], slot[:n], backlog[:n])
		return nil
	}
	var (
		hashes       [MaxTiers]uint64
		shard, order [MaxTiers]uint32
		slot         [MaxTiers]int32
		backlog      [MaxTiers]time.Duration
	)
	s.decide(req, d, now.UnixNano(), hashes[:n], shard[:n], order[:n], slot[:n], backlog[:n])
	return nil
}

// decideOne takes a validated one-tier decision: decide without the
// scratch arrays and the lock ordering, which one tier does not need.
func (s *MemoryStore) decideOne(req *Request, d *Decision, nowNs int64) {
	t := &req.Tiers[0]
	h := s.hash(req.Group, t.Policy.Name, t.Key)
	sh := &s.shards[h>>s.shift]
	h |= slotUsed
	var backlog [1]time.Duration
	sh.mu.Lock()
	i := sh.find(h, req.Group, t.Policy.Name, t.Key)
	if i >= 0 {
		if sh.lru != nil {
			sh.touch(i) // any access counts as use, a rejection too
		}
		if b := sh.slots[i].tat - nowNs; b > 0 {
			backlog[0] = time.Duration(b)
		}
	}
	Evaluate(req, backlog[:], d)
	if d.Allowed && d.Tiers[0].Consumed {
		tat := nowNs + int64(d.Tiers[0].ResetAfter)
		if i >= 0 {
			sh.slots[i].tat = tat
		} else {
			s.insert(sh, h, req.Group, t.Policy.Name, t.Key, tat, nowNs)
		}
	}
	sh.mu.Unlock()
}

// decide takes a validated decision. The slices have one element per tier:
// hashes (slotUsed set), shards, distinct shards in ascending order (filled
// here), the slot of each known key or -1, and each tier's TAT − now
// clamped at zero; all but order start zeroed.
func (s *MemoryStore) decide(req *Request, d *Decision, nowNs int64, hashes []uint64, shard, order []uint32, slot []int32, backlog []time.Duration) {
	n := len(req.Tiers)
	locked := s.lockTiers(req.Group, req.Tiers, hashes, shard, order)
	for i := range n {
		sh := &s.shards[shard[i]]
		t := &req.Tiers[i]
		slot[i] = sh.find(hashes[i], req.Group, t.Policy.Name, t.Key)
		if slot[i] < 0 {
			continue
		}
		if sh.lru != nil {
			sh.touch(slot[i]) // any access counts as use, a rejection too
		}
		if b := sh.slots[slot[i]].tat - nowNs; b > 0 {
			backlog[i] = time.Duration(b)
		}
	}
	Evaluate(req, backlog, d)
	if d.Allowed {
		// Known keys first: an insert may grow a table and move its slots.
		for i := range n {
			if d.Tiers[i].Consumed && slot[i] >= 0 {
				s.shards[shard[i]].slots[slot[i]].tat = nowNs + int64(d.Tiers[i].ResetAfter)
			}
		}
		for i := range n {
			if d.Tiers[i].Consumed && slot[i] < 0 {
				t := &req.Tiers[i]
				s.insert(&s.shards[shard[i]], hashes[i], req.Group, t.Policy.Name, t.Key,
					nowNs+int64(d.Tiers[i].ResetAfter), nowNs)
			}
		}
	}
	for _, o := range order[:locked] {
		s.shards[o].mu.Unlock()
	}
}

// decideStates takes a validated decision with tiers that are not all
// plain GCRA, on EvaluateStates; small requests get small scratch arrays,
// as in Decide.
func (s *MemoryStore) decideStates(req *Request, d *Decision, nowNs int64) {
	n := len(req.Tiers)
	if n == 1 {
		s.decideOneState(req, d, nowNs)
		return
	}
	if n <= 4 {
		var (
			hashes       [4]uint64
			shard, order [4]uint32
			slot         [4]int32
			st           [4]State
		)
		s.decideStatesIn(req, d, nowNs, hashes[:n], shard[:n], order[:n], slot[:n], st[:n])
		return
	}
	var (
		hashes       [MaxTiers]uint64
		shard, order [MaxTiers]uint32
		slot         [MaxTiers]int32
		st           [MaxTiers]State
	)
	s.decideStatesIn(req, d, nowNs, hashes[:n], shard[:n], order[:n], slot[:n], st[:n])
}

// decideOneState is decideStatesIn for one tier, without the scratch
// arrays and the lock ordering.
func (s *MemoryStore) decideOneState(req *Request, d *Decision, nowNs int64) {
	t := &req.Tiers[0]
	h := s.hash(req.Group, t.Policy.Name, t.Key)
	sh := &s.shards[h>>s.shift]
	h |= slotUsed
	var st [1]State
	sh.mu.Lock()
	i := sh.find(h, req.Group, t.Policy.Name, t.Key)
	if i >= 0 {
		if sh.lru != nil {
			sh.touch(i)
		}
		sh.read(i, t.Policy, nowNs, &st[0])
	}
	EvaluateStates(req, nowNs, st[:], d)
	var id uint64
	if d.Tiers[0].Consumed {
		if i < 0 {
			i = s.insert(sh, h, req.Group, t.Policy.Name, t.Key, 0, nowNs)
		}
		if t.Policy.Algorithm == Concurrency {
			id = s.leaseSeq.Add(1)
		}
		sh.write(i, t.Policy, nowNs, &st[0], id)
	}
	sh.mu.Unlock()
	if id != 0 {
		d.Lease = Lease{ID: strconv.FormatUint(id, 36), Group: req.Group, Tiers: []Tier{*t}}
	}
}

// lockTiers hashes the tiers of req into hashes (slotUsed set) and shard,
// and locks their distinct shards in ascending order, which it lists in
// order; it returns how many it locked.
func (s *MemoryStore) lockTiers(group string, tiers []Tier, hashes []uint64, shard, order []uint32) int {
	locked := 0
	for i := range tiers {
		t := &tiers[i]
		h := s.hash(group, t.Policy.Name, t.Key)
		hashes[i], shard[i] = h|slotUsed, uint32(h>>s.shift)
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
	return locked
}

func (s *MemoryStore) unlock(order []uint32) {
	for _, o := range order {
		s.shards[o].mu.Unlock()
	}
}

func (s *MemoryStore) decideStatesIn(req *Request, d *Decision, nowNs int64, hashes []uint64, shard, order []uint32, slot []int32, st []State) {
	n := len(req.Tiers)
	locked := s.lockTiers(req.Group, req.Tiers, hashes, shard, order)
	for i := range n {
		sh := &s.shards[shard[i]]
		t := &req.Tiers[i]
		slot[i] = sh.find(hashes[i], req.Group, t.Policy.Name, t.Key)
		if slot[i] < 0 {
			continue
		}
		if sh.lru != nil {
			sh.touch(slot[i])
		}
		sh.read(slot[i], t.Policy, nowNs, &st[i])
	}
	EvaluateStates(req, nowNs, st, d)
	var id uint64
	// Known keys first: an insert may grow a table and move its slots.
	for pass := range 2 {
		for i := range n {
			ts := &d.Tiers[i]
			if !ts.Consumed || (slot[i] >= 0) != (pass == 0) {
				continue
			}
			sh := &s.shards[shard[i]]
			t := &req.Tiers[i]
			if slot[i] < 0 {
				slot[i] = s.insert(sh, hashes[i], req.Group, t.Policy.Name, t.Key, 0, nowNs)
			}
			if t.Policy.Algorithm == Concurrency && id == 0 {
				id = s.leaseSeq.Add(1)
			}
			sh.write(slot[i], t.Policy, nowNs, &st[i], id)
		}
	}
	s.unlock(order[:locked])
	if id != 0 {
		l := Lease{ID: strconv.FormatUint(id, 36), Group: req.Group}
		for i := range n {
			if d.Tiers[i].Consumed && req.Tiers[i].Policy.Algorithm == Concurrency {
				l.Tiers = append(l.Tiers, req.Tiers[i])
			}
		}
		d.Lease = l
	}
}

// read loads the state of slot i for policy p. For a concurrency tier it
// drops the expired leases first.
func (sh *memShard) read(i int32, p *Policy, nowNs int64, st *State) {
	e := &sh.slots[i]
	if (p.Algorithm == Concurrency) != (e.count < 0) {
		// The key holds another algorithm's state (a policy that changed
		// algorithm but kept its name): start afresh.
		return
	}
	if p.Algorithm != Concurrency {
		*st = State{Until: time.Duration(e.tat - nowNs), Count: e.count, Prev: e.prev}
		return
	}
	set := sh.sets[^e.count]
	kept := set[:0]
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for _, l := range set {
		if l.expiry > nowNs {
			kept = append(kept, l)
			first, last = min(first, l.expiry), max(last, l.expiry)
		}
	}
	sh.sets[^e.count] = kept
	if len(kept) > 0 {
		*st = State{Until: time.Duration(last - nowNs), Count: int64(len(kept)), First: time.Duration(first - nowNs)}
	}
}

// write stores the state after a decision in slot i; for a concurrency
// tier it adds the lease id.
func (sh *memShard) write(i int32, p *Policy, nowNs int64, st *State, id uint64) {
	e := &sh.slots[i]
	e.tat = nowNs + int64(st.Until)
	if p.Algorithm != Concurrency {
		if e.count < 0 {
			sh.freeSet(e)
		}
		e.count, e.prev = st.Count, st.Prev
		return
	}
	if e.count >= 0 {
		var j int32
		if k := len(sh.free); k > 0 {
			j, sh.free = sh.free[k-1], sh.free[:k-1]
		} else {
			j = int32(len(sh.sets))
			sh.sets = append(sh.sets, nil)
		}
		e.count, e.prev = ^int64(j), 0
	}
	sh.sets[^e.count] = append(sh.sets[^e.count], memLease{id: id, expiry: p.LeaseExpiry(nowNs)})
}

// freeSet returns the lease set of slot e to the free list.
func (sh *memShard) freeSet(e *memSlot) {
	sh.sets[^e.count] = sh.sets[^e.count][:0]
	sh.free = append(sh.free, int32(^e.count))
	e.count = 0
}

// Release implements Releaser: it frees the lease's slots.
func (s *MemoryStore) Release(_ context.Context, l *Lease) error {
	if !l.Held() || len(l.Tiers) == 0 {
		return nil
	}
	id, err := strconv.ParseUint(l.ID, 36, 64)
	if err != nil || len(l.Tiers) > MaxTiers {
		return nil // not a lease of this store: it holds nothing here
	}
	var (
		hashes       [MaxTiers]uint64
		shard, order [MaxTiers]uint32
	)
	n := len(l.Tiers)
	locked := s.lockTiers(l.Group, l.Tiers, hashes[:n], shard[:n], order[:n])
	for i := range l.Tiers {
		t := &l.Tiers[i]
		sh := &s.shards[shard[i]]
		j := sh.find(hashes[i], l.Group, t.Policy.Name, t.Key)
		if j < 0 || sh.slots[j].count >= 0 {
			continue
		}
		e := &sh.slots[j]
		set := sh.sets[^e.count]
		kept, last := set[:0], int64(0)
		for _, x := range set {
			if x.id != id {
				kept = append(kept, x)
				last = max(last, x.expiry)
			}
		}
		sh.sets[^e.count] = kept
		e.tat = last // an empty set carries no information: Sweep drops it
	}
	s.unlock(order[:locked])
	return nil
}

// find returns the slot holding the key, or -1. The shard is locked.
func (sh *memShard) find(h uint64, group, policy, key string) int32 {
	if len(sh.slots) == 0 {
		return -1
	}
	mask := uint64(len(sh.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := &sh.slots[i]
		switch {
		case e.hash == slotEmpty:
			return -1
		case e.hash == h && e.name == key && isGroupPolicy(e.gp, group, policy):
			return int32(i)
		}
	}
}

// insert adds a key known to be absent to a locked shard, evicting the
// least recently used entry if the shard is full, and returns its slot.
func (s *MemoryStore) insert(sh *memShard, h uint64, group, policy, key string, tat, nowNs int64) int32 {
	if s.perShard > 0 && sh.live >= s.perShard && sh.tail >= 0 {
		victim := sh.tail
		if sh.slots[victim].tat > nowNs {
			s.evictions.Add(1)
		}
		sh.remove(victim)
	}
	// Keep at most 3/4 of the slots used, so that probes stay short and
	// always reach an empty slot.
	if (sh.used+1)*4 > len(sh.slots)*3 {
		sh.rebuild(s.perShard > 0)
	}
	i := sh.place(h)
	sh.slots[i] = memSlot{hash: h, tat: tat, gp: groupPolicy(group, policy), name: key}
	sh.live++
	if sh.lru != nil {
		sh.pushFront(i)
	}
	return i
}

// place returns a free slot (empty or a tombstone) for hash h, counting it
// as used if it was empty.
func (sh *memShard) place(h uint64) int32 {
	mask := uint64(len(sh.slots) - 1)
	i := h & mask
	for sh.slots[i].hash&slotUsed != 0 {
		i = (i + 1) & mask
	}
	if sh.slots[i].hash == slotEmpty {
		sh.used++
	}
	return int32(i)
}

// remove turns slot i into a tombstone.
func (sh *memShard) remove(i int32) {
	if sh.lru != nil {
		sh.unlink(i)
	}
	if sh.slots[i].count < 0 {
		sh.freeSet(&sh.slots[i])
	}
	sh.slots[i] = memSlot{hash: slotDeleted}
	sh.live--
}

// rebuild rehashes the live entries into a table at most half full,
// dropping tombstones; the recency order is kept.
func (sh *memShard) rebuild(withLRU bool) {
	old, oldLRU, oldTail := sh.slots, sh.lru, sh.tail
	size := 8
	for size < (sh.live+1)*2 {
		size <<= 1
	}
	sh.slots, sh.lru, sh.used, sh.live = make([]memSlot, size), nil, 0, 0
	sh.head, sh.tail = -1, -1
	if withLRU {
		sh.lru = make([]memLink, size)
	}
	move := func(e *memSlot) {
		i := sh.place(e.hash)
		sh.slots[i] = *e
		sh.live++
		if sh.lru != nil {
			sh.pushFront(i)
		}
	}
	if oldLRU != nil {
		// From least to most recent, so that pushFront rebuilds the order.
		for i := oldTail; i >= 0; i = oldLRU[i].prev {
			move(&old[i])
		}
		return
	}
	for i := range old {
		if old[i].hash&slotUsed != 0 {
			move(&old[i])
		}
	}
}

func (sh *memShard) pushFront(i int32) {
	sh.lru[i] = memLink{prev: -1, next: sh.head}
	if sh.head >= 0 {
		sh.lru[sh.head].prev = i
	} else {
		sh.tail = i
	}
	sh.head = i
}

func (sh *memShard) unlink(i int32) {
	l := sh.lru[i]
	if l.prev >= 0 {
		sh.lru[l.prev].next = l.next
	} else {
		sh.head = l.next
	}
	if l.next >= 0 {
		sh.lru[l.next].prev = l.prev
	} else {
		sh.tail = l.prev
	}
}

func (sh *memShard) touch(i int32) {
	if sh.head == i {
		return
	}
	sh.unlink(i)
	sh.pushFront(i)
}

// Sweep drops every entry whose TAT is not after now: such an entry
// carries no information, since a missing key behaves the same. It returns
// how many entries it dropped, and shrinks tables that emptied.
func (s *MemoryStore) Sweep(now time.Time) int {
	nowNs, dropped := now.UnixNano(), 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n := 0
		for j := range sh.slots {
			if e := &sh.slots[j]; e.hash&slotUsed != 0 && e.tat <= nowNs {
				sh.remove(int32(j))
				n++
			}
		}
		if n > 0 {
			if sh.live == 0 {
				sh.slots, sh.lru, sh.used = nil, nil, 0
				sh.sets, sh.free = nil, nil
				sh.head, sh.tail = -1, -1
			} else {
				sh.rebuild(s.perShard > 0)
			}
		}
		dropped += n
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
		st.Keys += sh.live
		sh.mu.Unlock()
	}
	return st
}
