// Package decision decides whether a token may perform a FHIR interaction on
// a resource, following Ontoserver's resource-level policy for communities.
//
// Two checks apply in turn. First the API level: the token must hold a
// scope or authority granting the interaction on the resource type. Then
// the resource level: if the resource carries community labels of the kind
// the interaction needs (<label>.read for read and search, <label>.write
// for update and delete), the token must hold the community privilege for
// at least one of them. Seed 003: "Community privileges and FHIR security
// labels are cumulative with the underlying API level security."
//
// Decide performs no allocation; Parse does all the string work up front.
package decision

import (
	"strconv"
	"strings"
)

// DefaultSystem is the code system of Ontoserver's permission labels.
const DefaultSystem = "http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions"

// Interaction is a FHIR interaction as far as permissions are concerned.
// Callers map the rest: vread and history to Read, patch to Update,
// conditional and bulk interactions to the interactions they perform.
type Interaction uint8

// The interactions are numbered in SMART v2 "cruds" order; zero is invalid.
const (
	Create Interaction = iota + 1
	Read
	Update
	Delete
	Search
)

const numInteractions = 5

var interactionNames = [numInteractions]string{"create", "read", "update", "delete", "search"}

func (i Interaction) valid() bool { return i >= Create && i <= Search }

// String returns the interaction's FHIR name.
func (i Interaction) String() string {
	if !i.valid() {
		return "interaction(" + strconv.Itoa(int(i)) + ")"
	}
	return interactionNames[i-1]
}

// Coding is one entry of a resource's meta.security.
type Coding struct {
	System, Code string
}

// Request is one interaction to decide.
type Request struct {
	ResourceType string
	Interaction  Interaction
	// Security is meta.security of the resource: for update and delete the
	// existing instance's, not the new content's. It is ignored for create.
	Security []Coding
}

// Config says which labels carry permissions. The zero value uses
// DefaultSystem and ignores labels without a system.
type Config struct {
	// System is the code system of permission labels; empty means
	// DefaultSystem.
	System string
	// SystemlessLabels makes labels with no system count as well.
	SystemlessLabels bool
}

// Rule names the step of the policy that settled a Decision.
type Rule uint8

// Rules that deny are RuleInvalidInteraction, RuleNoAPIAccess and
// RuleNoCommunityPrivilege; the others allow.
const (
	// RuleInvalidInteraction: the request's Interaction is not one of the
	// constants. It is the zero Rule so that a zero Decision denies.
	RuleInvalidInteraction Rule = iota
	// RuleNoAPIAccess: nothing grants the interaction on the type at API
	// level; community privileges never make up for that.
	RuleNoAPIAccess
	// RuleCreate: create needs API-level write only.
	RuleCreate
	// RuleUnlabelled: the resource has no label of the kind the
	// interaction needs, so API level suffices.
	RuleUnlabelled
	// RuleOpenLabel: the resource carries *.read (or *.write for writes),
	// opening it to everyone with API-level access.
	RuleOpenLabel
	// RuleCommunityPrivilege: the token holds the privilege of a community
	// the resource is labelled with.
	RuleCommunityPrivilege
	// RuleAllCommunities: the token holds grouping/*.read or PERM_READ (or
	// the write equivalents), a privilege in every community.
	RuleAllCommunities
	// RuleNoCommunityPrivilege: the resource has labels of the needed kind
	// and the token holds the privilege of none of them.
	RuleNoCommunityPrivilege
)

var ruleNames = [...]string{
	RuleInvalidInteraction:   "invalid-interaction",
	RuleNoAPIAccess:          "no-api-access",
	RuleCreate:               "create",
	RuleUnlabelled:           "unlabelled",
	RuleOpenLabel:            "open-label",
	RuleCommunityPrivilege:   "community-privilege",
	RuleAllCommunities:       "all-communities",
	RuleNoCommunityPrivilege: "no-community-privilege",
}

// String returns a stable kebab-case name, suitable for logs and metrics.
func (r Rule) String() string {
	if int(r) < len(ruleNames) {
		return ruleNames[r]
	}
	return "rule(" + strconv.Itoa(int(r)) + ")"
}

// Decision is the outcome of Decide together with what produced it. The
// strings are those of the token and the request, never copies.
type Decision struct {
	Allowed      bool
	Rule         Rule
	Interaction  Interaction
	ResourceType string
	// API is the scope or authority granting the interaction at API level,
	// empty when nothing does.
	API string
	// Label is the label that decided: the one matched when allowed by
	// RuleOpenLabel, RuleCommunityPrivilege or RuleAllCommunities, the first
	// one of the needed kind when denied by RuleNoCommunityPrivilege.
	Label string
	// Privilege is the community scope or authority that matched Label.
	Privilege string
}

// Decide decides req under the default Config.
func Decide(p *Privileges, req Request) Decision {
	return Config{}.Decide(p, req)
}

