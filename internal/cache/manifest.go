package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// ErrInvalidManifest is returned for a manifest that does not prove its
// xorb: malformed, over the limits, or with a Merkle root that is not the
// xorb hash.
var ErrInvalidManifest = errors.New("cache: invalid manifest")

// Manifest lists every chunk of one xorb, in order: its chunk hash and its
// decoded size. It certifies itself: the Merkle root of (hash, size) over
// all chunks must be the xorb hash that names it, so a manifest read from
// anywhere (disk, a shared bucket) can be trusted once Verify passes, and
// every chunk of the xorb can then be checked on its own. About 36 bytes a
// chunk.
//
// One exception: the Merkle root of a single leaf is the leaf's hash, size
// not included, so the size of a one-chunk xorb's only chunk is not proven.
// Check stays safe (the chunk hash proves the bytes, hence their length; a
// wrong size only makes Check refuse the real chunk), but code that takes a
// size from a one-chunk manifest without the chunk's bytes must not trust it.
type Manifest struct {
	Xorb   merklehash.Hash
	Hashes []merklehash.Hash
	Sizes  []uint32
}

// Len is the number of chunks of the xorb.
func (m *Manifest) Len() uint32 { return uint32(len(m.Hashes)) }

// Verify checks the manifest's structure and that it proves its xorb (for
// one chunk, its hash only: see Manifest).
func (m *Manifest) Verify() error {
	n := len(m.Hashes)
	switch {
	case n == 0 || n > MaxEntryChunks:
		return fmt.Errorf("%w: xorb %s: %d chunks", ErrInvalidManifest, m.Xorb, n)
	case len(m.Sizes) != n:
		return fmt.Errorf("%w: xorb %s: %d sizes for %d chunks", ErrInvalidManifest, m.Xorb, len(m.Sizes), n)
	}
	leaves := make([]merklehash.Leaf, n)
	for i, h := range m.Hashes {
		if s := m.Sizes[i]; s == 0 || s > MaxChunkSize {
			return fmt.Errorf("%w: xorb %s: chunk %d of %d bytes", ErrInvalidManifest, m.Xorb, i, s)
		}
		leaves[i] = merklehash.Leaf{Hash: h, Size: uint64(m.Sizes[i])}
	}
	if got := merklehash.XorbHash(leaves); got != m.Xorb {
		return fmt.Errorf("%w: xorb %s: the chunks hash to %s", ErrInvalidManifest, m.Xorb, got)
	}
	return nil
}

// Check reports whether chunk i of the xorb has hash h and size bytes.
func (m *Manifest) Check(i uint32, h merklehash.Hash, size uint32) bool {
	return i < m.Len() && m.Hashes[i] == h && m.Sizes[i] == size
}

// Stored form of a manifest (little-endian): magic "XPMANIF", version 1,
// the xorb hash (32 raw bytes), the chunk count n (u32), then n times the
// chunk hash (32 raw bytes) and its size (u32).
const (
	manifestMagic   = "XPMANIF"
	manifestVersion = 1
	manifestFixed   = 8 + 32 + 4
	manifestPer     = 36
	// MaxManifestBytes bounds a stored manifest.
	MaxManifestBytes = manifestFixed + MaxEntryChunks*manifestPer
)

// MarshalBinary encodes m in its stored form.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if len(m.Hashes) != len(m.Sizes) || len(m.Hashes) > MaxEntryChunks {
		return nil, fmt.Errorf("%w: xorb %s: %d hashes, %d sizes", ErrInvalidManifest, m.Xorb, len(m.Hashes), len(m.Sizes))
	}
	b := make([]byte, 0, manifestFixed+manifestPer*len(m.Hashes))
	b = append(b, manifestMagic...)
	b = append(b, manifestVersion)
	b = append(b, m.Xorb[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Hashes)))
	for i, h := range m.Hashes {
		b = append(b, h[:]...)
		b = binary.LittleEndian.AppendUint32(b, m.Sizes[i])
	}
	return b, nil
}

// ParseManifest decodes the stored manifest of xorb and verifies it: the
// result proves xorb, or the error wraps ErrInvalidManifest.
func ParseManifest(xorb merklehash.Hash, b []byte) (*Manifest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: xorb %s: %s", ErrInvalidManifest, xorb, fmt.Sprintf(format, args...))
	}
	if len(b) < manifestFixed || len(b) > MaxManifestBytes {
		return nil, bad("%d bytes", len(b))
	}
	if string(b[:7]) != manifestMagic || b[7] != manifestVersion {
		return nil, bad("not a manifest of version %d", manifestVersion)
	}
	if merklehash.Hash(b[8:40]) != xorb {
		return nil, bad("names xorb %s", merklehash.Hash(b[8:40]))
	}
	n := binary.LittleEndian.Uint32(b[40:44])
	if n == 0 || n > MaxEntryChunks || len(b) != manifestFixed+manifestPer*int(n) {
		return nil, bad("%d chunks in %d bytes", n, len(b))
	}
	m := &Manifest{Xorb: xorb, Hashes: make([]merklehash.Hash, n), Sizes: make([]uint32, n)}
	p := b[manifestFixed:]
	for i := range n {
		m.Hashes[i] = merklehash.Hash(p[:32])
		m.Sizes[i] = binary.LittleEndian.Uint32(p[32:36])
		p = p[manifestPer:]
	}
	if err := m.Verify(); err != nil {
		return nil, err
	}
	return m, nil
}

// ManifestStore is implemented by stores that keep xorb manifests next to
// their entries, so that a proof outlives the process and reaches other
// instances sharing the store.
type ManifestStore interface {
	// PutManifest stores m, which must pass Verify. Storing a manifest
	// that is already stored succeeds without writing.
	PutManifest(ctx context.Context, m *Manifest) error
	// GetManifest returns the manifest of xorb, verified (a stored one
	// that fails ParseManifest is deleted and reported as a miss), or an
	// error wrapping ErrNotFound.
	GetManifest(ctx context.Context, xorb merklehash.Hash) (*Manifest, error)
}
