package decision

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The reference model below restates the policy as naively as possible
// (regular expressions, string building, linear scans) so that the fuzz
// targets compare two independent implementations, not one with itself.
var (
	refSMART     = regexp.MustCompile(`^(?:user|patient|system)/([A-Z][A-Za-z]*|\*)\.(read|write|\*|c?r?u?d?s?)$`)
	refGrouping  = regexp.MustCompile(`^grouping/([A-Za-z0-9_]{1,64})\.(read|write)$`)
	refAuthority = regexp.MustCompile(`^PERM_([A-Za-z0-9_]{1,64})_(READ|WRITE)$`)
)

func refIsWrite(in Interaction) bool { return in == Create || in == Update || in == Delete }

func refAPI(scope string, auths []string, typ string, in Interaction) bool {
	if slices.Contains(auths, "FHIR_READ") && (in == Read || in == Search) ||
		slices.Contains(auths, "FHIR_WRITE") && refIsWrite(in) {
		return true
	}
	for _, s := range strings.Fields(scope) {
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
func refCommunities(scope string, auths []string, kind string) (cs []string, all bool) {
	tokens := strings.Fields(scope)
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

func refAllowed(cfg Config, scope string, auths []string, req Request) bool {
	in := req.Interaction
	if in < Create || in > Search || !refAPI(scope, auths, req.ResourceType, in) {
		return false
	}
	if in == Create {
		return true
	}
	kind := "read"
	if refIsWrite(in) {
		kind = "write"
	}
	held, all := refCommunities(scope, auths, kind)
	system := cfg.System
	if system == "" {
		system = DefaultSystem
	}
	labelled := false
	for _, l := range req.Security {
		if !(l.System == system || l.System == "" && cfg.SystemlessLabels) || !strings.HasSuffix(l.Code, "."+kind) {
			continue
		}
		labelled = true
		c := l.Code[:len(l.Code)-len(kind)-1]
		if c == "*" || all || slices.Contains(held, c) {
			return true
		}
	}
	return !labelled
}

var allowingRules = map[Rule]bool{
	RuleCreate: true, RuleUnlabelled: true, RuleOpenLabel: true, RuleCommunityPrivilege: true, RuleAllCommunities: true,
}

func FuzzDecide(f *testing.F) {
	f.Add("system/*.read grouping/XXX.read", "", "CodeSystem", uint8(Read), DefaultSystem, "NDD.read", DefaultSystem, "XXX.read", false)
	f.Add("system/*.read grouping/NDD.write", "", "CodeSystem", uint8(Update), DefaultSystem, "NDD.write", "", "", false)
	f.Add("", "FHIR_READ,FHIR_WRITE,PERM_WRITE", "ValueSet", uint8(Delete), "", "NDD.write", DefaultSystem, "*.write", true)
	f.Add("user/ValueSet.cud system/*.rs?x=1", "PERM_READ", "ValueSet", uint8(Search), DefaultSystem, "a.b.read", "urn:x", "NDD.read", false)
	f.Add("system/*.read", "", "CodeSystem", uint8(Delete), DefaultSystem, "NDD.write", DefaultSystem, "NDD.read", false)
	f.Add("patient/*.* grouping/*.read", "PERM_A_B_READ", "Patient", uint8(0), "", ".read", "", "A_B.read", true)
	f.Fuzz(func(t *testing.T, scope, auths, typ string, in uint8, sys1, code1, sys2, code2 string, systemless bool) {
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
		for _, s := range strings.Fields(scope) {
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
