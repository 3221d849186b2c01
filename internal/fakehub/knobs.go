package fakehub

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/xetproxy/xetproxy/internal/merklehash"
)

// Fault makes requests of one class fail before they reach their handler.
type Fault struct {
	Class  Class
	Status int // HTTP status to answer; default 500
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration

	// Nth selects the Nth request of Class counted from InjectFault (1 =
	// the next one); Times consecutive requests fail from there (default 1).
	Nth   int
	Times int
	// Fraction, when Nth is 0, fails each request with this probability,
	// drawn from a generator seeded with Seed (reproducible). Fraction 0
	// and Nth 0 fail every request.
	Fraction float64
	Seed     uint64
}

type faultState struct {
	f    Fault
	seen int
	rng  *rand.Rand
}

type truncation struct {
	after int64 // bytes to send before cutting the connection
	times int   // remaining; < 0 = unlimited
}

type corruption struct {
	xorb   merklehash.Hash // zero = every xorb
	offset int64           // in the stored xorb object
	n      int64
	id     uint64 // CorruptChunk's, for Heal; 0 for CorruptXorb
}

// knobs holds the runtime test settings.
type knobs struct {
	mu         sync.Mutex
	tokenTTL   time.Duration
	urlTTL     time.Duration
	lat        map[Class]time.Duration
	faults     []*faultState
	trunc      map[Class]*truncation
	corrupt    []corruption
	seq        uint64 // last corruption id
	noV2       bool
	forbidOnce bool
	forbidden  map[string]bool
	maxRanges  int
}

func (k *knobs) init(tokenTTL, urlTTL time.Duration) {
	k.tokenTTL, k.urlTTL = tokenTTL, urlTTL
	k.lat = make(map[Class]time.Duration)
	k.trunc = make(map[Class]*truncation)
	k.forbidden = make(map[string]bool)
}

func (k *knobs) latency(c Class) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lat[c]
}

// fault reports whether this request of class c must fail, and how.
func (k *knobs) fault(c Class) (Fault, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var hit *Fault
	for _, s := range k.faults {
		if s.f.Class != c {
			continue
		}
		s.seen++
		fail := false
		switch {
		case s.f.Nth > 0:
			fail = s.seen >= s.f.Nth && s.seen < s.f.Nth+s.f.Times
		case s.f.Fraction > 0:
			fail = s.rng.Float64() < s.f.Fraction
		default:
			fail = true
		}
		if fail && hit == nil {
			hit = &s.f
		}
	}
	if hit != nil {
		return *hit, true
	}
	return Fault{}, false
}

func (k *knobs) ttls() (token, url time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tokenTTL, k.urlTTL
}

// truncation returns the byte count after which a body of class c is cut,
// consuming one use, or -1.
func (k *knobs) truncation(c Class) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.trunc[c]
	if t == nil || t.times == 0 {
		return -1
	}
	if t.times > 0 {
		t.times--
	}
	return t.after
}

func (k *knobs) corruptions(x merklehash.Hash) []corruption {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []corruption
	for _, c := range k.corrupt {
		if c.xorb.IsZero() || c.xorb == x {
			out = append(out, c)
		}
	}
	return out
}

func (k *knobs) v2Disabled() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.noV2
}

func (k *knobs) rangesPerURL() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.maxRanges
}

// forbidFirst reports whether this fetch of URL key u must get its one 403.
func (k *knobs) forbidFirst(u string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.forbidOnce || k.forbidden[u] {
		return false
	}
	k.forbidden[u] = true
	return true
}

// InjectFault adds a fault; the returned function removes it.
func (h *Hub) InjectFault(f Fault) (remove func()) {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Times <= 0 {
		f.Times = 1
	}
	s := &faultState{f: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))}
	h.knobs.mu.Lock()
	h.knobs.faults = append(h.knobs.faults, s)
	h.knobs.mu.Unlock()
	return func() {
		h.knobs.mu.Lock()
		defer h.knobs.mu.Unlock()
		for i, o := range h.knobs.faults {
			if o == s {
				h.knobs.faults = append(h.knobs.faults[:i], h.knobs.faults[i+1:]...)
				return
			}
		}
	}
}

// FailNth makes the nth next request of class c fail with status (1 = the
// next one), with Retry-After when retryAfter > 0.
func (h *Hub) FailNth(c Class, n, status int, retryAfter time.Duration) (remove func()) {
	return h.InjectFault(Fault{Class: c, Nth: n, Status: status, RetryAfter: retryAfter})
}

// FailFraction makes each request of class c fail with probability frac,
// reproducibly for a given seed.
func (h *Hub) FailFraction(c Class, frac float64, seed uint64, status int, retryAfter time.Duration) (remove func()) {
	return h.InjectFault(Fault{Class: c, Fraction: frac, Seed: seed, Status: status, RetryAfter: retryAfter})
}

// ClearFaults removes every fault, truncation and corruption and turns off
// DisableV2 and ForbidOncePerURL.
func (h *Hub) ClearFaults() {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.faults = nil
	h.knobs.trunc = make(map[Class]*truncation)
	h.knobs.corrupt = nil
	h.knobs.noV2 = false
	h.knobs.forbidOnce = false
	h.knobs.forbidden = make(map[string]bool)
}

// SetLatency delays every request of class c by d before it is answered
// (0 removes the delay).
func (h *Hub) SetLatency(c Class, d time.Duration) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	if d <= 0 {
		delete(h.knobs.lat, c)
		return
	}
	h.knobs.lat[c] = d
}

// SetTokenTTL sets the lifetime of CAS tokens issued from now on (zero or
// negative: already expired when issued).
func (h *Hub) SetTokenTTL(d time.Duration) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.tokenTTL = d
}

// SetURLTTL sets the lifetime of presigned xorb and bridge URLs issued from
// now on (zero or negative: already expired when issued).
func (h *Hub) SetURLTTL(d time.Duration) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.urlTTL = d
}

// TruncateBodies cuts the next `times` response bodies of class c (xorb,
// bridge or resolve) after `after` bytes by aborting the connection, so the
// client sees a short body; times < 0 means every body, 0 turns it off.
func (h *Hub) TruncateBodies(c Class, after int64, times int) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	if times == 0 {
		delete(h.knobs.trunc, c)
		return
	}
	h.knobs.trunc[c] = &truncation{after: after, times: times}
}

// CorruptXorb flips (XOR 0xff) n bytes at offset of the stored xorb x
// (merklehash.Zero = every xorb) whenever they are served, the stored data
// staying intact.
func (h *Hub) CorruptXorb(x merklehash.Hash, offset, n int64) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.corrupt = append(h.knobs.corrupt, corruption{xorb: x, offset: offset, n: n})
}

// DisableV2 makes the v2 endpoints (reconstructions, shards) answer 404, as
// a CAS without v2 does.
func (h *Hub) DisableV2(off bool) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.noV2 = off
}

// ForbidOncePerURL makes the first fetch of every presigned xorb URL answer
// 403, as an expired URL does; the client must re-query the reconstruction.
func (h *Hub) ForbidOncePerURL(on bool) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.forbidOnce = on
	h.knobs.forbidden = make(map[string]bool)
}

// SetMaxRangesPerURL splits v2 fetch entries so that no URL carries more
// than n byte ranges (0 = no limit, the default).
func (h *Hub) SetMaxRangesPerURL(n int) {
	h.knobs.mu.Lock()
	defer h.knobs.mu.Unlock()
	h.knobs.maxRanges = n
}
