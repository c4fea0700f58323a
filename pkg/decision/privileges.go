package decision

import (
	"slices"
	"strings"
)

// Privileges is what a token allows, pre-parsed so that Decide only does map
// lookups. Every grant remembers the scope or authority it came from, which
// Decide hands back as its explanation. The zero value and nil grant
// nothing. A Privileges is read-only after Parse and safe for concurrent use.
type Privileges struct {
	// anyType holds grants for resource type "*"; byType holds the others.
	anyType grant
	byType  map[string]*grant

	// read and write map a community label to the privilege granting it;
	// readAll and writeAll name a wildcard privilege, or are empty.
	read, write       map[string]string
	readAll, writeAll string
}

// grant holds, per interaction, the first scope or authority granting it at
// API level; an empty string means not granted.
type grant [numInteractions]string

func (g *grant) add(set [numInteractions]bool, source string) {
	for i, ok := range set {
		if ok && g[i] == "" {
			g[i] = source
		}
	}
}

var (
	v1Read  = interactions(Read, Search)
	v1Write = interactions(Create, Update, Delete)
	v1All   = interactions(Read, Search, Create, Update, Delete)
)

func interactions(is ...Interaction) (set [numInteractions]bool) {
	for _, i := range is {
		set[i-1] = true
	}
	return set
}

// ScopeTokens splits an OAuth scope string as RFC 6749 (3.3) does, on
// spaces only, and drops a token holding anything a scope token may not
// (a tab, another space character, a control or non-ASCII character): a
// privilege is never read out of it. The realm's privileges mapper also
// splits on spaces only, so "x\tgrouping/NDD.read" would pass it whole.
func ScopeTokens(scope string) []string {
	var out []string
	for _, s := range strings.Split(scope, " ") {
		if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == '"' || r == '\\' || r > 0x7e }) {
			out = append(out, s)
		}
	}
	return out
}

// Parse reads a space-separated OAuth scope string and a list of
// authorities (realm roles). Tokens it does not recognise are ignored, so
// an unrecognised or malformed scope can only ever grant less.
func Parse(scope string, authorities []string) *Privileges {
	p := &Privileges{}
	for _, s := range ScopeTokens(scope) {
		p.addScope(s)
	}
	for _, a := range authorities {
		p.addAuthority(a)
	}
	return p
}

// ParseClaims reads the claims of a verified JWT: "scope" (a
// space-separated string) and authorities from both "authorities" and
// "realm_access.roles", as Keycloak tokens of this project carry both.
func ParseClaims(claims map[string]any) *Privileges {
	scope, _ := claims["scope"].(string)
	authorities := appendStrings(nil, claims["authorities"])
	if ra, ok := claims["realm_access"].(map[string]any); ok {
		authorities = appendStrings(authorities, ra["roles"])
	}
	return Parse(scope, authorities)
}

// appendStrings accepts []any as well because that is what encoding/json
// produces for a JSON array.
func appendStrings(dst []string, v any) []string {
	switch v := v.(type) {
	case []string:
		return append(dst, v...)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				dst = append(dst, s)
			}
		}
	}
	return dst
}

func (p *Privileges) addScope(s string) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return
	}
	switch ctx {
	case "grouping":
		if c, ok := strings.CutSuffix(rest, ".read"); ok {
			addCommunity(&p.read, &p.readAll, c, c == "*", s)
		} else if c, ok := strings.CutSuffix(rest, ".write"); ok {
			addCommunity(&p.write, &p.writeAll, c, c == "*", s)
		}
	// A patient/ scope grants only within one patient's compartment,
	// which these rules cannot evaluate (like a v2 ?query restriction):
	// granting the type without it would widen the token, so it grants
	// nothing.
	case "user", "system":
		typ, perm, ok := strings.Cut(rest, ".")
		if !ok || !validType(typ) {
			return
		}
		if set, ok := parsePermission(perm); ok {
			p.grantType(typ, set, s)
		}
	}
}

