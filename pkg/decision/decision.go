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
// Anything in the permissions code system that is not a valid label, and
// any label whose system is a near miss of it, fails closed: only wildcard
// privileges open such a resource. A create or update must also hold write
// in the community of every permission label it adds or removes, so that no
// one can plant a label in a community they cannot write or strip one they
// could not have set.
//
// Decide performs no allocation; Parse does all the string work up front.
package decision

import (
	"strconv"
	"strings"
	"unicode"
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
	System string `json:"system"`
	Code   string `json:"code"`
}

// Request is one interaction to decide.
type Request struct {
	ResourceType string
	Interaction  Interaction
	// Security is meta.security of the resource as stored: the instance
	// read, or the existing instance an update or delete changes. It is
	// ignored for create (there is none).
	Security []Coding
	// NewSecurity is meta.security of the content a create or update would
	// store (for a patch, the patched content's). Nil means that content
	// carries no labels, so an update without it removes every stored
	// permission label. It is ignored for read, search and delete.
	NewSecurity []Coding
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
	// RuleInvalidLabel: the resource carries a code of the permissions
	// system that is not a valid label (NDD.READ, NDD), or a label of a
	// near-miss system; only a wildcard privilege opens it.
	RuleInvalidLabel
	// RuleLabelChange: the write would add or remove a permission label
	// in a community the token cannot write.
	RuleLabelChange
	// RuleOpensResource: the write would open the resource to everyone
	// with API-level access (its last restricting .read or .write label
	// removed), which only a privilege in every community may do.
	RuleOpensResource
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
	RuleInvalidLabel:         "invalid-label",
	RuleLabelChange:          "label-change-denied",
	RuleOpensResource:        "opens-resource-denied",
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
	// Changed is, when denied by RuleLabelChange, the label the write would
	// add or (Removed) remove without write in its community; when denied
	// by RuleOpensResource, the first restricting label it removes.
	Changed string
	Removed bool
	// NearMiss is the first label system seen that is almost the
	// permissions system (another scheme, case or a trailing slash): such
	// labels count as invalid, and callers should report them.
	NearMiss string
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
	switch req.Interaction {
	case Create:
		d.Rule, d.Allowed = RuleCreate, true
		return c.checkChanges(p, d, nil, req.NewSecurity)
	case Update:
		if d = c.stored(p, d, req.Security, true); !d.Allowed {
			return d
		}
		return c.checkChanges(p, d, req.Security, req.NewSecurity)
	case Delete:
		return c.stored(p, d, req.Security, true)
	}
	return c.stored(p, d, req.Security, false)
}

// stored judges the labels of the instance as stored: one label of the
// needed kind matched by a privilege is enough (seed 003), an invalid one
// restricts the instance to wildcard holders.
func (c Config) stored(p *Privileges, d Decision, security []Coding, wantWrite bool) Decision {
	held, all := p.read, p.readAll
	if wantWrite {
		held, all = p.write, p.writeAll
	}
	var open, matched, matchedBy string
	invalid := -1 // an index: an invalid code may be ""
	for i, l := range security {
		kind, community := c.classify(l, &d)
		switch {
		case kind == notPermission:
		case kind == invalidLabel:
			if invalid < 0 {
				invalid = i
			}
		case (kind == writeLabel) != wantWrite:
		case community == "*":
			if open == "" {
				open = l.Code
			}
		default:
			if src, ok := held[community]; ok && matched == "" {
				matched, matchedBy = l.Code, src
			} else if d.Label == "" {
				d.Label = l.Code
			}
		}
	}
	switch {
	case invalid >= 0:
		// Whatever else the labels say, what was meant by an invalid
		// one is unknown, so only a wildcard privilege may decide it.
		d.Label = security[invalid].Code
		if all == "" {
			d.Rule = RuleInvalidLabel
			return d
		}
		d.Privilege = all
		return d.allow(RuleAllCommunities)
	case open != "":
		d.Label = open
		return d.allow(RuleOpenLabel)
	case matched != "":
		d.Label, d.Privilege = matched, matchedBy
		return d.allow(RuleCommunityPrivilege)
	case d.Label == "":
		return d.allow(RuleUnlabelled)
	case all != "":
		d.Privilege = all
		return d.allow(RuleAllCommunities)
	}
	d.Rule = RuleNoCommunityPrivilege
	return d
}

// checkChanges denies a write that adds or removes a permission label the
// token could not have set: a label of a community needs write in that
// community; *.read, *.write and invalid labels need a wildcard write. A
// write that leaves a restricted resource open to everyone (removing its
// last .read or .write label) needs a wildcard write as well, or an author
// of A could publish an A.read resource by stripping the label.
func (c Config) checkChanges(p *Privileges, d Decision, old, new []Coding) Decision {
	if p.writeAll != "" {
		// Records near-miss systems for the caller's report.
		for _, l := range new {
			c.classify(l, &d)
		}
		return d
	}
	for _, l := range new {
		if !containsCoding(old, l) && !c.writable(p, l, &d) {
			d.Allowed, d.Rule, d.Changed = false, RuleLabelChange, l.Code
			return d
		}
	}
	for _, l := range old {
		if !containsCoding(new, l) && !c.writable(p, l, &d) {
			d.Allowed, d.Rule, d.Changed, d.Removed = false, RuleLabelChange, l.Code, true
			return d
		}
	}
	for _, kind := range [...]labelKind{readLabel, writeLabel} {
		if was, first := c.restriction(old, kind); was {
			if still, _ := c.restriction(new, kind); still {
				continue
			}
			d.Allowed, d.Rule, d.Changed, d.Removed = false, RuleOpensResource, first, true
			return d
		}
	}
	return d
}

