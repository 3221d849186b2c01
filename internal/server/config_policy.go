package server

import (
	"errors"
	"flag"
	"strings"

	"github.com/xetproxy/xetproxy/internal/policy"
)

// minAuditKey is the shortest XETPROXY_AUDIT_KEY accepted: the key is what
// keeps caller digests from being reversed by guessing, so it must not be
// guessable itself.
const minAuditKey = 16

// registerPolicyFlags declares --allow and --deny (repeatable, each value
// also a comma-separated list; defaults from XETPROXY_ALLOW and
// XETPROXY_DENY) and reads XETPROXY_AUDIT_KEY, a secret, from the
// environment only.
func (c *Config) registerPolicyFlags(fs *flag.FlagSet, getenv func(string) string) {
	c.Allow = splitKeys(getenv("XETPROXY_ALLOW"), ",")
	c.Deny = splitKeys(getenv("XETPROXY_DENY"), ",")
	fs.Var(&globList{list: &c.Allow}, "allow", "serve only repos matching this glob over {type}/{namespace}/{name}, e.g. model/meta-llama/* or dataset/*; repeatable (env XETPROXY_ALLOW, comma-separated)")
	fs.Var(&globList{list: &c.Deny}, "deny", "refuse repos matching this glob; wins over --allow; repeatable (env XETPROXY_DENY, comma-separated)")
	c.AuditKey = strings.TrimSpace(getenv("XETPROXY_AUDIT_KEY"))
}

// validatePolicy reports bad globs (every one) and a short audit key.
func (c *Config) validatePolicy() error {
	var errs []error
	if _, err := policy.New(c.Allow, c.Deny); err != nil {
		errs = append(errs, err)
	}
	if c.AuditKey != "" && len(c.AuditKey) < minAuditKey {
		errs = append(errs, errors.New("XETPROXY_AUDIT_KEY must be at least 16 characters"))
	}
	return errors.Join(errs...)
}

// globList is a repeatable flag of comma-separated globs. Flags win over
// the environment: the first value given on the command line replaces the
// list taken from the environment, later ones add to it.
type globList struct {
	list *[]string
	set  bool
}

func (g *globList) String() string {
	if g.list == nil {
		return ""
	}
	return strings.Join(*g.list, ",")
}

func (g *globList) Set(v string) error {
	if !g.set {
		*g.list, g.set = nil, true
	}
	globs := splitKeys(v, ",")
	if len(globs) == 0 {
		return errors.New("empty glob")
	}
	*g.list = append(*g.list, globs...)
	return nil
}
