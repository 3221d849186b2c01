// Package cpulimit fits the Go scheduler to the CPU limit of the process's
// cgroup (a container's CPU quota, `docker run --cpus`, a Kubernetes CPU
// limit).
//
// Go's own default under a quota is GOMAXPROCS = max(ceil(limit), 2): a
// container allowed half a CPU still runs two Ps. For a streaming proxy
// that costs CPU for nothing: two Ps hand each chunk from the goroutine
// that decodes it to the one that writes it across threads, wake idle
// threads and spin looking for work, all of it billed to a quota that
// allows one CPU's worth of time at most. Measured in
// docs/performance-server.md: under a quota of one CPU, GOMAXPROCS=1
// serves a cold stream about a sixth faster at a fifth less CPU per byte.
//
//	limit <= 1 CPU, GOMAXPROCS unset  -> GOMAXPROCS = 1
//	limit > 1, or no limit            -> Go's default, left to the runtime
//	GOMAXPROCS set in the environment -> that value, untouched
//
// Above one CPU two Ps still help a single stream (decoding while
// writing), so the runtime's default stands there.
package cpulimit
