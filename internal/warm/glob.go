package warm

import (
	"fmt"
	"path"
	"strings"
)

// checkPatterns reports the first malformed pattern.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if p == "" {
			return fmt.Errorf("empty glob pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("glob pattern %q: %w", p, err)
		}
	}
	return nil
}

// matchAny reports whether a pattern matches p, the slash-separated path
// of a file in its repo. '*' does not cross '/'; a pattern without '/' is
// tried on the base name too.
func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}

// selected applies the include and exclude lists to a file path.
func selected(include, exclude []string, p string) bool {
	if len(include) > 0 && !matchAny(include, p) {
		return false
	}
	return !matchAny(exclude, p)
}
