package decision

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The reference model below restates the policy as naively as possible
// (regular expressions, string building, linear scans) so that the fuzz
// targets compare two independent implementations, not one with itself.
var (
	refSMART     = regexp.MustCompile(`^(?:user|system)/([A-Z][A-Za-z]*|\*)\.(read|write|\*|c?r?u?d?s?)$`)
	refGrouping  = regexp.MustCompile(`^grouping/([A-Za-z0-9_]{1,64})\.(read|write)$`)
	refAuthority = regexp.MustCompile(`^PERM_([A-Za-z0-9_]{1,64})_(READ|WRITE)$`)
)

func refIsWrite(in Interaction) bool { return in == Create || in == Update || in == Delete }

func refAPI(scope string, auths []string, typ string, in Interaction) bool {
	if slices.Contains(auths, "FHIR_READ") && (in == Read || in == Search) ||
		slices.Contains(auths, "FHIR_WRITE") && refIsWrite(in) {
		return true
	}
	for _, s := range refTokens(scope) {
		m := refSMART.FindStringSubmatch(s)
		if m == nil || m[1] != "*" && m[1] != typ {
			continue
		}
		switch m[2] {
		case "read":
			if in == Read || in == Search {
				return true
			}
		case "write":
			if refIsWrite(in) {
				return true
			}
		case "*":
			return true
		case "":
		default:
			if strings.Contains(m[2], interactionNames[in-1][:1]) {
				return true
			}
		}
	}
	return false
}

