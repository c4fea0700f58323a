package api

import (
	"errors"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// AuthzPrefix is where the decision point lives in a realm's namespace. It
// is beside /communities, not under it, so that no community label can
// collide with it, and it is not /authz, which Keycloak uses.
const AuthzPrefix = "/communities-authz"

type decisionRequest struct {
	ResourceType string            `json:"resourceType"`
	Interaction  string            `json:"interaction"`
	Security     []decision.Coding `json:"security"`
	// NewSecurity is meta.security of the content a create, update or
	// patch would store.
	NewSecurity []decision.Coding `json:"newSecurity"`
	// Token, from a trusted caller (a --decision-clients client), is the
	// token to judge instead of the caller's own.
	Token string `json:"token"`
}

type decisionResponse struct {
	Allowed      bool   `json:"allowed"`
	Rule         string `json:"rule"`
	Reason       string `json:"reason"`
	Interaction  string `json:"interaction"`
	ResourceType string `json:"resourceType"`
	APIGrant     string `json:"apiGrant,omitempty"`
	Label        string `json:"label,omitempty"`
	Privilege    string `json:"privilege,omitempty"`
	Changed      string `json:"changedLabel,omitempty"`
}

// ruleRequiredClaim names the denial of a judged token that fails the
// realm's required claims; the library's rules never see such a token.
const ruleRequiredClaim = "required-claim"

var interactions = map[string]decision.Interaction{
	"read": decision.Read, "vread": decision.Read, "history": decision.Read,
	"search": decision.Search, "search-type": decision.Search,
	"create": decision.Create, "update": decision.Update, "patch": decision.Update, "delete": decision.Delete,
}

// subject returns the token to judge: the caller's own, or, when a trusted
// caller sends one, that token verified in full for the same realm. A
// judged token must also satisfy the realm's required claims, as the
// caller's own did; claimsProblem says why not.
func (h *handler) subject(c *gin.Context, token string) (p *auth.Principal, claimsProblem string, ok bool) {
	caller := c.Request.Context().Value(principalKey).(*auth.Principal)
	if token == "" {
		return caller, "", true
	}
	if !slices.Contains(h.opts.DecisionClients, caller.ClientID) {
		h.refuse(c, fault.Forbidden, "only the clients in --decision-clients may ask about another token")
		return nil, "", false
	}
	p, err := h.opts.Verifier.Verify(c.Request.Context(), c.Param("realm"), token)
	if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
		h.fail(c, err) // not checked (Keycloak's keys unavailable): try again
		return nil, "", false
	}
	if err != nil {
		h.log.InfoContext(c.Request.Context(), "judged token refused", "reason", err.Error(), "request_id", requestIDOf(c))
		h.refuse(c, fault.Unprocessable, "the token to judge is not a valid token of this realm for this service")
		return nil, "", false
	}
	return p, h.claimsProblem(p, c.Param("realm")), true
}

func (h *handler) decide(c *gin.Context) {
	var req decisionRequest
	if err := decodeJSON(c.Request, &req); err != nil {
		h.fail(c, err)
		return
	}
	in, ok := interactions[req.Interaction]
	if !ok || req.ResourceType == "" {
		h.refuse(c, fault.Invalid, `give "resourceType" and "interaction" (read, vread, history, search, create, update, patch or delete)`)
		return
	}
	if len(req.Security) > 100 || len(req.NewSecurity) > 100 {
		h.refuse(c, fault.Invalid, `at most 100 labels in "security" and in "newSecurity"`)
		return
	}
	// A label sent where the rules do not read it would be judged as
	// absent: a create's labels in "security" let any writer plant any
	// label. So it is refused, not ignored.
	switch {
	case in == decision.Create && len(req.Security) > 0:
		h.refuse(c, fault.Invalid, `a create has no stored labels: send the new content's labels in "newSecurity", not "security"`)
		return
	case in != decision.Create && in != decision.Update && len(req.NewSecurity) > 0:
		h.refuse(c, fault.Invalid, `"newSecurity" is for create, update and patch only`)
		return
	}
	p, claimsProblem, ok := h.subject(c, req.Token)
	if !ok {
		return
	}
	if claimsProblem != "" {
		h.opts.Metrics.Decisions.WithLabelValues("deny", ruleRequiredClaim).Inc()
		c.JSON(http.StatusOK, decisionResponse{
			Rule: ruleRequiredClaim, Reason: req.Interaction + " of " + req.ResourceType + " denied: " + claimsProblem,
			Interaction: req.Interaction, ResourceType: req.ResourceType,
		})
		return
	}
	d := h.opts.Decisions.Decide(p.Privileges, decision.Request{
		ResourceType: req.ResourceType, Interaction: in, Security: req.Security, NewSecurity: req.NewSecurity,
	})
	outcome := "deny"
	if d.Allowed {
		outcome = "allow"
	}
	h.opts.Metrics.Decisions.WithLabelValues(outcome, d.Rule.String()).Inc()
	if d.NearMiss != "" {
		h.nearMiss(c, d.NearMiss)
	}
	c.JSON(http.StatusOK, decisionResponse{
		Allowed: d.Allowed, Rule: d.Rule.String(), Reason: d.Reason(),
		Interaction: req.Interaction, ResourceType: req.ResourceType,
		APIGrant: d.API, Label: d.Label, Privilege: d.Privilege, Changed: d.Changed,
	})
}

