package cache

import (
	"fmt"
	"io"
	"slices"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// This file holds what the stores share to implement ManifestStore. Every
// store verifies a manifest before storing it and parses (which verifies)
// every stored manifest it reads, so a manifest is trusted only for what it
// proves, wherever it was kept. Delete does not remove manifests: a
// manifest that passes Verify cannot be wrong.

// cloneManifest returns a copy of m that shares no memory with it.
func cloneManifest(m *Manifest) *Manifest {
	return &Manifest{Xorb: m.Xorb, Hashes: slices.Clone(m.Hashes), Sizes: slices.Clone(m.Sizes)}
}

// storedManifestSize is the size of the stored form of an n-chunk manifest.
func storedManifestSize(n int) int64 { return manifestFixed + manifestPer*int64(n) }

// corruptManifest wraps err, the reason a stored manifest of xorb failed
// its checks, as errCorrupt: stores delete such a manifest and report a
// miss.
func corruptManifest(xorb merklehash.Hash, err error) error {
	return fmt.Errorf("%w: manifest of %s: %w", errCorrupt, xorb, err)
}

// readStoredManifest reads the stored manifest of xorb from r, whose length
// is size (-1 when unknown), and parses it. A manifest over
// MaxManifestBytes, short or failing ParseManifest is corrupt; read errors
// are returned as they are.
func readStoredManifest(r io.Reader, size int64, xorb merklehash.Hash) (*Manifest, []byte, error) {
	if size > MaxManifestBytes {
		return nil, nil, corruptManifest(xorb, fmt.Errorf("%w: %d bytes", ErrInvalidManifest, size))
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if size >= 0 && int64(len(b)) != size {
		return nil, nil, corruptManifest(xorb, fmt.Errorf("%w: read %d of %d bytes", ErrInvalidManifest, len(b), size))
	}
	m, err := ParseManifest(xorb, b)
	if err != nil {
		return nil, nil, corruptManifest(xorb, err)
	}
	return m, b, nil
}
