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
// Speed and size design: a decision hashes each (group, policy, key) once,
// with a keyed 128-bit hash (two maphash sums of one unambiguous encoding,
// under two random per-process seeds); the store keeps that hash, never the
// strings. The top bits of the first half pick the shard, the second half
// the slot. Each shard's table is open-addressed with linear probing at a
// load factor between 0.7 and 0.8, and a slot is 32 bytes (the hash, the
// TAT and one word of state), so a tracked key costs about 40–46 bytes and
// a decision on a known key usually costs one cache miss per tier and
// allocates nothing. Two keys are told apart by their hashes alone: see
// the package documentation for the collision probability.
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
	seed     maphash.Seed // first half of a key's hash
	seed2    maphash.Seed // second half
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

// Slot states: a slot's h1 is slotEmpty, slotDeleted (a tombstone that
// probes step over), or the first half of a key's hash with slotUsed set.
const (
	slotEmpty   = 0
	slotDeleted = 2
	slotUsed    = 1
)

// memHash is a key's 128-bit hash; h1 has slotUsed set, so 127 of its
// bits are random.
type memHash struct{ h1, h2 uint64 }

// memSlot is one table slot, 32 bytes: two per cache line. tat is the
// instant after which the entry carries no information: the TAT of a GCRA
// tier, State.Until as an instant for the others (see State). aux is the
// rest of the state: when aux >= 0 a window tier's Count in its low 32 bits
// and Prev above them (0 for GCRA); when aux < 0, ^aux indexes the shard's
// side records, which hold a concurrency tier's lease set or window counts
// too large to pack.
type memSlot struct {
	h1, h2 uint64
	tat    int64 // unix nanoseconds
	aux    int64
}

// packCounts packs a window tier's counts into a slot's aux, if they fit.
func packCounts(count, prev int64) (int64, bool) {
	if uint64(count) >= 1<<32 || uint64(prev) >= 1<<31 { // negative ones too
		return 0, false
	}
	return count | prev<<32, true
}

// memSide is a side record of a slot whose state does not fit in aux.
type memSide struct {
	leases      []memLease
	count, prev int64
	wide        bool // holds window counts, not leases
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
	// sides holds the side records, indexed from their slots; free lists
	// the unused ones.
	sides []memSide
	free  []int32
	_     [40]byte // keep shards on separate cache lines
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
		seed2:  maphash.MakeSeed(),
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

// hash returns the 128-bit hash of one tier's key (slotUsed set in h1)
// and its shard, the top bits of h1. Both halves hash the same encoding:
// the group's length as a uvarint, the group, the policy name's length,
// the policy name, the key; the lengths make it unambiguous.
func (s *MemoryStore) hash(group, policy, key string) (memHash, uint32) {
	var buf [128]byte
	if len(group)+len(policy)+len(key)+2*binary.MaxVarintLen64 > len(buf) {
		return s.hashLong(group, policy, key)
	}
	b := binary.AppendUvarint(buf[:0], uint64(len(group)))
	b = append(b, group...)
	b = binary.AppendUvarint(b, uint64(len(policy)))
	b = append(b, policy...)
	b = append(b, key...)
	h1 := maphash.Bytes(s.seed, b)
	return memHash{h1 | slotUsed, maphash.Bytes(s.seed2, b)}, uint32(h1 >> s.shift)
}

// hashLong is hash for long strings, streaming them (maphash.Hash gives
// the same sums as maphash.Bytes of the concatenation).
func (s *MemoryStore) hashLong(group, policy, key string) (memHash, uint32) {
	var n [binary.MaxVarintLen64]byte
	var hs [2]maphash.Hash
	for i, seed := range [2]maphash.Seed{s.seed, s.seed2} {
		h := &hs[i]
		h.SetSeed(seed)
		h.Write(binary.AppendUvarint(n[:0], uint64(len(group))))
		h.WriteString(group)
		h.Write(binary.AppendUvarint(n[:0], uint64(len(policy))))
		h.WriteString(policy)
		h.WriteString(key)
	}
	h1 := hs[0].Sum64()
	return memHash{h1 | slotUsed, hs[1].Sum64()}, uint32(h1 >> s.shift)
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
	d.At = now
	// The per-tier scratch arrays live on the stack, and zeroing them is a
	// measurable part of a decision, so requests of up to four tiers (the
	// common case) get small ones.
	n := len(req.Tiers)
	if !req.Plain() {
		if n == 1 {
			s.decideOneState(req, d, now.UnixNano())
			return nil
		}
		s.decideStates(req, d, now.UnixNano())
		return nil
	}
	if n == 1 {
		s.decideOne(req, d, now.UnixNano())
		return nil
	}
	if n <= 4 {
		var (
			hashes       [4]memHash
			shard, order [4]uint32
			slot         [4]int32
			backlog      [4]time.Duration
		)
		s.decide(req, d, now.UnixNano(), hashes[:n], shard[:n], order[:n], slot[:n], backlog[:n])
		return nil
	}
	var (
		hashes       [MaxTiers]memHash
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
	h, shard := s.hash(req.Group, t.Policy.Name, t.Key)
	sh := &s.shards[shard]
	var backlog [1]time.Duration
	sh.mu.Lock()
	i := sh.find(h)
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
			s.insert(sh, h, tat, nowNs)
		}
	}
	sh.mu.Unlock()
}

