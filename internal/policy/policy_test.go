package policy

import (
	"path"
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		glob, typ, id string
		want          bool
	}{
		{"dataset/*", "dataset", "org/d", true},
		{"dataset/*", "dataset", "squad", true}, // namespace-less
		{"dataset/*", "model", "org/d", false},
		{"model/meta-llama/*", "model", "meta-llama/Llama-3-8B", true},
		{"model/meta-llama/*", "model", "meta-llama", false},
		{"model/meta-llama/*", "model", "other/Llama", false},
		{"model/meta-llama/*", "dataset", "meta-llama/x", false},
		{"*/acme/*", "model", "acme/m", true},
		{"*/acme/*", "dataset", "acme/d", true},
		{"*/acme/*", "space", "acme/s", true},
		{"*/acme/*", "model", "acmeco/m", false},
		{"*", "space", "a/b", true},
		{"*", "model", "gpt2", true},
		{"**", "model", "a/b", true},
		{"model/**", "model", "a/b", true},
		{"model/gpt2", "model", "gpt2", true},
		{"model/gpt2", "model", "gpt2/x", false}, // a namespace called gpt2 is someone else
		{"model/gpt2", "model", "openai-community/gpt2", false},
		{"model/*/*", "model", "gpt2", false},
		{"model/*/*", "model", "a/b", true},
		{"model/meta-*", "model", "meta-llama/x", false}, // only a whole "*" segment takes the rest
		{"model/meta-*/*", "model", "meta-llama/x", true},
		{"model/*/llama-?", "model", "x/llama-3", true},
		{"model/*/llama-?", "model", "x/llama-30", false},
		{"model/[ab]*/x", "model", "bob/x", true},
		{"model/[^ab]*/x", "model", "bob/x", false},
		{"MODEL/Meta-Llama/*", "model", "meta-llama/x", true}, // case does not matter
		{"model/meta-llama/*", "model", "META-LLAMA/x", true},
		{"*del/a/b", "model", "a/b", true},
		{`model/a\-b/c`, "model", "a-b/c", true},
	} {
		g, err := Compile(c.glob)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.glob, err)
		}
		if got := g.Match(c.typ, c.id); got != c.want {
			t.Errorf("%q matches %s/%s = %v, want %v", c.glob, c.typ, c.id, got, c.want)
		}
	}
}

func TestCompileRefusesBadGlobs(t *testing.T) {
	for glob, want := range map[string]string{
		"":               "empty",
		"model":          "one segment",
		"models/acme/*":  "matches no repo type",
		"repo/*":         "matches no repo type",
		"model/acme/x/y": "more than three",
		"model//x":       "empty segment",
		"/model/x":       "empty segment",
		"model/x/":       "empty segment",
		"model/[a/x":     "malformed pattern",
		`model/a\`:       "malformed pattern",
		"model/a b/*":    "can be in no repo id",
		"model/acme,x/*": "can be in no repo id",
		"**/acme/x":      `"**" may only be the last`,
		"model/acme/x\n": "can be in no repo id",
		"model/acme/x!":  "can be in no repo id",
	} {
		_, err := Compile(glob)
		if err == nil {
			t.Errorf("Compile(%q) = nil error, want one saying %q", glob, want)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "repo glob") {
			t.Errorf("Compile(%q) = %v, want it to say %q", glob, err, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	type repo struct{ typ, id string }
	for _, c := range []struct {
		name        string
		allow, deny []string
		pass, fail  []repo
	}{
		{name: "empty allows all", pass: []repo{{"model", "a/b"}, {"dataset", "x"}}},
		{name: "allow only", allow: []string{"model/meta-llama/*", "dataset/*"},
			pass: []repo{{"model", "meta-llama/x"}, {"dataset", "a/b"}, {"dataset", "squad"}},
			fail: []repo{{"model", "other/x"}, {"space", "meta-llama/x"}, {"model", "gpt2"}}},
		{name: "deny only", deny: []string{"*/acme/*"},
			pass: []repo{{"model", "other/x"}, {"model", "gpt2"}},
			fail: []repo{{"model", "acme/x"}, {"dataset", "ACME/y"}}},
		{name: "deny wins", allow: []string{"model/*"}, deny: []string{"model/acme/secret"},
			pass: []repo{{"model", "acme/public"}},
			fail: []repo{{"model", "acme/secret"}, {"model", "Acme/Secret"}, {"dataset", "a/b"}}},
		{name: "deny all", allow: []string{"*"}, deny: []string{"*"}, fail: []repo{{"model", "a/b"}}},
	} {
		p, err := New(c.allow, c.deny)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.Active() != (len(c.allow)+len(c.deny) > 0) {
			t.Errorf("%s: Active = %v", c.name, p.Active())
		}
		for _, r := range c.pass {
			if !p.Allows(r.typ, r.id) {
				t.Errorf("%s: %s/%s refused, want allowed", c.name, r.typ, r.id)
			}
		}
		for _, r := range c.fail {
			if p.Allows(r.typ, r.id) {
				t.Errorf("%s: %s/%s allowed, want refused", c.name, r.typ, r.id)
			}
		}
	}
	var nilPolicy *Policy
	if !nilPolicy.Allows("model", "a/b") || nilPolicy.Active() {
		t.Error("the nil policy must allow everything")
	}
}

func TestNewReportsEveryBadGlob(t *testing.T) {
	_, err := New([]string{"model/ok/*", "models/x"}, []string{"bad glob"})
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{`allow: repo glob "models/x"`, `deny: repo glob "bad glob"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

// FuzzMatch feeds operator-shaped input to the glob parser and matcher:
// neither may panic, a compiled glob matches regardless of case, a glob
// with no pattern syntax matches exactly the subject it spells, and a glob
// without classes or a trailing "*" agrees with path.Match on the whole
// subject.
func FuzzMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"dataset/*", "dataset", "org/d"}, {"model/meta-llama/*", "model", "meta-llama/x"},
		{"*/acme/*", "space", "acme/s"}, {"model/gpt2", "model", "gpt2"}, {"model/[^a-c]?/x", "model", "d1/x"},
		{`model/a\*/x`, "model", "a*/x"}, {"**", "dataset", "a"}, {"model/[", "model", "["},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, glob, typ, id string) {
		g, err := Compile(glob)
		if err != nil {
			return
		}
		got := g.Match(typ, id)
		if g.Match(strings.ToUpper(typ), strings.ToUpper(id)) != got || g.Match(strings.ToLower(typ), strings.ToLower(id)) != got {
			t.Fatalf("%q on %s/%s: case changes the answer", glob, typ, id)
		}
		subj := strings.ToLower(typ + "/" + id)
		if !strings.ContainsAny(glob, `*?[]\^`) && got != (strings.ToLower(glob) == subj) {
			t.Fatalf("literal %q on %q: got %v", glob, subj, got)
		}
		if !strings.ContainsAny(glob, `[\`) && !g.rest {
			want, _ := path.Match(strings.ToLower(glob), subj)
			if got != want {
				t.Fatalf("%q on %q: got %v, path.Match says %v", glob, subj, got, want)
			}
		}
	})
}
