package cpulimit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain doubles as the child process of the tests: with
// CPULIMIT_TEST_CHILD set it runs Fit in the cgroup it was started in and
// prints what it found.
func TestMain(m *testing.M) {
	if os.Getenv("CPULIMIT_TEST_CHILD") != "" {
		r, err := Fit()
		fmt.Printf("%g %d %d %t %v\n", r.Limit, r.Was, r.Procs, r.Env, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cpuCgroup makes a cgroup with a CPU quota of limit CPUs (no quota when
// limit is 0) and returns its directory, or skips the test where this
// machine lets no one make one.
func cpuCgroup(t *testing.T, limit float64) string {
	t.Helper()
	const period = 100000
	quota := "-1"
	if limit > 0 {
		quota = strconv.Itoa(int(limit * period))
	}
	name := fmt.Sprintf("xetproxy-cpulimit-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	// cgroup v1: a cpu hierarchy of its own
	if v1 := "/sys/fs/cgroup/cpu"; writable(v1) {
		dir := filepath.Join(v1, name)
		mkCgroup(t, dir)
		write(t, filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(period))
		write(t, filepath.Join(dir, "cpu.cfs_quota_us"), quota)
		return dir
	}
	// cgroup v2, with the cpu controller already given to the root's children
	const v2 = "/sys/fs/cgroup"
	if sub, err := os.ReadFile(filepath.Join(v2, "cgroup.subtree_control")); err == nil && strings.Contains(string(sub), "cpu") && writable(v2) {
		dir := filepath.Join(v2, name)
		mkCgroup(t, dir)
		if quota == "-1" {
			quota = "max"
		}
		write(t, filepath.Join(dir, "cpu.max"), fmt.Sprintf("%s %d", quota, period))
		return dir
	}
	t.Skip("no writable cgroup with a cpu controller here (needs root)")
	return ""
}

func writable(dir string) bool {
	f, err := os.MkdirTemp(dir, "probe-")
	if err != nil {
		return false
	}
	os.Remove(f)
	return true
}

func mkCgroup(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil { // a cgroup goes with rmdir once empty
			t.Errorf("removing cgroup: %v", err)
		}
	})
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

type childResult struct {
	limit     float64
	was, now  int
	env       bool
	fitErrStr string
}

// runIn starts this test binary as a child in cgroup dir, with GOMAXPROCS
// set to gomaxprocs ("" for unset), and returns what its Fit reported.
func runIn(t *testing.T, dir, gomaxprocs string) childResult {
	t.Helper()
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2"`, "sh", dir, os.Args[0])
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	env = append(env, "CPULIMIT_TEST_CHILD=1")
	if gomaxprocs != "" {
		env = append(env, "GOMAXPROCS="+gomaxprocs)
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var r childResult
	f := strings.SplitN(strings.TrimSpace(string(out)), " ", 5)
	if len(f) != 5 {
		t.Fatalf("child said %q", out)
	}
	r.limit, _ = strconv.ParseFloat(f[0], 64)
	r.was, _ = strconv.Atoi(f[1])
	r.now, _ = strconv.Atoi(f[2])
	r.env = f[3] == "true"
	r.fitErrStr = f[4]
	return r
}

func TestFitUnderACPULimit(t *testing.T) {
	for _, tc := range []struct {
		limit float64
		want  int // 0: Go's own default, what the child started with
	}{
		{0.25, 1},
		{0.5, 1},
		{1, 1},
		{1.5, 0},
		{3, 0},
		{0, 0}, // a cgroup without a quota
	} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			r := runIn(t, cpuCgroup(t, tc.limit), "")
			if r.fitErrStr != "<nil>" {
				t.Fatalf("Fit: %s", r.fitErrStr)
			}
			if r.limit != tc.limit {
				t.Errorf("limit read %g, want %g", r.limit, tc.limit)
			}
			want := tc.want
			if want == 0 {
				want = r.was
			}
			if r.now != want {
				t.Errorf("GOMAXPROCS %d after Fit (was %d), want %d", r.now, r.was, want)
			}
			if tc.limit > 0 && tc.limit <= 1 && r.was < 2 {
				t.Logf("this machine's default was already %d: the test shows the limit read, not a change", r.was)
			}
		})
	}
}

func TestFitLeavesGOMAXPROCSFromTheEnvironment(t *testing.T) {
	r := runIn(t, cpuCgroup(t, 0.5), "3")
	if !r.env || r.was != 3 || r.now != 3 {
		t.Fatalf("GOMAXPROCS=3 in the environment under a 0.5 CPU limit: env %t, was %d, now %d; want 3 kept", r.env, r.was, r.now)
	}
}
