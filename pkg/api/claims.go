package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/pkg/auth"
)

// ProvenanceClaims are the claims seed 004 asks tokens to carry for audit
// and provenance; whichever a token has go into the audit trail.
var ProvenanceClaims = []string{"requesting_system", "requesting_organization", "requesting_user", "reason_for_request"}

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

func claimString(p *auth.Principal, name string) (string, bool) {
	switch v := p.Claims[name].(type) {
	case string:
		return v, v != ""
	case nil:
		return "", false
	default:
		return fmt.Sprint(v), true
	}
}

func provenance(p *auth.Principal) map[string]string {
	out := map[string]string{}
	for _, name := range ProvenanceClaims {
		if v, ok := claimString(p, name); ok {
			out[name] = v
		}
	}
	return out
}

// claimsProblem says which required claim of realm p's token lacks or
// carries another value than the fixed one; "" when none.
func (h *handler) claimsProblem(p *auth.Principal, realm string) string {
	for _, rc := range h.opts.RequiredClaims {
		if rc.Realm != "" && rc.Realm != realm {
			continue
		}
		v, ok := claimString(p, rc.Name)
		switch {
		case !ok:
			return "tokens of realm " + realm + " must carry the claim " + rc.Name
		case rc.Value != "" && v != rc.Value:
			return "the claim " + rc.Name + " must be " + rc.Value + " in tokens of realm " + realm
		}
	}
	return ""
}

// requireClaims refuses, with a problem that says which claim, tokens that
// fail the realm's required claims.
func (h *handler) requireClaims(c *gin.Context) {
	p := c.Request.Context().Value(principalKey).(*auth.Principal)
	if why := h.claimsProblem(p, c.Param("realm")); why != "" {
		h.fail(c, http.StatusForbidden, why)
		return
	}
	c.Next()
}