// restriction reports whether labels keep a resource from being open to
// everyone with API-level access for kind, and the first label that does. It
// follows stored: an invalid label restricts whatever else is there, then
// a *.read / *.write label of that kind opens, then any community label of
// that kind restricts.
func (c Config) restriction(labels []Coding, kind labelKind) (restricted bool, first string) {
	var d Decision
	invalid, community, star := -1, -1, false
	for i, l := range labels {
		k, name := c.classify(l, &d)
		switch {
		case k == invalidLabel && invalid < 0:
			invalid = i
		case k != kind:
		case name == "*":
			star = true
		case community < 0:
			community = i
		}
	}
	switch {
	case invalid >= 0:
		return true, labels[invalid].Code
	case star || community < 0:
		return false, ""
	}
	return true, labels[community].Code
}

func (c Config) writable(p *Privileges, l Coding, d *Decision) bool {
	kind, community := c.classify(l, d)
	if kind == notPermission {
		return true
	}
	if kind == invalidLabel || community == "*" {
		return false
	}
	_, ok := p.write[community]
	return ok
}

func containsCoding(cs []Coding, l Coding) bool {
	for _, c := range cs {
		if c == l {
			return true
		}
	}
	return false
}

type labelKind uint8

const (
	notPermission labelKind = iota
	readLabel
	writeLabel
	invalidLabel
)

// classify says what a meta.security coding is to the policy, recording in
// d the first near-miss system seen. community is the label, or "*".
func (c Config) classify(l Coding, d *Decision) (kind labelKind, community string) {
	system := c.System
	if system == "" {
		system = DefaultSystem
	}
	switch {
	case l.System == system || l.System == "" && c.SystemlessLabels:
	case l.System == "":
		// Without --systemless-labels a label with no system is not a
		// permission label, but one shaped like it ("NDD.read") is almost
		// certainly meant as one: ignored, it would open the resource.
		if labelShaped(l.Code) {
			return invalidLabel, ""
		}
		return notPermission, ""
	case nearMiss(l.System, system):
		if d.NearMiss == "" {
			d.NearMiss = l.System
		}
		return invalidLabel, ""
	case visible(l.System) == "":
		// Spaces or invisible characters only: meant as no system, or a
		// server may read it so, and it is not the permissions system.
		if c.SystemlessLabels || labelShaped(l.Code) {
			return invalidLabel, ""
		}
		return notPermission, ""
	default:
		return notPermission, ""
	}
	community, write, ok := parseLabel(l.Code)
	switch {
	case !ok || community != "*" && !validCommunity(community):
		return invalidLabel, ""
	case write:
		return writeLabel, community
	}
	return readLabel, community
}

// labelShaped reports whether code looks like a permission label in any
// letter case, spaces and invisible characters aside: it ends in ".read"
// or ".write".
func labelShaped(code string) bool {
	code = visible(code)
	for _, suffix := range [...]string{".read", ".write"} {
		if len(code) > len(suffix) && strings.EqualFold(code[len(code)-len(suffix):], suffix) {
			return true
		}
	}
	return false
}

// nearMiss reports whether s is the permissions system but for the case of
// its letters, http versus https, spaces or invisible characters anywhere,
// trailing slashes, or a version, fragment or query after it: almost
// certainly meant as it, so its labels must not be ignored.
func nearMiss(s, system string) bool {
	return s != system && strings.EqualFold(canonicalSystem(s), canonicalSystem(system))
}

func canonicalSystem(s string) string {
	s = visible(s)
	if i := strings.IndexAny(s, "|#?"); i >= 0 {
		s = s[:i]
	}
	for _, scheme := range [...]string{"https://", "http://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			s = s[len(scheme):]
			break
		}
	}
	return strings.TrimRight(s, "/")
}

// visible is s without its spaces and invisible (format) characters.
func visible(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
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
// not validated here; classify does. Suffixes are case-sensitive, as in
// Ontoserver.
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
	b.Grow(256) // most reasons fit: one allocation, not one per doubling
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
		b.WriteString(" and it may set every permission label the new content carries")
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
	case RuleInvalidLabel:
		b.WriteString(", but the resource carries " + strconv.Quote(d.Label) +
			", which is not a valid permission label, so only a privilege in every community opens it")
	case RuleLabelChange:
		verb := "add"
		if d.Removed {
			verb = "remove"
		}
		b.WriteString(", but the write would " + verb + " label " + strconv.Quote(d.Changed) +
			" and the token has no write privilege in its community (labels added or removed need it)")
	case RuleOpensResource:
		b.WriteString(", but removing " + strconv.Quote(d.Changed) +
			" would open the resource to everyone with API access, which needs a write privilege in every community")
	}
	if d.NearMiss != "" {
		b.WriteString("; label system " + strconv.Quote(d.NearMiss) + " is almost the permissions system and counts as invalid")
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
