package proxy

import (
	"container/list"
	"context"
	"sync"
)

// Kept segments. A fill runs ahead of its readers: it decodes as fast as
// upstream sends, a reader goes at its client's pace. Once the putter has
// stored a segment, the fill would let go of its memory, and a reader
// that gets there later reads it back from the store (a disk read, a CRC,
// and hashing every chunk again), which costs about as much CPU as the
// fill's decoding. So the fill keeps a stored segment in memory, still
// charged to the fill budget, while a stream that joined the fill has yet
// to read it (fillReader), up to half the fill budget. Memory stays
// bounded by the fill budget: a fill that needs room for its next segment and finds none takes it from
// the kept segments first (the newest kept first, so the readers' next
// segments stay), and only then waits. A fill therefore never waits for a
// reader, only for the budget the decoding segments and other fills'
// writes hold; a reader never waits for a kept segment either (it reads
// the stored copy when the segment was taken).

// fillReader is a stream's interest in a fill: it will read chunks
// [next, end) of the fill's range. Guarded by fill.mu.
type fillReader struct{ next, end uint32 }

// wants reports whether some reader of fl will still read sg; fl.mu is
// held.
func (fl *fill) wants(sg *fillSeg) bool {
	for _, rd := range fl.readers {
		if rd.next < sg.end && rd.end > sg.start {
			return true
		}
	}
	return false
}

// addReader records that a stream will read chunks [start, end) of fl.
func (fl *fill) addReader(start, end uint32) *fillReader {
	rd := &fillReader{next: start, end: end}
	fl.mu.Lock()
	fl.readers = append(fl.readers, rd)
	fl.mu.Unlock()
	return rd
}

// advance records that rd read the chunks before next, and lets go of the
// kept segments no reader needs any more.
func (fl *fill) advance(rd *fillReader, next uint32) {
	fl.mu.Lock()
	rd.next = max(rd.next, next)
	gone := fl.unwanted()
	fl.mu.Unlock()
	fl.e.letGo(gone)
}

// dropReader records that rd reads no more of fl (it is done, or gave up).
func (fl *fill) dropReader(rd *fillReader) {
	fl.mu.Lock()
	for i, x := range fl.readers {
		if x == rd {
			fl.readers = append(fl.readers[:i], fl.readers[i+1:]...)
			break
		}
	}
	gone := fl.unwanted()
	fl.mu.Unlock()
	fl.e.letGo(gone)
}

// letGoAll lets go of every kept segment of fl (its bytes were found
// wrong).
func (fl *fill) letGoAll() {
	fl.mu.Lock()
	var gone []*fillSeg
	for i, sg := range fl.segs {
		if sg != nil && sg.kept {
			gone = append(gone, fl.drop(i))
		}
	}
	fl.mu.Unlock()
	fl.e.letGo(gone)
}

// unwanted takes the kept segments no reader wants out of fl; fl.mu is
// held. The caller lets go of them (letGo) once it has unlocked.
func (fl *fill) unwanted() []*fillSeg {
	var gone []*fillSeg
	for i, sg := range fl.segs {
		if sg != nil && sg.kept && !fl.wants(sg) {
			gone = append(gone, fl.drop(i))
		}
	}
	return gone
}

// drop takes kept segment i out of fl and out of the engine's list; fl.mu
// is held.
func (fl *fill) drop(i int) *fillSeg {
	sg := fl.segs[i]
	sg.kept = false
	fl.segs[i] = nil
	fl.e.kept.remove(sg)
	return sg
}

// settle runs once the putter has stored sg (or skipped it): the fill
// keeps it in memory if a reader will read it and lets go of it
// otherwise.
func (fl *fill) settle(sg *fillSeg) {
	e := fl.e
	fl.mu.Lock()
	i := fl.put
	fl.put++
	keep := fl.wants(sg) && e.kept.push(fl, sg, i, e.fillBudget.limit/2)
	if keep {
		sg.kept = true
	} else {
		fl.segs[i] = nil
	}
	fl.mu.Unlock()
	if keep {
		// A fill waiting for room may take it.
		e.fillBudget.poke()
		return
	}
	e.letGo([]*fillSeg{sg})
}

// letGo gives back the budget and memory of segments the fill no longer
// holds.
func (e *Engine) letGo(segs []*fillSeg) {
	for _, sg := range segs {
		e.fillBudget.release(sg.held)
		sg.unref()
	}
}

// keptList is an engine's kept segments, newest last. Its lock nests
// inside fill.mu.
type keptList struct {
	mu    sync.Mutex
	l     list.List // of keptSeg
	bytes int64     // fill budget the kept segments hold
}

type keptSeg struct {
	fl *fill
	sg *fillSeg
	i  int // index in fl.segs
}

// push adds sg to the list unless the kept segments would then hold more
// than most bytes: kept segments take at most half the fill budget, so
// that they add little to what fills held before they were kept (their
// decoding and their writes), and fills seldom have to evict.
func (k *keptList) push(fl *fill, sg *fillSeg, i int, most int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.bytes+sg.held > most {
		return false
	}
	k.bytes += sg.held
	sg.elem = k.l.PushBack(keptSeg{fl: fl, sg: sg, i: i})
	return true
}

func (k *keptList) remove(sg *fillSeg) {
	k.mu.Lock()
	if sg.elem != nil {
		k.l.Remove(sg.elem)
		sg.elem = nil
		k.bytes -= sg.held
	}
	k.mu.Unlock()
}

// evict lets go of the newest kept segment; it reports false when there
// was none.
func (k *keptList) evict() bool {
	for {
		k.mu.Lock()
		el := k.l.Back()
		if el == nil {
			k.mu.Unlock()
			return false
		}
		ks := k.l.Remove(el).(keptSeg)
		ks.sg.elem = nil
		k.bytes -= ks.sg.held
		k.mu.Unlock()
		fl := ks.fl
		fl.mu.Lock()
		taken := ks.sg.kept && fl.segs[ks.i] == ks.sg
		if taken {
			ks.sg.kept = false
			fl.segs[ks.i] = nil
		}
		fl.mu.Unlock()
		if taken {
			fl.e.stats.keptEvicted.Add(1)
			fl.e.letGo([]*fillSeg{ks.sg})
			return true
		}
		// A reader let go of it meanwhile: try the next.
	}
}

// acquireEvicting is acquire for a fill's segment: when the bytes do not
// fit, it makes room with evict (which releases budget) before it waits,
// and again each time the budget changes.
func (b *budget) acquireEvicting(ctx context.Context, n int64, evict func() bool) error {
	_, err := b.take(ctx, func(used, limit int64) (int64, bool) {
		return n, used+n <= limit || used == 0
	}, evict)
	return err
}

// tryFillBudget is the fill budget's tryAcquire, taking room from the
// kept segments when it must.
func (e *Engine) tryFillBudget(n int64) bool {
	for {
		if e.fillBudget.tryAcquire(n) {
			return true
		}
		if !e.kept.evict() {
			return false
		}
	}
}