// decide takes a validated decision. The slices have one element per tier:
// hashes (slotUsed set), shards, distinct shards in ascending order (filled
// here), the slot of each known key or -1, and each tier's TAT − now
// clamped at zero; all but order start zeroed.
func (s *MemoryStore) decide(req *Request, d *Decision, nowNs int64, hashes []memHash, shard, order []uint32, slot []int32, backlog []time.Duration) {
	n := len(req.Tiers)
	locked := s.lockTiers(req.Group, req.Tiers, hashes, shard, order)
	for i := range n {
		sh := &s.shards[shard[i]]
		slot[i] = sh.find(hashes[i])
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
				s.insert(&s.shards[shard[i]], hashes[i], nowNs+int64(d.Tiers[i].ResetAfter), nowNs)
			}
		}
	}
	for _, o := range order[:locked] {
		s.shards[o].mu.Unlock()
	}
}

// decideStates takes a validated decision of several tiers that are not
// all plain GCRA, on EvaluateStates; small requests get small scratch
// arrays, as in Decide.
func (s *MemoryStore) decideStates(req *Request, d *Decision, nowNs int64) {
	n := len(req.Tiers)
	if n <= 4 {
		var (
			hashes       [4]memHash
			shard, order [4]uint32
			slot         [4]int32
			st           [4]State
		)
		s.decideStatesIn(req, d, nowNs, hashes[:n], shard[:n], order[:n], slot[:n], st[:n])
		return
	}
	var (
		hashes       [MaxTiers]memHash
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
	h, shard := s.hash(req.Group, t.Policy.Name, t.Key)
	sh := &s.shards[shard]
	sh.mu.Lock()
	var st [1]State
	i := sh.find(h)
	if i >= 0 {
		if sh.lru != nil {
			sh.touch(i)
		}
		if !sh.slots[i].loadPacked(t.Policy, nowNs, &st[0]) {
			sh.read(i, t.Policy, nowNs, &st[0])
		}
	}
	// EvaluateStates, with its dispatch of one-tier windows inlined.
	switch t.Policy.Algorithm {
	case FixedWindow:
		evaluateFixed(req, nowNs, &st[0], d)
	case SlidingWindow:
		evaluateSliding(req, nowNs, &st[0], d)
	default:
		EvaluateStates(req, nowNs, st[:], d)
	}
	if !d.Tiers[0].Consumed {
		sh.mu.Unlock()
		return
	}
	if i < 0 {
		i = s.insert(sh, h, 0, nowNs)
	}
	p := t.Policy
	if p.Algorithm != Concurrency {
		if !sh.slots[i].storePacked(p, nowNs, &st[0]) {
			sh.write(i, p, nowNs, &st[0], 0)
		}
		sh.mu.Unlock()
		return
	}
	id := s.leaseSeq.Add(1)
	sh.write(i, p, nowNs, &st[0], id)
	sh.mu.Unlock()
	d.Lease = Lease{ID: strconv.FormatUint(id, 36), Group: req.Group, Tiers: []Tier{*t}}
}

// lockTiers hashes the tiers of req into hashes and shard, and locks
// their distinct shards in ascending order, which it lists in order; it
// returns how many it locked.
func (s *MemoryStore) lockTiers(group string, tiers []Tier, hashes []memHash, shard, order []uint32) int {
	locked := 0
	for i := range tiers {
		t := &tiers[i]
		hashes[i], shard[i] = s.hash(group, t.Policy.Name, t.Key)
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

func (s *MemoryStore) decideStatesIn(req *Request, d *Decision, nowNs int64, hashes []memHash, shard, order []uint32, slot []int32, st []State) {
	n := len(req.Tiers)
	locked := s.lockTiers(req.Group, req.Tiers, hashes, shard, order)
	for i := range n {
		sh := &s.shards[shard[i]]
		slot[i] = sh.find(hashes[i])
		if slot[i] < 0 {
			continue
		}
		if sh.lru != nil {
			sh.touch(slot[i])
		}
		sh.read(slot[i], req.Tiers[i].Policy, nowNs, &st[i])
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
				slot[i] = s.insert(sh, hashes[i], 0, nowNs)
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

// loadPacked sets st to slot e's state for policy p when the slot holds
// it all (a GCRA or window tier whose counts fit in aux), and reports
// whether it did: the common case, small enough to inline where read is
// not.
func (e *memSlot) loadPacked(p *Policy, nowNs int64, st *State) bool {
	if e.aux < 0 || p.Algorithm == Concurrency {
		return false
	}
	st.Until, st.Count, st.Prev, st.First = time.Duration(e.tat-nowNs), e.aux&(1<<32-1), e.aux>>32, 0
	return true
}

// storePacked is loadPacked's converse: it writes st, the state after a
// decision at nowNs, into slot e and reports true when the slot can hold
// it all; otherwise it leaves e alone.
func (e *memSlot) storePacked(p *Policy, nowNs int64, st *State) bool {
	if e.aux < 0 || p.Algorithm == Concurrency {
		return false
	}
	v, ok := packCounts(st.Count, st.Prev)
	if ok {
		e.tat, e.aux = nowNs+int64(st.Until), v
	}
	return ok
}

// read loads the state of slot i for policy p. For a concurrency tier it
// drops the expired leases first.
func (sh *memShard) read(i int32, p *Policy, nowNs int64, st *State) {
	e := &sh.slots[i]
	if e.loadPacked(p, nowNs, st) {
		return
	}
	conc := p.Algorithm == Concurrency
	if e.aux >= 0 {
		// The key holds another algorithm's state (a policy that changed
		// algorithm but kept its name): start afresh.
		return
	}
	sd := &sh.sides[^e.aux]
	if sd.wide {
		if !conc {
			*st = State{Until: time.Duration(e.tat - nowNs), Count: sd.count, Prev: sd.prev}
		}
		return
	}
	if !conc {
		return
	}
	kept := sd.leases[:0]
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for _, l := range sd.leases {
		if l.expiry > nowNs {
			kept = append(kept, l)
			first, last = min(first, l.expiry), max(last, l.expiry)
		}
	}
	sd.leases = kept
	if len(kept) > 0 {
		*st = State{Until: time.Duration(last - nowNs), Count: int64(len(kept)), First: time.Duration(first - nowNs)}
	}
}

// write stores the state after a decision in slot i; for a concurrency
// tier it adds the lease id.
func (sh *memShard) write(i int32, p *Policy, nowNs int64, st *State, id uint64) {
	e := &sh.slots[i]
	if e.storePacked(p, nowNs, st) {
		return
	}
	e.tat = nowNs + int64(st.Until)
	if p.Algorithm != Concurrency {
		if v, ok := packCounts(st.Count, st.Prev); ok {
			if e.aux < 0 {
				sh.freeSide(e)
			}
			e.aux = v
			return
		}
		if e.aux < 0 && !sh.sides[^e.aux].wide {
			sh.freeSide(e)
		}
		if e.aux >= 0 {
			e.aux = ^int64(sh.newSide())
		}
		sd := &sh.sides[^e.aux]
		sd.wide, sd.count, sd.prev = true, st.Count, st.Prev
		return
	}
	if e.aux < 0 && sh.sides[^e.aux].wide {
		sh.freeSide(e)
	}
	if e.aux >= 0 {
		e.aux = ^int64(sh.newSide())
	}
	sd := &sh.sides[^e.aux]
	sd.leases = append(sd.leases, memLease{id: id, expiry: p.LeaseExpiry(nowNs)})
}

// newSide returns the index of an unused, empty side record.
func (sh *memShard) newSide() int32 {
	if k := len(sh.free); k > 0 {
		j := sh.free[k-1]
		sh.free = sh.free[:k-1]
		return j
	}
	sh.sides = append(sh.sides, memSide{})
	return int32(len(sh.sides) - 1)
}

// freeSide empties the side record of slot e and returns it to the free
// list; e then holds no counts.
func (sh *memShard) freeSide(e *memSlot) {
	sd := &sh.sides[^e.aux]
	*sd = memSide{leases: sd.leases[:0]}
	sh.free = append(sh.free, int32(^e.aux))
	e.aux = 0
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
		hashes       [MaxTiers]memHash
		shard, order [MaxTiers]uint32
	)
	n := len(l.Tiers)
	locked := s.lockTiers(l.Group, l.Tiers, hashes[:n], shard[:n], order[:n])
	for i := range l.Tiers {
		sh := &s.shards[shard[i]]
		j := sh.find(hashes[i])
		if j < 0 || sh.slots[j].aux >= 0 || sh.sides[^sh.slots[j].aux].wide {
			continue
		}
		e := &sh.slots[j]
		sd := &sh.sides[^e.aux]
		kept, last := sd.leases[:0], int64(0)
		for _, x := range sd.leases {
			if x.id != id {
				kept = append(kept, x)
				last = max(last, x.expiry)
			}
		}
		sd.leases = kept
		e.tat = last // an empty set carries no information: Sweep drops it
	}
	s.unlock(order[:locked])
	return nil
}

// find returns the slot holding the key of hash h, or -1. The shard is
// locked.
func (sh *memShard) find(h memHash) int32 {
	n := uint64(len(sh.slots))
	if n == 0 {
		return -1
	}
	i, _ := bits.Mul64(h.h2, n) // h.h2 scaled to [0, n)
	for {
		e := &sh.slots[i]
		if e.h1 == h.h1 && e.h2 == h.h2 {
			return int32(i)
		}
		if e.h1 == slotEmpty {
			return -1
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Load factors: a table is rebuilt when an insert would make more than
// maxLoad of its slots used (entries and tombstones), into one where the
// entries fill rebuiltLoad. Between the two, a known key's probe reads 2–3
// slots on average, about one cache line.
const (
	maxLoadNum, maxLoadDen         = 4, 5  // 0.8
	rebuiltLoadNum, rebuiltLoadDen = 7, 10 // 0.7
)

// insert adds a key known to be absent to a locked shard, evicting the
// least recently used entry if the shard is full, and returns its slot.
func (s *MemoryStore) insert(sh *memShard, h memHash, tat, nowNs int64) int32 {
	if s.perShard > 0 && sh.live >= s.perShard && sh.tail >= 0 {
		victim := sh.tail
		if sh.slots[victim].tat > nowNs {
			s.evictions.Add(1)
		}
		sh.remove(victim)
	}
	if (sh.used+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
		sh.rebuild(s.perShard > 0)
	}
	i := sh.place(h.h2)
	sh.slots[i] = memSlot{h1: h.h1, h2: h.h2, tat: tat}
	sh.live++
	if sh.lru != nil {
		sh.pushFront(i)
	}
	return i
}

// place returns a free slot (empty or a tombstone) for a key whose hash's
// second half is h2, counting it as used if it was empty.
func (sh *memShard) place(h2 uint64) int32 {
	n := uint64(len(sh.slots))
	i, _ := bits.Mul64(h2, n)
	for sh.slots[i].h1&slotUsed != 0 {
		if i++; i == n {
			i = 0
		}
	}
	if sh.slots[i].h1 == slotEmpty {
		sh.used++
	}
	return int32(i)
}

// remove turns slot i into a tombstone.
func (sh *memShard) remove(i int32) {
	if sh.lru != nil {
		sh.unlink(i)
	}
	if sh.slots[i].aux < 0 {
		sh.freeSide(&sh.slots[i])
	}
	sh.slots[i] = memSlot{h1: slotDeleted}
	sh.live--
}

// rebuild rehashes the live entries into a table they fill to about
// rebuiltLoad (with room for one more), dropping tombstones; the recency
// order is kept.
func (sh *memShard) rebuild(withLRU bool) {
	old, oldLRU, oldTail := sh.slots, sh.lru, sh.tail
	size := max(8, (sh.live+1)*rebuiltLoadDen/rebuiltLoadNum+1)
	sh.slots, sh.lru, sh.used, sh.live = make([]memSlot, size), nil, 0, 0
	sh.head, sh.tail = -1, -1
	if withLRU {
		sh.lru = make([]memLink, size)
	}
	move := func(e *memSlot) {
		i := sh.place(e.h2)
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
		if old[i].h1&slotUsed != 0 {
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
			if e := &sh.slots[j]; e.h1&slotUsed != 0 && e.tat <= nowNs {
				sh.remove(int32(j))
				n++
			}
		}
		if n > 0 {
			if sh.live == 0 {
				sh.slots, sh.lru, sh.used = nil, nil, 0
				sh.sides, sh.free = nil, nil
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
