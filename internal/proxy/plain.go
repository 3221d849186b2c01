package proxy

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/xetproxy/xetproxy/internal/hub"
)

// openPlain streams a file that is not in Xet from the Hub. A whole-file
// read is checked against the ETag: a 64-digit one is the sha256 of the
// content (LFS), a 40-digit one the git blob sha1.
func (e *Engine) openPlain(ctx context.Context, token string, meta *hub.FileMeta, offset, length int64, whole bool) (io.ReadCloser, error) {
	rc, err := e.hub.OpenPlain(ctx, token, meta, offset, length)
	if err != nil {
		return nil, upstream("download", meta.Path, err)
	}
	body := &plainReader{rc: rc, file: meta.Path}
	if whole {
		body.h, body.what, body.want = etagHasher(meta.ETag, meta.Size)
	}
	return body, nil
}

// etagHasher returns the hash an ETag names, primed for a file of size
// bytes, or nil when the ETag is neither a sha256 nor a sha1.
func etagHasher(etag string, size int64) (hash.Hash, string, string) {
	etag = strings.ToLower(etag)
	if _, err := hex.DecodeString(etag); err != nil {
		return nil, "", ""
	}
	switch len(etag) {
	case 64:
		return sha256.New(), "sha256", etag
	case 40:
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
		return h, "git blob sha1", etag
	}
	return nil, "", ""
}

// plainTail is how many bytes a whole-file read of a plain file holds
// back until its hash checks: a wrong file then never ends cleanly.
const plainTail = 32 << 10

// plainReader passes the Hub's bytes through and classifies errors. For a
// whole file (h set) it hashes them and keeps the last plainTail bytes
// back until the end, where the hash must match for them to go out.
type plainReader struct {
	rc   io.ReadCloser
	file string
	h    hash.Hash
	what string
	want string
	err  error

	tail     []byte // held back: tail[:n], cap 2*plainTail
	n        int
	verified bool
}

func (p *plainReader) Read(b []byte) (int, error) {
	if p.h == nil {
		if p.err != nil {
			return 0, p.err
		}
		n, err := p.rc.Read(b)
		if err != nil && err != io.EOF {
			err = upstream("download", p.file, err)
		}
		p.err = err
		return n, err
	}
	if p.tail == nil {
		p.tail = make([]byte, 2*plainTail)
	}
	for {
		if p.verified {
			if p.n == 0 {
				return 0, io.EOF
			}
			k := copy(b, p.tail[:p.n])
			p.n = copy(p.tail, p.tail[k:p.n])
			return k, nil
		}
		if p.err != nil {
			return 0, p.err
		}
		if p.n > plainTail {
			// Hand out what is beyond the held-back tail.
			k := copy(b, p.tail[:p.n-plainTail])
			p.n = copy(p.tail, p.tail[k:p.n])
			return k, nil
		}
		m, err := p.rc.Read(p.tail[p.n:])
		p.h.Write(p.tail[p.n : p.n+m])
		p.n += m
		switch {
		case err == io.EOF:
			if got := hex.EncodeToString(p.h.Sum(nil)); got != p.want {
				p.err = &IntegrityError{File: p.file, Err: &MismatchError{What: p.what, Want: p.want, Got: got}}
				p.n = 0
			} else {
				p.verified = true
			}
		case err != nil:
			p.err = upstream("download", p.file, err)
			p.n = 0
		}
	}
}

func (p *plainReader) Close() error { return p.rc.Close() }
