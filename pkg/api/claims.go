package api

import (
	"fmt"
	"net/http"
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

// ParseRequiredClaims reads "[realm:]claim[=value]" entries.
func ParseRequiredClaims(entries []string) ([]RequiredClaim, error) {
	var out []RequiredClaim
	for _, e := range entries {
		var rc RequiredClaim
		rest := e
		if realm, after, ok := strings.Cut(e, ":"); ok {
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

// requireClaims refuses, with a problem that says which claim, tokens that
// lack a claim the realm requires or carry another value than the fixed one.
func (h *handler) requireClaims(c *gin.Context) {
	p := c.Request.Context().Value(principalKey).(*auth.Principal)
	realm := c.Param("realm")
	for _, rc := range h.opts.RequiredClaims {
		if rc.Realm != "" && rc.Realm != realm {
			continue
		}
		v, ok := claimString(p, rc.Name)
		switch {
		case !ok:
			h.fail(c, http.StatusForbidden, "tokens of realm "+realm+" must carry the claim "+rc.Name)
			return
		case rc.Value != "" && v != rc.Value:
			h.fail(c, http.StatusForbidden, "the claim "+rc.Name+" must be "+rc.Value+" in tokens of realm "+realm)
			return
		}
	}
	c.Next()
}