// refCommunities lists the communities named by privileges of kind "read"
// or "write", and whether a wildcard privilege of that kind is held.
// refTokens: RFC 6749's scope syntax, tokens of NQCHAR split by single
// spaces; a token with anything else counts for nothing.
func refTokens(scope string) []string {
	var out []string
	for _, s := range strings.Split(scope, " ") {
		if refNQChars.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

var refNQChars = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`)

func refCommunities(scope string, auths []string, kind string) (cs []string, all bool) {
	tokens := refTokens(scope)
	all = slices.Contains(tokens, "grouping/*."+kind) || slices.Contains(auths, "PERM_"+strings.ToUpper(kind))
	for _, s := range tokens {
		if m := refGrouping.FindStringSubmatch(s); m != nil && m[2] == kind {
			cs = append(cs, m[1])
		}
	}
	for _, a := range auths {
		if m := refAuthority.FindStringSubmatch(a); m != nil && m[2] == strings.ToUpper(kind) {
			cs = append(cs, m[1])
		}
	}
	slices.Sort(cs)
	return slices.Compact(cs), all
}

var refLabel = regexp.MustCompile(`^([A-Za-z0-9_]{1,64}|\*)\.(read|write)$`)

// refClass says what a coding is: "" (not a permission label), "invalid",
// "read" or "write", and the community of a valid one.
func refClass(cfg Config, l Coding) (kind, community string) {
	system := cfg.System
	if system == "" {
		system = DefaultSystem
	}
	strip := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if !unicode.IsSpace(r) && !unicode.In(r, unicode.Cf) {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	canon := func(s string) string {
		s = regexp.MustCompile(`[|#?].*$`).ReplaceAllString(strip(s), "")
		for _, scheme := range []string{"https://", "http://"} {
			if len(s) >= len(scheme) && strings.ToLower(s[:len(scheme)]) == scheme {
				s = s[len(scheme):]
				break
			}
		}
		return strings.TrimRight(s, "/")
	}
	shaped := regexp.MustCompile(`(?is)^.+\.(read|write)$`).MatchString(strip(l.Code))
	blank := strip(l.System) == ""
	switch {
	case l.System == system || l.System == "" && cfg.SystemlessLabels:
	case l.System == "" && shaped:
		return "invalid", ""
	case l.System != "" && strings.EqualFold(canon(l.System), canon(system)):
		return "invalid", ""
	case l.System != "" && blank && (cfg.SystemlessLabels || shaped):
		return "invalid", ""
	default:
		return "", ""
	}
	m := refLabel.FindStringSubmatch(l.Code)
	if m == nil {
		return "invalid", ""
	}
	return m[2], m[1]
}

// refStored: any invalid label leaves it to wildcard holders; then *.kind
// opens; then one matched label of the kind is enough.
func refStored(cfg Config, labels []Coding, kind string, held []string, all bool) bool {
	labelled, matched, open := false, false, false
	for _, l := range labels {
		k, c := refClass(cfg, l)
		switch {
		case k == "invalid":
			return all
		case k != kind:
		case c == "*":
			open = true
		default:
			labelled = true
			matched = matched || slices.Contains(held, c)
		}
	}
	return open || matched || !labelled || all
}

// refRestricted: an invalid label restricts; otherwise a label of the kind
// does, unless *.kind opens it.
func refRestricted(cfg Config, labels []Coding, kind string) bool {
	invalid, star, any := false, false, false
	for _, l := range labels {
		k, c := refClass(cfg, l)
		invalid = invalid || k == "invalid"
		star = star || k == kind && c == "*"
		any = any || k == kind
	}
	return invalid || any && !star
}

// refChanges: every permission label added or removed needs write in its
// community (a wildcard write for *.x and invalid ones), and opening a
// restricted resource to everyone needs a wildcard write.
func refChanges(cfg Config, old, new []Coding, writes []string, allWrite bool) bool {
	if allWrite {
		return true
	}
	changed := func(l Coding, other []Coding) bool { return !slices.Contains(other, l) }
	for _, pair := range [][2][]Coding{{new, old}, {old, new}} {
		for _, l := range pair[0] {
			if !changed(l, pair[1]) {
				continue
			}
			k, c := refClass(cfg, l)
			if k == "" {
				continue
			}
			if k == "invalid" || c == "*" || !slices.Contains(writes, c) {
				return false
			}
		}
	}
	for _, kind := range []string{"read", "write"} {
		if refRestricted(cfg, old, kind) && !refRestricted(cfg, new, kind) {
			return false
		}
	}
	return true
}

func refAllowed(cfg Config, scope string, auths []string, req Request) bool {
	in := req.Interaction
	if in < Create || in > Search || !refAPI(scope, auths, req.ResourceType, in) {
		return false
	}
	writes, allWrite := refCommunities(scope, auths, "write")
	switch in {
	case Create:
		return refChanges(cfg, nil, req.NewSecurity, writes, allWrite)
	case Update:
		return refStored(cfg, req.Security, "write", writes, allWrite) &&
			refChanges(cfg, req.Security, req.NewSecurity, writes, allWrite)
	case Delete:
		return refStored(cfg, req.Security, "write", writes, allWrite)
	}
	reads, allRead := refCommunities(scope, auths, "read")
	return refStored(cfg, req.Security, "read", reads, allRead)
}

var allowingRules = map[Rule]bool{
	RuleCreate: true, RuleUnlabelled: true, RuleOpenLabel: true, RuleCommunityPrivilege: true, RuleAllCommunities: true,
}

func FuzzDecide(f *testing.F) {
	f.Add("system/*.read grouping/XXX.read", "", "CodeSystem", uint8(Read), DefaultSystem, "NDD.read", DefaultSystem, "XXX.read", "", false)
	f.Add("system/*.read grouping/NDD.write", "", "CodeSystem", uint8(Update), DefaultSystem, "NDD.write", "", "", "NDD.write", false)
	f.Add("", "FHIR_READ,FHIR_WRITE,PERM_WRITE", "ValueSet", uint8(Delete), "", "NDD.write", DefaultSystem, "*.write", "", true)
	f.Add("user/ValueSet.cud system/*.rs?x=1", "PERM_READ", "ValueSet", uint8(Search), DefaultSystem, "a.b.read", "urn:x", "NDD.read", "", false)
	f.Add("system/*.read", "", "CodeSystem", uint8(Delete), DefaultSystem, "NDD.write", DefaultSystem, "NDD.read", "", false)
	f.Add("patient/*.* grouping/*.read", "PERM_A_B_READ", "Patient", uint8(0), "", ".read", "", "A_B.read", "", true)
	f.Add("system/*.* grouping/A.write", "", "ValueSet", uint8(Create), DefaultSystem, "A.read", DefaultSystem, "B.write", "A.write", false)
	f.Add("system/*.* grouping/A.write", "", "ValueSet", uint8(Update), DefaultSystem, "A.read", DefaultSystem, "A.write", "A.write", false)
	f.Add("system/*.*", "PERM_READ", "ValueSet", uint8(Read), DefaultSystem+"/", "NDD.read", DefaultSystem, "NDD.READ", "", false)
	f.Fuzz(func(t *testing.T, scope, auths, typ string, in uint8, sys1, code1, sys2, code2, newCode string, systemless bool) {
		authorities := strings.Split(auths, ",")
		cfg := Config{SystemlessLabels: systemless}
		if sys1 != DefaultSystem && sys1 != "" {
			// Let the fuzzer exercise a configured system too.
			cfg.System = sys1
		}
		req := Request{
			ResourceType: typ,
			Interaction:  Interaction(in % (numInteractions + 2)),
			Security:     []Coding{{sys1, code1}, {sys2, code2}},
		}
		if newCode != "" {
			// The new content keeps the first label and swaps the second.
			req.NewSecurity = []Coding{{sys1, code1}, {sys2, newCode}}
		}
		p := Parse(scope, authorities)
		d := cfg.Decide(p, req)
		if again := cfg.Decide(Parse(scope, authorities), req); again != d {
			t.Fatalf("not deterministic: %+v then %+v", d, again)
		}
		if d.Allowed != allowingRules[d.Rule] {
			t.Fatalf("Allowed=%v with rule %v", d.Allowed, d.Rule)
		}
		if d.Allowed && !refAPI(scope, authorities, typ, req.Interaction) {
			t.Fatalf("allowed %v without API-level access: %s", req.Interaction, d.Reason())
		}
		if want := refAllowed(cfg, scope, authorities, req); d.Allowed != want {
			t.Fatalf("Allowed=%v, reference model says %v: %s", d.Allowed, want, d.Reason())
		}
		if d.Reason() == "" {
			t.Fatal("empty Reason")
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add("system/*.read user/CodeSystem.cud grouping/NDD.read grouping/*.write", "FHIR_READ,PERM_X_WRITE")
	f.Add("patient/Patient.rs?name=x system/*.rd system/*.* user/ValueSet.write", "PERM_READ,PERM__READ,PERM_A_READ_READ")
	f.Add("system/*.READ system/x.read grouping/a.b.read grouping/.read", "fhir_read,PERM_WRITE")
	f.Fuzz(func(t *testing.T, scope, auths string) {
		authorities := strings.Split(auths, ",")
		p := Parse(scope, authorities)

		types := []string{"CodeSystem", "", "*"}
		for _, s := range refTokens(scope) {
			if _, rest, ok := strings.Cut(s, "/"); ok {
				typ, _, _ := strings.Cut(rest, ".")
				types = append(types, typ)
			}
		}
		for _, typ := range types {
			for in := Create; in <= Search; in++ {
				d := Decide(p, Request{ResourceType: typ, Interaction: in})
				if want := refAPI(scope, authorities, typ, in); d.Allowed != want {
					t.Fatalf("%v on %q: Allowed=%v, reference model says %v: %s", in, typ, d.Allowed, want, d.Reason())
				}
			}
		}

		r := p.Communities()
		read, allRead := refCommunities(scope, authorities, "read")
		write, allWrite := refCommunities(scope, authorities, "write")
		if !slices.Equal(r.Read, read) || !slices.Equal(r.Write, write) || r.AllRead != allRead || r.AllWrite != allWrite {
			t.Fatalf("Communities() = %+v, reference model says read %q (all %v) write %q (all %v)", r, read, allRead, write, allWrite)
		}
	})
}

func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{"NDD.read", "NDD.write", "*.read", ".write", "a.b.read", "NDD.READ", "read", "", "x.read.write"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		c, write, ok := parseLabel(code)
		suffix := ".read"
		if write {
			suffix = ".write"
		}
		if want := strings.HasSuffix(code, ".read") || strings.HasSuffix(code, ".write"); ok != want {
			t.Fatalf("parseLabel(%q) ok=%v, want %v", code, ok, want)
		}
		if ok && c+suffix != code {
			t.Fatalf("parseLabel(%q) = %q, write=%v: does not rebuild the code", code, c, write)
		}
	})
}
