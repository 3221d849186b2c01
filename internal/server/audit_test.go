package server

import (
	"fmt"
	"testing"
)

func TestTopReposIsBounded(t *testing.T) {
	top := topRepos{max: 3}
	top.add("model", "a/big", 1000, true)
	top.add("model", "A/Big", 500, false) // the Hub ignores case: the same repo
	top.add("dataset", "a/mid", 100, true)
	top.add("model", "a/small", 10, true)
	top.add("space", "a/new", 50, true) // the map is full: a/small makes room
	if n := len(top.m); n != 3 {
		t.Fatalf("%d entries, want the bound of 3", n)
	}
	got := fmt.Sprint(top.list(-1, true))
	want := "[{model a/big 1500 false} {dataset a/mid 100 false} {space a/new 50 false}]"
	if got != want {
		t.Errorf("list = %s\nwant %s", got, want)
	}
	if got := top.list(1, true); len(got) != 1 || got[0].Repo != "a/big" {
		t.Errorf("list(1) = %v", got)
	}
	top.add("model", "x/private", 5000, false)
	if got := top.list(10, false); len(got) != 2 || got[0].Repo != "a/big" {
		t.Errorf("public list = %v, want no private repo", got)
	}
	for i := 0; i < 1000; i++ {
		top.add("model", fmt.Sprintf("n/%d", i), int64(i), true)
	}
	if n := len(top.m); n != 3 {
		t.Fatalf("%d entries after many repos, want 3", n)
	}
}

func TestDownloadOutcomes(t *testing.T) {
	for _, c := range []struct {
		status           int
		aborted, refused bool
		want             string
	}{
		{200, false, false, "ok"}, {206, false, false, "ok"}, {304, false, false, "ok"},
		{403, false, true, "refused"}, {403, false, false, "unauthorized"}, {401, false, false, "unauthorized"},
		{404, false, false, "not_found"}, {416, false, false, "client_error"}, {503, false, false, "overloaded"},
		{502, false, false, "upstream_error"}, {200, true, false, "aborted"}, {StatusClientClosedRequest, true, false, "client_gone"},
	} {
		if got := outcome(c.status, c.aborted, c.refused); got != c.want {
			t.Errorf("outcome(%d, %v, %v) = %s, want %s", c.status, c.aborted, c.refused, got, c.want)
		}
	}
}