// Decide decides req for a token holding p; a nil p holds nothing.
func (c Config) Decide(p *Privileges, req Request) Decision {
	d := Decision{Interaction: req.Interaction, ResourceType: req.ResourceType}
	if !req.Interaction.valid() {
		return d
	}
	if d.API = p.api(req.ResourceType, req.Interaction); d.API == "" {
		d.Rule = RuleNoAPIAccess
		return d
	}
	if req.Interaction == Create {
		return d.allow(RuleCreate)
	}

	wantWrite := req.Interaction == Update || req.Interaction == Delete
	held, all := p.read, p.readAll
	if wantWrite {
		held, all = p.write, p.writeAll
	}
	system := c.System
	if system == "" {
		system = DefaultSystem
	}
	for _, l := range req.Security {
		if l.System != system && (l.System != "" || !c.SystemlessLabels) {
			continue
		}
		community, write, ok := parseLabel(l.Code)
		if !ok || write != wantWrite {
			continue
		}
		if community == "*" {
			d.Label = l.Code
			return d.allow(RuleOpenLabel)
		}
		if src, ok := held[community]; ok {
			d.Label, d.Privilege = l.Code, src
			return d.allow(RuleCommunityPrivilege)
		}
		if d.Label == "" {
			d.Label = l.Code
		}
	}
	switch {
	case d.Label == "":
		return d.allow(RuleUnlabelled)
	case all != "":
		d.Privilege = all
		return d.allow(RuleAllCommunities)
	}
	d.Rule = RuleNoCommunityPrivilege
	return d
}

func (d Decision) allow(r Rule) Decision {
	d.Allowed, d.Rule = true, r
	return d
}

// api returns what grants i on typ at API level, preferring a grant for the
// type itself because it explains more precisely.
func (p *Privileges) api(typ string, i Interaction) string {
	if p == nil {
		return ""
	}
	if g := p.byType[typ]; g != nil && g[i-1] != "" {
		return g[i-1]
	}
	return p.anyType[i-1]
}

// parseLabel splits a permission label code "<community>.read" or
// "<community>.write" by slicing, without allocating. The community part is
// not validated: a malformed one can match no community privilege, so it
// still restricts the resource (fail closed) and only wildcard privileges
// open it. Suffixes are case-sensitive, as in Ontoserver.
func parseLabel(code string) (community string, write, ok bool) {
	if c, ok := strings.CutSuffix(code, ".read"); ok {
		return c, false, true
	}
	if c, ok := strings.CutSuffix(code, ".write"); ok {
		return c, true, true
	}
	return "", false, false
}

// Reason explains the decision in one sentence, naming the scopes,
// authorities and labels involved. It is built on demand so that Decide
// stays allocation-free.
func (d Decision) Reason() string {
	var b strings.Builder
	b.WriteString(d.Interaction.String())
	if d.ResourceType != "" {
		b.WriteString(" of " + d.ResourceType)
	}
	if d.Allowed {
		b.WriteString(" allowed: ")
	} else {
		b.WriteString(" denied: ")
	}
	switch d.Rule {
	case RuleInvalidInteraction:
		b.WriteString("the interaction is not one of create, read, update, delete, search")
		return b.String()
	case RuleNoAPIAccess:
		b.WriteString("no scope or authority grants " + d.Interaction.String() + " at API level" +
			" (community privileges never raise API-level access)")
		return b.String()
	}
	b.WriteString(source(d.API) + " grants " + d.Interaction.String() + " at API level")
	kind := "read"
	if d.Interaction == Update || d.Interaction == Delete {
		kind = "write"
	}
	switch d.Rule {
	case RuleCreate:
		b.WriteString(", which is all create needs (labels are not checked)")
	case RuleUnlabelled:
		b.WriteString(" and the resource has no ." + kind + " label")
	case RuleOpenLabel:
		b.WriteString(" and the resource's label " + strconv.Quote(d.Label) + " opens it to everyone with API access")
	case RuleCommunityPrivilege:
		b.WriteString(" and label " + strconv.Quote(d.Label) + " is matched by " + source(d.Privilege))
	case RuleAllCommunities:
		b.WriteString(" and label " + strconv.Quote(d.Label) + " is matched by " + source(d.Privilege) +
			", which covers every community")
	case RuleNoCommunityPrivilege:
		b.WriteString(", but the resource has ." + kind + " labels (first " + strconv.Quote(d.Label) +
			") and no community privilege matches any of them")
	}
	return b.String()
}

// source names a grant for Reason. Every scope Parse accepts contains "/"
// and no authority it accepts does, so the kind can be recovered here
// rather than stored in every Decision.
func source(s string) string {
	if strings.Contains(s, "/") {
		return "scope " + strconv.Quote(s)
	}
	return "authority " + strconv.Quote(s)
}
