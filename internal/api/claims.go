package api

import (
	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
)

// ProvenanceClaims are the claims seed 004 asks tokens to carry for audit
// and provenance; whichever a token has go into the audit trail.
var ProvenanceClaims = []string{"requesting_system", "requesting_organization", "requesting_user", "reason_for_request"}

// RequiredClaim is a claim a realm's tokens must carry (internal/auth).
type RequiredClaim = auth.RequiredClaim

func provenance(p *auth.Principal) map[string]string {
	out := map[string]string{}
	for _, name := range ProvenanceClaims {
		if v, ok := p.Claim(name); ok {
			out[name] = v
		}
	}
	return out
}

// claimsProblem says which required claim of realm p's token lacks or
// carries another value than the fixed one; "" when none.
func (h *handler) claimsProblem(p *auth.Principal, realm string) string {
	return p.Lacks(h.opts.RequiredClaims, realm)
}

// requireClaims refuses, with a problem that says which claim, tokens that
// fail the realm's required claims.
func (h *handler) requireClaims(c *gin.Context) {
	p := c.Request.Context().Value(principalKey).(*auth.Principal)
	if why := h.claimsProblem(p, c.Param("realm")); why != "" {
		h.refuse(c, fault.Forbidden, why)
		return
	}
	c.Next()
}
