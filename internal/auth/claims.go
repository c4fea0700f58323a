package auth

import (
	"fmt"
	"slices"
	"strings"
)

// RequiredClaim is a claim a realm's tokens must carry, optionally with a
// fixed value.
type RequiredClaim struct {
	Realm string // empty: every realm
	Name  string
	Value string // empty: any value
}

// ParseRequiredClaims reads "[realm:]claim[=value]" entries. Text before
// the first ":" must be one of realms: a claim name that itself contains
// ":" (a URI) is written with its realm in front, so that no entry can be
// silently read as a realm prefix and never enforced.
func ParseRequiredClaims(entries, realms []string) ([]RequiredClaim, error) {
	var out []RequiredClaim
	for _, e := range entries {
		var rc RequiredClaim
		rest := e
		if realm, after, ok := strings.Cut(e, ":"); ok {
			if !slices.Contains(realms, realm) {
				return nil, fmt.Errorf("required claim %q: %q is not a managed realm (%s); a claim whose name contains \":\" must be written realm:claim",
					e, realm, strings.Join(realms, ", "))
			}
			rc.Realm, rest = realm, after
		}
		rc.Name, rc.Value, _ = strings.Cut(rest, "=")
		if rc.Name == "" {
			return nil, fmt.Errorf("required claim %q: write [realm:]claim[=value]", e)
		}
		out = append(out, rc)
	}
	return out, nil
}

// Claim returns the claim name of p, and whether it is a string that is
// not empty. A claim of another shape ([], {}, false, 0) counts as
// missing: provenance claims are text, and a required claim must not be
// satisfied by something that only prints as a value.
func (p *Principal) Claim(name string) (string, bool) {
	v, ok := p.Claims[name].(string)
	return v, ok && v != ""
}

// Lacks says which of the required claims of realm p's token lacks or
// carries another value than the fixed one; "" when none.
func (p *Principal) Lacks(required []RequiredClaim, realm string) string {
	for _, rc := range required {
		if rc.Realm != "" && rc.Realm != realm {
			continue
		}
		v, ok := p.Claim(rc.Name)
		switch {
		case !ok:
			return "tokens of realm " + realm + " must carry the claim " + rc.Name
		case rc.Value != "" && v != rc.Value:
			return "the claim " + rc.Name + " must be " + rc.Value + " in tokens of realm " + realm
		}
	}
	return ""
}
