package cache

import (
	"container/list"
	"sync/atomic"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// item is one entry, or one xorb's manifest, known to an index.
type item[V any] struct {
	key  Key // for a manifest, Key{Xorb: xorb}
	size int64
	val  V
	elem *list.Element
	// manifest marks the manifest of key.Xorb. Manifests share the LRU
	// list and the size with entries but are not found by range lookups.
	manifest bool
}

// index is an LRU list of keys with a per-xorb view for covering lookups,
// and the manifests of xorbs. It is not safe for concurrent use; each store
// guards it with its mutex.
type index[V any] struct {
	ll        list.List // front = most recently used; values are *item[V]
	byKey     map[Key]*item[V]
	byXorb    map[merklehash.Hash][]*item[V]
	manifests map[merklehash.Hash]*item[V]
	size      int64 // of entries and manifests
}

func newIndex[V any]() *index[V] {
	return &index[V]{
		byKey:     make(map[Key]*item[V]),
		byXorb:    make(map[merklehash.Hash][]*item[V]),
		manifests: make(map[merklehash.Hash]*item[V]),
	}
}

// len is the number of entries, manifests not included.
func (x *index[V]) len() int { return len(x.byKey) }

// manifestCount is the number of manifests.
func (x *index[V]) manifestCount() int { return len(x.manifests) }

// items is the number of entries and manifests.
func (x *index[V]) items() int { return x.ll.Len() }

// manifest returns the manifest item of xorb, or nil.
func (x *index[V]) manifest(xorb merklehash.Hash) *item[V] { return x.manifests[xorb] }

// addManifest records the manifest of xorb as the most recently used item;
// it must not be present.
func (x *index[V]) addManifest(xorb merklehash.Hash, size int64, v V) *item[V] {
	it := &item[V]{key: Key{Xorb: xorb}, size: size, val: v, manifest: true}
	it.elem = x.ll.PushFront(it)
	x.manifests[xorb] = it
	x.size += size
	return it
}

// covering returns the stored item of xorb with the fewest chunks whose range
// contains [start, end), or nil.
func (x *index[V]) covering(xorb merklehash.Hash, start, end uint32) *item[V] {
	var best *item[V]
	want := Key{Xorb: xorb, Start: start, End: end}
	for _, it := range x.byXorb[xorb] {
		if it.key.Covers(want) && (best == nil || it.key.Len() < best.key.Len()) {
			best = it
		}
	}
	return best
}

// covered returns the items whose range lies inside k's (k itself excluded).
func (x *index[V]) covered(k Key) []*item[V] {
	var out []*item[V]
	for _, it := range x.byXorb[k.Xorb] {
		if it.key != k && k.Covers(it.key) {
			out = append(out, it)
		}
	}
	return out
}

// overlapping returns the items of k's xorb that share a chunk with k.
func (x *index[V]) overlapping(k Key) []*item[V] {
	var out []*item[V]
	for _, it := range x.byXorb[k.Xorb] {
		if it.key.Overlaps(k) {
			out = append(out, it)
		}
	}
	return out
}

// add records k as the most recently used item; k must not be present.
func (x *index[V]) add(k Key, size int64, v V) *item[V] {
	it := &item[V]{key: k, size: size, val: v}
	it.elem = x.ll.PushFront(it)
	x.byKey[k] = it
	x.byXorb[k.Xorb] = append(x.byXorb[k.Xorb], it)
	x.size += size
	return it
}

func (x *index[V]) touch(it *item[V]) { x.ll.MoveToFront(it.elem) }

// remove forgets it and reports whether it was still present (a caller that
// looked it up earlier and dropped the lock may find it already gone).
func (x *index[V]) remove(it *item[V]) bool {
	if it.manifest {
		if x.manifests[it.key.Xorb] != it {
			return false
		}
		delete(x.manifests, it.key.Xorb)
		x.ll.Remove(it.elem)
		x.size -= it.size
		return true
	}
	if x.byKey[it.key] != it {
		return false
	}
	delete(x.byKey, it.key)
	x.ll.Remove(it.elem)
	x.size -= it.size
	s := x.byXorb[it.key.Xorb]
	for i, o := range s {
		if o == it {
			s[i] = s[len(s)-1]
			s[len(s)-1] = nil
			s = s[:len(s)-1]
			break
		}
	}
	if len(s) == 0 {
		delete(x.byXorb, it.key.Xorb)
	} else {
		x.byXorb[it.key.Xorb] = s
	}
	return true
}

// oldest returns the least recently used item (entry or manifest), or nil
// when empty.
func (x *index[V]) oldest() *item[V] {
	if e := x.ll.Back(); e != nil {
		return e.Value.(*item[V])
	}
	return nil
}

// counters are the monotonic parts of Stats, updated without locks.
type counters struct {
	hits, misses, hitBytes, puts, putBytes atomic.Uint64
	evictions, corrupt, errors, dropped    atomic.Uint64
}

func (c *counters) hit(n int) {
	c.hits.Add(1)
	c.hitBytes.Add(uint64(n))
}

func (c *counters) put(n int) {
	c.puts.Add(1)
	c.putBytes.Add(uint64(n))
}

func (c *counters) snapshot() Stats {
	return Stats{
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		HitBytes:  c.hitBytes.Load(),
		Puts:      c.puts.Load(),
		PutBytes:  c.putBytes.Load(),
		Evictions: c.evictions.Load(),
		Corrupt:   c.corrupt.Load(),
		Errors:    c.errors.Load(),
		Dropped:   c.dropped.Load(),
	}
}