// parsePermission reads the part of a SMART scope after the first ".".
// The v1 words are matched whole before anything else so that "read" is
// never taken for the v2 letters.
func parsePermission(perm string) (set [numInteractions]bool, ok bool) {
	switch perm {
	case "read":
		return v1Read, true
	case "write":
		return v1Write, true
	case "*":
		return v1All, true
	}
	// A v2 query ("?code=x") narrows a grant to resources matching it, which
	// this package cannot evaluate against a resource; granting the
	// unrestricted interactions would widen the token, so it grants nothing.
	if perm == "" || strings.ContainsRune(perm, '?') {
		return set, false
	}
	// Interactions are numbered in "cruds" order, so a letter's position
	// is its index. Searching only after the previous letter rejects
	// repeats and letters out of order.
	const letters = "cruds"
	pos := 0
	for i := 0; i < len(perm); i++ {
		k := strings.IndexByte(letters[pos:], perm[i])
		if k < 0 {
			return set, false
		}
		pos += k
		set[pos] = true
		pos++
	}
	return set, true
}

func (p *Privileges) grantType(typ string, set [numInteractions]bool, source string) {
	if typ == "*" {
		p.anyType.add(set, source)
		return
	}
	g := p.byType[typ]
	if g == nil {
		if p.byType == nil {
			p.byType = map[string]*grant{}
		}
		g = &grant{}
		p.byType[typ] = g
	}
	g.add(set, source)
}

func (p *Privileges) addAuthority(a string) {
	switch a {
	case "FHIR_READ":
		p.anyType.add(v1Read, a)
		return
	case "FHIR_WRITE":
		p.anyType.add(v1Write, a)
		return
	case "PERM_READ":
		addCommunity(&p.read, &p.readAll, "", true, a)
		return
	case "PERM_WRITE":
		addCommunity(&p.write, &p.writeAll, "", true, a)
		return
	}
	// The label may itself contain "_", so only the fixed prefix and
	// suffix delimit it: PERM_A_B_READ is community "A_B".
	c, ok := strings.CutPrefix(a, "PERM_")
	if !ok {
		return
	}
	if c, ok := strings.CutSuffix(c, "_READ"); ok {
		addCommunity(&p.read, &p.readAll, c, false, a)
	} else if c, ok := strings.CutSuffix(c, "_WRITE"); ok {
		addCommunity(&p.write, &p.writeAll, c, false, a)
	}
}

// addCommunity records source as granting community c, or every community
// when wildcard is set. The first source wins, so explanations are stable.
func addCommunity(m *map[string]string, all *string, c string, wildcard bool, source string) {
	switch {
	case wildcard:
		if *all == "" {
			*all = source
		}
	case validCommunity(c):
		if *m == nil {
			*m = map[string]string{}
		}
		if _, ok := (*m)[c]; !ok {
			(*m)[c] = source
		}
	}
}

// validCommunity mirrors label.ValidateLabel without importing it, to keep
// this package free of dependencies: ^[A-Za-z0-9_]{1,64}$.
func validCommunity(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validType accepts "*" and names shaped like FHIR resource types
// ("CodeSystem"); it does not check the name against the FHIR spec.
func validType(s string) bool {
	if s == "*" {
		return true
	}
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Reach lists what community privileges a token holds, for narrowing a
// search with _security. It says nothing about API-level access, which a
// caller must still have (ask Decide with no labels).
type Reach struct {
	// Read and Write are the community labels named by the token, sorted.
	Read, Write []string
	// AllRead and AllWrite report grouping/*.read or PERM_READ, and
	// grouping/*.write or PERM_WRITE: every community.
	AllRead, AllWrite bool
}

// Communities returns the community privileges p holds.
func (p *Privileges) Communities() Reach {
	if p == nil {
		return Reach{}
	}
	keys := func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	return Reach{
		Read:     keys(p.read),
		Write:    keys(p.write),
		AllRead:  p.readAll != "",
		AllWrite: p.writeAll != "",
	}
}