// nearMiss counts a label system that is almost the permissions system and
// logs each such system once per process (up to a bound, so that callers
// cannot grow the set without limit): it is almost always a
// misconfigured FHIR server or a typo someone must fix.
func (h *handler) nearMiss(c *gin.Context, system string) {
	h.opts.Metrics.NearMissSystems.Inc()
	h.nearMissMu.Lock()
	_, seen := h.nearMissSeen[system]
	if !seen && len(h.nearMissSeen) < maxNearMissLogged {
		h.nearMissSeen[system] = struct{}{}
	} else {
		seen = true
	}
	h.nearMissMu.Unlock()
	if !seen {
		h.log.WarnContext(c.Request.Context(), "label system is almost the permissions system; its labels restrict resources to wildcard holders",
			"system", system, "permissions_system", h.opts.Decisions.System, "request_id", requestIDOf(c))
	}
}

const maxNearMissLogged = 100

type labelsResponse struct {
	Read     []string `json:"read"`
	Write    []string `json:"write"`
	AllRead  bool     `json:"allRead"`
	AllWrite bool     `json:"allWrite"`
	System   string   `json:"system"`
}

func (h *handler) labels(c *gin.Context) {
	token := ""
	if c.Request.Method == http.MethodPost {
		var body struct {
			Token string `json:"token"`
		}
		if err := decodeJSON(c.Request, &body); err != nil {
			h.fail(c, err)
			return
		}
		if body.Token == "" {
			h.refuse(c, fault.Invalid, `give the "token" to judge, or use GET for your own`)
			return
		}
		token = body.Token
	}
	p, claimsProblem, ok := h.subject(c, token)
	if !ok {
		return
	}
	if claimsProblem != "" {
		h.refuse(c, fault.Unprocessable, "the token to judge: "+claimsProblem)
		return
	}
	r := p.Privileges.Communities()
	if r.Read == nil {
		r.Read = []string{}
	}
	if r.Write == nil {
		r.Write = []string{}
	}
	system := h.opts.Decisions.System
	if system == "" {
		system = decision.DefaultSystem
	}
	c.JSON(http.StatusOK, labelsResponse{Read: r.Read, Write: r.Write, AllRead: r.AllRead, AllWrite: r.AllWrite, System: system})
}

type accessResponse struct {
	Realm            string              `json:"realm"`
	Username         string              `json:"username"`
	CommunityCreator bool                `json:"communityCreator"`
	ServiceDesk      bool                `json:"serviceDesk"`
	CanCreate        bool                `json:"canCreate"`
	CanChange        bool                `json:"canChange"`
	Console          bool                `json:"console"`
	Owned            []string            `json:"owned"`
	Memberships      map[string][]string `json:"memberships"`
}

// access answers "what may I do here" for the caller's own token: what the
// admin console's Communities page shows follows it.
func (h *handler) access(c *gin.Context) {
	a := h.actor(c)
	acc, err := h.opts.Service.Access(c.Request.Context(), c.Param("realm"), a)
	if err != nil {
		h.fail(c, err)
		return
	}
	// Tokens of clients outside --change-clients may only read.
	change := slices.Contains(h.opts.ChangeClients, a.ClientID)
	c.JSON(http.StatusOK, accessResponse{
		Realm: c.Param("realm"), Username: a.Username,
		CommunityCreator: acc.Creator, ServiceDesk: acc.ServiceDesk, CanCreate: acc.CanCreate && change, CanChange: change,
		Console: acc.Console(), Owned: acc.Owned, Memberships: acc.Memberships,
	})
}
