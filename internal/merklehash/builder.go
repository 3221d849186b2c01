package merklehash

// Builder computes a Merkle root incrementally with memory bounded by the
// depth of the tree (at most 9 pending entries per level), so a file of any
// length can be verified as its chunks stream past.
//
// A group is closed as soon as 9 entries are pending on its level, because
// the cut rule never looks past the ninth entry; the rest is settled when
// Root is called.
type Builder struct {
	levels [][]Leaf // pending entries per level, bottom first
	pushed []bool   // whether level i+1 has ever received a parent
	count  uint64
}

// Add appends the next leaf.
func (b *Builder) Add(h Hash, size uint64) {
	b.count++
	b.push(0, Leaf{Hash: h, Size: size})
}

// Len is the number of leaves added so far.
func (b *Builder) Len() uint64 { return b.count }

func (b *Builder) push(level int, l Leaf) {
	for len(b.levels) <= level {
		b.levels = append(b.levels, make([]Leaf, 0, maxGroup))
		b.pushed = append(b.pushed, false)
	}
	b.levels[level] = append(b.levels[level], l)
	if len(b.levels[level]) < maxGroup {
		return
	}
	pending := b.levels[level]
	n := cut(pending)
	parent := NodeHash(pending[:n])
	rest := copy(pending, pending[n:])
	b.levels[level] = pending[:rest]
	b.pushed[level] = true
	b.push(level+1, parent)
}

// Root returns the Merkle root of the leaves added so far (the zero hash if
// there are none). The Builder is left unchanged.
func (b *Builder) Root() Hash {
	if b.count == 0 {
		return Zero
	}
	var carry []Leaf // parents produced from the level below
	for level := 0; ; level++ {
		var list []Leaf
		if level < len(b.levels) {
			list = append(list, b.levels[level]...)
		}
		list = append(list, carry...)
		higher := level < len(b.pushed) && b.pushed[level]
		if !higher && len(list) == 1 {
			return list[0].Hash
		}
		carry = carry[:0:0]
		for rest := list; len(rest) > 0; {
			n := cut(rest)
			carry = append(carry, NodeHash(rest[:n]))
			rest = rest[n:]
		}
	}
}

// FileHash returns the file hash of the leaves added so far.
func (b *Builder) FileHash() Hash {
	if b.count == 0 {
		return Zero
	}
	return FileHashFromRoot(b.Root())
}
