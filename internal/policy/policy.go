package policy

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Types are the repo types a subject may start with.
var Types = []string{"model", "dataset", "space"}

// Glob is one compiled allow or deny pattern.
type Glob struct {
	raw  string
	segs []string // lower-cased path.Match patterns
	rest bool     // the last segment was "*" or "**": it matches one or more segments
}

// String returns the glob as the operator wrote it.
func (g Glob) String() string { return g.raw }

// Compile checks glob and compiles it (see the package doc for the rules).
func Compile(glob string) (Glob, error) {
	bad := func(why string) (Glob, error) { return Glob{}, fmt.Errorf("repo glob %q: %s", glob, why) }
	if glob == "" {
		return bad("empty")
	}
	raw := strings.Split(strings.ToLower(glob), "/")
	if len(raw) > 3 {
		return bad("more than three segments; want {type}/{namespace}/{name}")
	}
	g := Glob{raw: glob, segs: raw}
	for i, s := range raw {
		if s == "" {
			return bad("empty segment (a leading, trailing or double slash)")
		}
		if s == "**" {
			if i != len(raw)-1 {
				return bad(`"**" may only be the last segment`)
			}
			raw[i] = "*"
			s = "*"
		}
		for j := 0; j < len(s); j++ {
			if !globChar(s[j]) {
				return bad(fmt.Sprintf("character %q can be in no repo id", s[j]))
			}
		}
		if _, err := path.Match(s, ""); err != nil {
			return bad("malformed pattern in segment " + fmt.Sprint(i+1))
		}
	}
	g.rest = raw[len(raw)-1] == "*"
	if len(raw) == 1 && !g.rest {
		return bad(`one segment can only be "*"; want {type}/{namespace}/{name}, e.g. model/acme/* or dataset/*`)
	}
	if !matchesAnyType(raw[0]) {
		return bad("first segment matches no repo type; want model, dataset or space (singular)")
	}
	return g, nil
}

// globChar reports whether c may appear in a glob: the characters of repo
// ids (letters, digits, '-', '_', '.') and the pattern syntax.
func globChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-_.*?[]^\\", c) >= 0
}

func matchesAnyType(seg string) bool {
	for _, t := range Types {
		if ok, _ := path.Match(seg, t); ok {
			return true
		}
	}
	return false
}

// Match reports whether the glob matches the subject typ/id.
func (g Glob) Match(typ, id string) bool {
	subj := strings.Split(strings.ToLower(typ+"/"+id), "/")
	n := len(g.segs)
	if g.rest {
		if len(subj) < n {
			return false
		}
		n-- // the last segment takes what is left, at least one segment
	} else if len(subj) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if ok, _ := path.Match(g.segs[i], subj[i]); !ok {
			return false
		}
	}
	return true
}

// Policy is a compiled allow and deny list. The nil *Policy allows every
// repo.
type Policy struct {
	allow, deny []Glob
}

// New compiles the allow and deny globs, reporting every bad one.
func New(allow, deny []string) (*Policy, error) {
	p := &Policy{}
	var errs []error
	for _, l := range []struct {
		flag  string
		globs []string
		into  *[]Glob
	}{{"allow", allow, &p.allow}, {"deny", deny, &p.deny}} {
		for _, s := range l.globs {
			g, err := Compile(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", l.flag, err))
				continue
			}
			*l.into = append(*l.into, g)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Active reports whether the policy refuses anything at all.
func (p *Policy) Active() bool { return p != nil && (len(p.allow) > 0 || len(p.deny) > 0) }

// Allows reports whether the repo typ/id may be served: no deny glob
// matches it and, if there are allow globs, one of them does.
func (p *Policy) Allows(typ, id string) bool {
	if p == nil {
		return true
	}
	for _, g := range p.deny {
		if g.Match(typ, id) {
			return false
		}
	}
	if len(p.allow) == 0 {
		return true
	}
	for _, g := range p.allow {
		if g.Match(typ, id) {
			return true
		}
	}
	return false
}
