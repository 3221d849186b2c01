package cpulimit

import (
	"os"
	"runtime"

	"go.uber.org/automaxprocs/maxprocs"
)

// Result is what Fit found and did.
type Result struct {
	Limit float64 // CPUs the cgroup's quota allows; 0 when there is none (or it is unreadable)
	Procs int     // GOMAXPROCS after Fit
	Was   int     // GOMAXPROCS before Fit
	Env   bool    // GOMAXPROCS came from the environment, so Fit left it alone
}

// Changed reports whether Fit changed GOMAXPROCS.
func (r Result) Changed() bool { return r.Procs != r.Was }

// Fit applies the rule of the package doc and reports it. An error means
// the cgroup could not be read; GOMAXPROCS is then Go's default.
func Fit() (Result, error) {
	r := Result{Was: runtime.GOMAXPROCS(0)}
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		r.Env, r.Procs = true, r.Was
		return r, nil
	}
	_, err := maxprocs.Set(maxprocs.RoundQuotaFunc(func(limit float64) int {
		r.Limit = limit
		if limit <= 1 {
			return 1
		}
		return r.Was
	}))
	if r.Limit > 1 {
		// Set pinned GOMAXPROCS (even to the same value), which stops the
		// runtime from following later changes of the limit: hand the
		// value back to the runtime's default.
		runtime.SetDefaultGOMAXPROCS()
	}
	r.Procs = runtime.GOMAXPROCS(0)
	return r, err
}
