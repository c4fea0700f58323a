package decision

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func perm(codes ...string) []Coding {
	out := make([]Coding, len(codes))
	for i, c := range codes {
		out[i] = Coding{System: DefaultSystem, Code: c}
	}
	return out
}

type decideCase struct {
	name        string
	cfg         Config
	scope       string
	authorities []string
	typ         string
	in          Interaction
	security    []Coding
	// newSecurity is what a create or update would store; update cases
	// keep the stored labels unless they set it (to []Coding{} to strip).
	newSecurity []Coding
	allowed     bool
	rule        Rule
	// When set, the Decision must name exactly these.
	api, label, privilege, changed, nearMiss string
}

func (c decideCase) run(t *testing.T) {
	t.Helper()
	typ := c.typ
	if typ == "" {
		typ = "CodeSystem"
	}
	ns := c.newSecurity
	if ns == nil && c.in == Update {
		ns = c.security
	}
	d := c.cfg.Decide(Parse(c.scope, c.authorities), Request{ResourceType: typ, Interaction: c.in, Security: c.security, NewSecurity: ns})
	if d.Allowed != c.allowed || d.Rule != c.rule {
		t.Errorf("got allowed=%v rule=%v, want allowed=%v rule=%v\n%s", d.Allowed, d.Rule, c.allowed, c.rule, d.Reason())
	}
	for _, f := range []struct{ field, got, want string }{
		{"API", d.API, c.api}, {"Label", d.Label, c.label}, {"Privilege", d.Privilege, c.privilege},
		{"Changed", d.Changed, c.changed}, {"NearMiss", d.NearMiss, c.nearMiss},
	} {
		if f.want != "" && f.got != f.want {
			t.Errorf("%s = %q, want %q\n%s", f.field, f.got, f.want, d.Reason())
		}
	}
}

func TestAPILevel(t *testing.T) {
	cases := []decideCase{
		{name: "no token", in: Read, rule: RuleNoAPIAccess},
		{name: "ontoserver read scope reads", scope: "system/*.read", in: Read, allowed: true, rule: RuleUnlabelled, api: "system/*.read"},
		{name: "ontoserver read scope searches", scope: "system/*.read", in: Search, allowed: true, rule: RuleUnlabelled},
		{name: "read scope cannot create", scope: "system/*.read", in: Create, rule: RuleNoAPIAccess},
		{name: "read scope cannot update", scope: "system/*.read", in: Update, rule: RuleNoAPIAccess},
		{name: "read scope cannot delete", scope: "system/*.read", in: Delete, rule: RuleNoAPIAccess},
		{name: "write scope creates", scope: "system/*.write", in: Create, allowed: true, rule: RuleCreate},
		{name: "write scope updates", scope: "system/*.write", in: Update, allowed: true, rule: RuleUnlabelled},
		{name: "write scope deletes", scope: "system/*.write", in: Delete, allowed: true, rule: RuleUnlabelled},
		{name: "write scope does not read", scope: "system/*.write", in: Read, rule: RuleNoAPIAccess},
		{name: "write scope does not search", scope: "system/*.write", in: Search, rule: RuleNoAPIAccess},
		{name: "FHIR_READ reads", authorities: []string{"FHIR_READ"}, in: Read, allowed: true, rule: RuleUnlabelled, api: "FHIR_READ"},
		{name: "FHIR_READ cannot update", authorities: []string{"FHIR_READ"}, in: Update, rule: RuleNoAPIAccess},
		{name: "FHIR_WRITE creates", authorities: []string{"FHIR_WRITE"}, in: Create, allowed: true, rule: RuleCreate, api: "FHIR_WRITE"},
		{name: "FHIR_WRITE does not read", authorities: []string{"FHIR_WRITE"}, in: Read, rule: RuleNoAPIAccess},
		{name: "authorities are case-sensitive", authorities: []string{"fhir_read"}, in: Read, rule: RuleNoAPIAccess},

		{name: "v1 per type", scope: "user/CodeSystem.read", in: Read, allowed: true, rule: RuleUnlabelled},
		{name: "v1 per type other type", scope: "user/CodeSystem.read", typ: "ValueSet", in: Read, rule: RuleNoAPIAccess},
		{name: "patient context grants nothing", scope: "patient/ValueSet.write patient/*.read", typ: "ValueSet", in: Update, rule: RuleNoAPIAccess},
		{name: "patient context does not read", scope: "patient/*.read", typ: "ValueSet", in: Read, rule: RuleNoAPIAccess},
		{name: "v1 star grants all", scope: "system/*.*", in: Delete, allowed: true, rule: RuleUnlabelled},
		{name: "v1 star per type", scope: "user/ConceptMap.*", typ: "ConceptMap", in: Search, allowed: true, rule: RuleUnlabelled},
		{name: "type-specific grant explains", scope: "system/*.read user/CodeSystem.read", in: Read, allowed: true, rule: RuleUnlabelled, api: "user/CodeSystem.read"},
		{name: "wildcard grant covers other types", scope: "system/*.read user/CodeSystem.write", in: Read, allowed: true, rule: RuleUnlabelled, api: "system/*.read"},

		{name: "v2 rs reads", scope: "system/CodeSystem.rs", in: Read, allowed: true, rule: RuleUnlabelled},
		{name: "v2 rs searches", scope: "system/CodeSystem.rs", in: Search, allowed: true, rule: RuleUnlabelled},
		{name: "v2 rs cannot update", scope: "system/CodeSystem.rs", in: Update, rule: RuleNoAPIAccess},
		{name: "v2 s only cannot read", scope: "user/*.s", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 cud creates", scope: "system/*.cud", in: Create, allowed: true, rule: RuleCreate},
		{name: "v2 cud deletes", scope: "system/*.cud", in: Delete, allowed: true, rule: RuleUnlabelled},
		{name: "v2 cud does not read", scope: "system/*.cud", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 cruds searches", scope: "user/*.cruds", in: Search, allowed: true, rule: RuleUnlabelled},
		{name: "v2 d deletes only", scope: "system/*.d", in: Delete, allowed: true, rule: RuleUnlabelled},
		{name: "v2 rd deletes", scope: "system/*.rd", in: Delete, allowed: true, rule: RuleUnlabelled},
		{name: "v1 read is not v2 r+d", scope: "system/*.read", in: Delete, rule: RuleNoAPIAccess},
		{name: "v1 read is not v2 r+d per type", scope: "user/CodeSystem.read", in: Delete, rule: RuleNoAPIAccess},
		{name: "v2 query restriction grants nothing", scope: "system/CodeSystem.rs?url=http://x", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 query restriction grants nothing for write", scope: "system/*.cud?_tag=x", in: Create, rule: RuleNoAPIAccess},
		{name: "v2 empty query grants nothing", scope: "system/*.r?", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 out of order", scope: "system/*.sr", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 repeated letter", scope: "system/*.rr", in: Read, rule: RuleNoAPIAccess},
		{name: "v2 upper case", scope: "system/*.RS", in: Read, rule: RuleNoAPIAccess},
		{name: "v1 upper case", scope: "system/*.READ", in: Read, rule: RuleNoAPIAccess},
		{name: "lower-case type", scope: "system/codeSystem.read", typ: "codeSystem", in: Read, rule: RuleNoAPIAccess},
		{name: "unknown context", scope: "admin/*.read", in: Read, rule: RuleNoAPIAccess},
		{name: "no permission", scope: "system/* system/*. system/.read", in: Read, rule: RuleNoAPIAccess},
		{name: "unrelated scopes", scope: "openid profile email", in: Read, rule: RuleNoAPIAccess},
		// RFC 6749 separates scopes by spaces only; a token holding a tab
		// or a newline is no scope (the privileges mapper splits on spaces
		// only, so reading privileges out of such tokens would bypass it).
		{name: "tabs and newlines do not separate scopes", scope: "openid\tsystem/*.read\n", in: Read, rule: RuleNoAPIAccess},
		{name: "spaces do, one or more", scope: "openid  system/*.read", in: Read, allowed: true, rule: RuleUnlabelled},
		{name: "invalid interaction", scope: "system/*.*", in: 0, rule: RuleInvalidInteraction},
		{name: "out of range interaction", scope: "system/*.*", in: Search + 1, rule: RuleInvalidInteraction},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestResourceLevel(t *testing.T) {
	const read, write = "system/*.read", "system/*.read system/*.write"
	cases := []decideCase{
		// Seed 003: "Resources can be labelled with more than one label, and
		// in this case a user must have a community privilege matching at
		// least one of the security labels to be granted the permission
		// associated with that label. For example, a resource labelled with
		// NDD.read and XXX.read will be readable by a user who is an author
		// or consumer in either the associated NDD or XXX communities (they
		// don't need both)."
		{name: "seed 003 consumer of XXX only", scope: read + " grouping/XXX.read", in: Read, security: perm("NDD.read", "XXX.read"),
			allowed: true, rule: RuleCommunityPrivilege, api: "system/*.read", label: "XXX.read", privilege: "grouping/XXX.read"},
		{name: "seed 003 member of NDD only", scope: read, authorities: []string{"PERM_NDD_READ"}, in: Read, security: perm("NDD.read", "XXX.read"),
			allowed: true, rule: RuleCommunityPrivilege, label: "NDD.read", privilege: "PERM_NDD_READ"},
		{name: "seed 003 both communities", scope: read + " grouping/XXX.read grouping/NDD.read", in: Search, security: perm("NDD.read", "XXX.read"),
			allowed: true, rule: RuleCommunityPrivilege, label: "NDD.read", privilege: "grouping/NDD.read"},
		{name: "seed 003 neither community", scope: read + " grouping/YYY.read", in: Read, security: perm("NDD.read", "XXX.read"),
			rule: RuleNoCommunityPrivilege, label: "NDD.read"},
		{name: "seed 003 author reads via write label? no", scope: write + " grouping/NDD.write", in: Read, security: perm("NDD.read", "XXX.read"),
			rule: RuleNoCommunityPrivilege},

		// Seed 003: "granting community write access to user that only has
		// read access to the FHIR API will not enable them to write to the
		// community's resources."
		{name: "cumulative: community write without API write", scope: read + " grouping/NDD.write", in: Update, security: perm("NDD.write"),
			rule: RuleNoAPIAccess},
		{name: "cumulative: PERM_WRITE without API write", authorities: []string{"FHIR_READ", "PERM_WRITE"}, in: Delete, security: perm("NDD.write"),
			rule: RuleNoAPIAccess},
		{name: "cumulative: community read without API read", scope: "system/*.write grouping/NDD.read", in: Read, security: perm("NDD.read"),
			rule: RuleNoAPIAccess},

		{name: "community write updates", scope: write + " grouping/NDD.write", in: Update, security: perm("NDD.read", "NDD.write"),
			allowed: true, rule: RuleCommunityPrivilege, api: "system/*.write", label: "NDD.write", privilege: "grouping/NDD.write"},
		{name: "community write deletes", scope: write, authorities: []string{"PERM_NDD_WRITE"}, in: Delete, security: perm("NDD.write"),
			allowed: true, rule: RuleCommunityPrivilege, privilege: "PERM_NDD_WRITE"},
		{name: "write does not imply read", scope: write + " grouping/NDD.write", in: Read, security: perm("NDD.read", "NDD.write"),
			rule: RuleNoCommunityPrivilege, label: "NDD.read"},
		{name: "read does not imply write", scope: write + " grouping/NDD.read", in: Update, security: perm("NDD.read", "NDD.write"),
			rule: RuleNoCommunityPrivilege, label: "NDD.write"},
		{name: "write labels only: read needs API only", scope: read, in: Read, security: perm("NDD.write"),
			allowed: true, rule: RuleUnlabelled},
		{name: "read labels only: update needs API only", scope: write, in: Update, security: perm("NDD.read"),
			allowed: true, rule: RuleUnlabelled},
		{name: "create ignores stored labels", scope: "system/*.write", in: Create, security: perm("NDD.write", "NDD.read"),
			allowed: true, rule: RuleCreate, api: "system/*.write"},

		{name: "star read label opens to API readers", scope: read, in: Read, security: perm("NDD.read", "*.read"),
			allowed: true, rule: RuleOpenLabel, label: "*.read"},
		{name: "star write label opens to API writers", scope: write, in: Delete, security: perm("NDD.write", "*.write"),
			allowed: true, rule: RuleOpenLabel, label: "*.write"},
		{name: "star read label does not open writes", scope: write, in: Update, security: perm("*.read", "NDD.write"),
			rule: RuleNoCommunityPrivilege, label: "NDD.write"},

		{name: "PERM_READ covers every community", scope: read, authorities: []string{"PERM_READ"}, in: Read, security: perm("NDD.read", "XXX.read"),
			allowed: true, rule: RuleAllCommunities, label: "NDD.read", privilege: "PERM_READ"},
		{name: "grouping/*.read covers every community", scope: read + " grouping/*.read", in: Search, security: perm("XXX.read"),
			allowed: true, rule: RuleAllCommunities, label: "XXX.read", privilege: "grouping/*.read"},
		{name: "specific privilege explains before wildcard", scope: read + " grouping/*.read grouping/XXX.read", in: Read, security: perm("NDD.read", "XXX.read"),
			allowed: true, rule: RuleCommunityPrivilege, label: "XXX.read", privilege: "grouping/XXX.read"},
		{name: "grouping/*.read does not write", scope: write + " grouping/*.read", in: Update, security: perm("NDD.write"),
			rule: RuleNoCommunityPrivilege},
		{name: "PERM_WRITE covers every community", scope: write, authorities: []string{"PERM_WRITE"}, in: Update, security: perm("NDD.write"),
			allowed: true, rule: RuleAllCommunities, privilege: "PERM_WRITE"},
		{name: "grouping/*.write does not read", scope: write + " grouping/*.write", in: Read, security: perm("NDD.read"),
			rule: RuleNoCommunityPrivilege},

		{name: "labels of other systems ignored", scope: read, in: Read, security: []Coding{{System: "http://example.org/other", Code: "NDD.read"}},
			allowed: true, rule: RuleUnlabelled},
		// Without the setting a label with no system is not a permission
		// label, but one shaped like it restricts (fail closed); other
		// codes without a system are ignored.
		{name: "system-less label-shaped codes restrict by default", scope: read, in: Read, security: []Coding{{Code: "NDD.read"}},
			rule: RuleInvalidLabel, label: "NDD.read"},
		{name: "system-less label-shaped codes in any case restrict", scope: read + " grouping/NDD.read", in: Read, security: []Coding{{Code: " ndd.WRITE "}},
			rule: RuleInvalidLabel, label: " ndd.WRITE "},
		{name: "other system-less codes ignored by default", scope: read, in: Read, security: []Coding{{Code: "R"}, {Code: ".read"}},
			allowed: true, rule: RuleUnlabelled},
		{name: "system-less labels count when configured", cfg: Config{SystemlessLabels: true}, scope: read, in: Read,
			security: []Coding{{Code: "NDD.read"}}, rule: RuleNoCommunityPrivilege, label: "NDD.read"},
		{name: "system-less labels match when configured", cfg: Config{SystemlessLabels: true}, scope: read + " grouping/NDD.read", in: Read,
			security: []Coding{{Code: "NDD.read"}}, allowed: true, rule: RuleCommunityPrivilege},
		{name: "configured system replaces the default", cfg: Config{System: "urn:perm"}, scope: read, in: Read,
			security: []Coding{{System: DefaultSystem, Code: "NDD.read"}}, allowed: true, rule: RuleUnlabelled},
		{name: "configured system counts", cfg: Config{System: "urn:perm"}, scope: read, in: Read,
			security: []Coding{{System: "urn:perm", Code: "NDD.read"}}, rule: RuleNoCommunityPrivilege},
		{name: "other codes of the system restrict", scope: read, in: Read, security: perm("NDD", "NDD.owner", "read"),
			rule: RuleInvalidLabel, label: "NDD"},

		{name: "community compared case-sensitively (scope)", scope: read + " grouping/ndd.read", in: Read, security: perm("NDD.read"),
			rule: RuleNoCommunityPrivilege},
		{name: "community compared case-sensitively (authority)", scope: read, authorities: []string{"PERM_ndd_READ"}, in: Read, security: perm("NDD.read"),
			rule: RuleNoCommunityPrivilege},
		{name: "label suffix is case-sensitive, and a wrong case restricts", scope: read, in: Read, security: perm("NDD.READ"),
			rule: RuleInvalidLabel, label: "NDD.READ"},
		{name: "underscore in community", scope: read, authorities: []string{"PERM_A_B_READ"}, in: Read, security: perm("A_B.read"),
			allowed: true, rule: RuleCommunityPrivilege, privilege: "PERM_A_B_READ"},
		{name: "PERM__READ is no wildcard", scope: read, authorities: []string{"PERM__READ"}, in: Read, security: perm("NDD.read"),
			rule: RuleNoCommunityPrivilege},
		{name: "invalid community privilege ignored", scope: read + " grouping/a.b.read", in: Read, security: perm("a.b.read"),
			rule: RuleInvalidLabel},
		{name: "malformed label still restricts", scope: read + " grouping/NDD.read", in: Read, security: perm("NDD.read.read"),
			rule: RuleInvalidLabel},
		{name: "malformed label opened by wildcard", scope: read, authorities: []string{"PERM_READ"}, in: Read, security: perm(".read"),
			allowed: true, rule: RuleAllCommunities, label: ".read"},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// TestMistypedLabelsFailClosed: a code of the permissions system that is
// not a valid label, or a label of a near-miss system, once made the
// resource count as unlabelled, open to every API reader.
func TestMistypedLabelsFailClosed(t *testing.T) {
	const read, write = "system/*.read", "system/*.read system/*.write"
	near := func(system, code string) []Coding { return []Coding{{System: system, Code: code}} }
	cases := []decideCase{
		{name: "NDD.READ", scope: read, in: Read, security: perm("NDD.READ"), rule: RuleInvalidLabel, label: "NDD.READ"},
		{name: "NDD.reed", scope: read, in: Search, security: perm("NDD.reed"), rule: RuleInvalidLabel, label: "NDD.reed"},
		{name: "bare NDD", scope: read, in: Read, security: perm("NDD"), rule: RuleInvalidLabel, label: "NDD"},
		{name: "empty code", scope: read, in: Read, security: perm(""), rule: RuleInvalidLabel},
		{name: "space in code", scope: read + " grouping/NDD.read", in: Read, security: perm(" NDD.read"), rule: RuleInvalidLabel},
		{name: "invalid beside a matching label", scope: read + " grouping/NDD.read", in: Read, security: perm("NDD.read", "XXX.READ"),
			rule: RuleInvalidLabel, label: "XXX.READ"},
		{name: "invalid beside *.read", scope: read, in: Read, security: perm("*.read", "NDD.READ"), rule: RuleInvalidLabel},
		{name: "invalid restricts writes", scope: write + " grouping/NDD.write", in: Update, security: perm("NDD.write", "NDD.Write"),
			rule: RuleInvalidLabel, label: "NDD.Write"},
		{name: "invalid restricts deletes", scope: write, in: Delete, security: perm("NDD"), rule: RuleInvalidLabel},
		{name: "wildcard read opens an invalid label", scope: read, authorities: []string{"PERM_READ"}, in: Read, security: perm("NDD.READ"),
			allowed: true, rule: RuleAllCommunities, label: "NDD.READ", privilege: "PERM_READ"},
		{name: "wildcard write opens an invalid label for update", scope: write + " grouping/*.write", in: Update, security: perm("NDD"),
			allowed: true, rule: RuleAllCommunities, privilege: "grouping/*.write"},
		{name: "wildcard read does not open an invalid label for delete", scope: write, authorities: []string{"PERM_READ"}, in: Delete,
			security: perm("NDD"), rule: RuleInvalidLabel},

		{name: "https near miss", scope: read, in: Read, security: near("https://ontoserver.csiro.au/CodeSystem/ontoserver-permissions", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: "https://ontoserver.csiro.au/CodeSystem/ontoserver-permissions"},
		{name: "trailing slash near miss", scope: read + " grouping/NDD.read", in: Read, security: near(DefaultSystem+"/", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: DefaultSystem + "/"},
		{name: "case near miss", scope: read, in: Read, security: near("HTTP://Ontoserver.csiro.au/CodeSystem/Ontoserver-Permissions", "NDD.read"),
			rule: RuleInvalidLabel},
		{name: "near miss of a configured system", cfg: Config{System: "urn:perm"}, scope: read, in: Read, security: near(" urn:PERM ", "NDD.read"),
			rule: RuleInvalidLabel},
		{name: "near miss opened by wildcard, still reported", scope: read, authorities: []string{"PERM_READ"}, in: Read,
			security: near(DefaultSystem+"//", "NDD.read"), allowed: true, rule: RuleAllCommunities, nearMiss: DefaultSystem + "//"},
		{name: "versioned near miss", scope: read, in: Read, security: near(DefaultSystem+"|1.0", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: DefaultSystem + "|1.0"},
		{name: "fragment near miss", scope: read, in: Read, security: near(DefaultSystem+"#x", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: DefaultSystem + "#x"},
		{name: "invisible character near miss", scope: read, in: Read, security: near("http://ontoserver.csiro.au/Code\u200bSystem/ontoserver-permissions", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: "http://ontoserver.csiro.au/Code\u200bSystem/ontoserver-permissions"},
		{name: "inner space near miss", scope: read, in: Read, security: near("http://ontoserver.csiro.au/CodeSystem /ontoserver-permissions", "NDD.read"),
			rule: RuleInvalidLabel, nearMiss: "http://ontoserver.csiro.au/CodeSystem /ontoserver-permissions"},
		{name: "a different system is no near miss", scope: read, in: Read, security: near("http://ontoserver.csiro.au/CodeSystem/other", "NDD.read"),
			allowed: true, rule: RuleUnlabelled},
		// A system of spaces or invisible characters only is no system:
		// never the permissions system, and a label shaped like one, or
		// any with --systemless-labels, restricts (ignored, it opened the
		// resource).
		{name: "blank system", scope: read, in: Read, security: near(" ", "NDD.read"), rule: RuleInvalidLabel},
		{name: "invisible system", scope: read, in: Read, security: near("\u200b", "NDD.read"), rule: RuleInvalidLabel},
		{name: "tab system, systemless labels", cfg: Config{SystemlessLabels: true}, scope: read, in: Read, security: near("\t", "anything"),
			rule: RuleInvalidLabel},
		{name: "blank system, a code no label", scope: read, in: Read, security: near(" ", "draft"), allowed: true, rule: RuleUnlabelled},
		{name: "no system, an invisible character after the label", scope: read, in: Read, security: near("", "NDD.read\u200b"),
			rule: RuleInvalidLabel},
		{name: "only *.read opens to API level", scope: read, in: Read, security: perm("*.read", "NDD.read"), allowed: true, rule: RuleOpenLabel},
		{name: "*.READ does not open", scope: read, in: Read, security: perm("*.READ"), rule: RuleInvalidLabel},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// TestWritesCheckNewLabels: creates and updates once were judged by the
// stored labels alone, so an author could plant B.write in community B or
// strip A.read and publish an A resource.
func TestWritesCheckNewLabels(t *testing.T) {
	const w = "system/*.read system/*.write"
	none := []Coding{}
	cases := []decideCase{
		{name: "create without labels", scope: w, in: Create, allowed: true, rule: RuleCreate},
		{name: "create in own community", scope: w + " grouping/A.write", in: Create, newSecurity: perm("A.read", "A.write"),
			allowed: true, rule: RuleCreate},
		{name: "create planting B.write", scope: w + " grouping/A.write", in: Create, newSecurity: perm("A.write", "B.write"),
			rule: RuleLabelChange, changed: "B.write"},
		{name: "create planting B.read", scope: w, authorities: []string{"PERM_A_WRITE", "PERM_B_READ"}, in: Create, newSecurity: perm("B.read"),
			rule: RuleLabelChange, changed: "B.read"},
		{name: "create with *.read needs wildcard", scope: w + " grouping/A.write", in: Create, newSecurity: perm("*.read"),
			rule: RuleLabelChange, changed: "*.read"},
		{name: "create with invalid label needs wildcard", scope: w + " grouping/A.write", in: Create, newSecurity: perm("A.READ"),
			rule: RuleLabelChange, changed: "A.READ"},
		{name: "create with near-miss label needs wildcard", scope: w + " grouping/A.write", in: Create,
			newSecurity: []Coding{{System: DefaultSystem + "/", Code: "A.read"}}, rule: RuleLabelChange, nearMiss: DefaultSystem + "/"},
		{name: "wildcard writer creates anything", scope: w, authorities: []string{"PERM_WRITE"}, in: Create,
			newSecurity: perm("B.write", "*.read", "X.READ"), allowed: true, rule: RuleCreate},
		{name: "create labels of other systems freely", scope: w, in: Create,
			newSecurity: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}}, allowed: true, rule: RuleCreate},

		{name: "update keeping labels", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "A.write"),
			allowed: true, rule: RuleCommunityPrivilege},
		{name: "update planting B.write", scope: w + " grouping/A.write", in: Update, security: perm("A.write"),
			newSecurity: perm("A.write", "B.write"), rule: RuleLabelChange, changed: "B.write"},
		{name: "author of A strips A.read and publishes", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "A.write"),
			newSecurity: perm("A.write"), rule: RuleOpensResource, changed: "A.read"},
		{name: "author of A strips A.write, opening writes", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "A.write"),
			newSecurity: perm("A.read"), rule: RuleOpensResource, changed: "A.write"},
		{name: "author of A narrows B.read+A.read to B.read", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "B.read", "A.write"),
			newSecurity: perm("B.read", "A.write"), allowed: true, rule: RuleCommunityPrivilege},
		{name: "author of A strips B.read", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "B.read", "A.write"),
			newSecurity: perm("A.read", "A.write"), rule: RuleLabelChange, changed: "B.read"},
		{name: "API writer strips A.read of a read-only-labelled resource", scope: w, in: Update, security: perm("A.read"),
			newSecurity: none, rule: RuleLabelChange, changed: "A.read"},
		{name: "update without newSecurity strips", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "A.write"),
			newSecurity: none, rule: RuleOpensResource},
		{name: "author of A cannot remove an invalid label", scope: w + " grouping/A.write", in: Update, security: perm("A.write"),
			newSecurity: perm("A.write", "A.READ"), rule: RuleLabelChange, changed: "A.READ"},
		{name: "service desk removes the offending label", scope: w, authorities: []string{"PERM_READ", "PERM_WRITE"}, in: Update,
			security: perm("GONE.read", "GONE.write"), newSecurity: none, allowed: true, rule: RuleAllCommunities},
		{name: "update that creates: labels are added", scope: w + " grouping/A.write", in: Update, newSecurity: perm("B.read"),
			rule: RuleLabelChange, changed: "B.read"},
		{name: "update adding *.read needs wildcard", scope: w + " grouping/A.write", in: Update, security: perm("A.read", "A.write"),
			newSecurity: perm("A.read", "A.write", "*.read"), rule: RuleLabelChange, changed: "*.read"},
		{name: "stored check comes first", scope: w + " grouping/A.write", in: Update, security: perm("B.write"),
			newSecurity: perm("B.write"), rule: RuleNoCommunityPrivilege},
		{name: "delete ignores newSecurity", scope: w + " grouping/A.write", in: Delete, security: perm("A.write"),
			newSecurity: perm("B.write"), allowed: true, rule: RuleCommunityPrivilege},
		{name: "read ignores newSecurity", scope: w, in: Read, newSecurity: perm("B.read"), allowed: true, rule: RuleUnlabelled},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

func TestNilPrivileges(t *testing.T) {
	d := Decide(nil, Request{ResourceType: "CodeSystem", Interaction: Read})
	if d.Allowed || d.Rule != RuleNoAPIAccess {
		t.Fatalf("nil privileges: %+v", d)
	}
	if r := (*Privileges)(nil).Communities(); r.AllRead || r.AllWrite || len(r.Read)+len(r.Write) != 0 {
		t.Fatalf("nil Communities() = %+v", r)
	}
}

func TestReason(t *testing.T) {
	cases := []struct {
		scope string
		auth  []string
		req   Request
		want  []string
	}{
		{"grouping/NDD.read", nil, Request{"ValueSet", Read, perm("NDD.read"), nil},
			[]string{"read of ValueSet denied", "no scope or authority grants read at API level", "never raise"}},
		{"system/*.read grouping/XXX.read", nil, Request{"ValueSet", Read, perm("NDD.read", "XXX.read"), nil},
			[]string{"read of ValueSet allowed", `scope "system/*.read"`, `label "XXX.read"`, `scope "grouping/XXX.read"`}},
		{"", []string{"FHIR_READ", "PERM_READ"}, Request{"ValueSet", Search, perm("NDD.read"), nil},
			[]string{"search of ValueSet allowed", `authority "FHIR_READ"`, `label "NDD.read"`, `authority "PERM_READ"`, "every community"}},
		{"system/*.*", nil, Request{"ValueSet", Update, perm("NDD.write", "XXX.write"), nil},
			[]string{"update of ValueSet denied", `first "NDD.write"`, "no community privilege"}},
		{"system/*.*", nil, Request{"ValueSet", Read, perm("*.read"), nil},
			[]string{"allowed", `label "*.read"`, "everyone with API access"}},
		{"system/*.*", nil, Request{"ValueSet", Delete, perm("NDD.read"), nil},
			[]string{"delete of ValueSet allowed", "no .write label"}},
		{"system/*.*", nil, Request{"ValueSet", Create, nil, perm("NDD.write")},
			[]string{"create of ValueSet denied", `add label "NDD.write"`, "no write privilege in its community"}},
		{"system/*.* grouping/NDD.write", nil, Request{"ValueSet", Create, nil, perm("NDD.write")},
			[]string{"create of ValueSet allowed", "may set every permission label"}},
		{"system/*.* grouping/NDD.write", nil, Request{"ValueSet", Update, perm("NDD.read", "NDD.write"), perm("NDD.write")},
			[]string{"update of ValueSet denied", `removing "NDD.read"`, "open the resource to everyone"}},
		{"system/*.*", nil, Request{"ValueSet", Read, perm("NDD.READ"), nil},
			[]string{"read of ValueSet denied", `"NDD.READ", which is not a valid permission label`}},
		{"system/*.*", nil, Request{"ValueSet", Read, []Coding{{DefaultSystem + "/", "NDD.read"}}, nil},
			[]string{"denied", "is almost the permissions system"}},
		{"system/*.*", nil, Request{"ValueSet", 42, nil, nil},
			[]string{"interaction(42) of ValueSet denied", "not one of"}},
	}
	for _, c := range cases {
		r := Decide(Parse(c.scope, c.auth), c.req).Reason()
		for _, w := range c.want {
			if !strings.Contains(r, w) {
				t.Errorf("Reason() = %q, want it to contain %q", r, w)
			}
		}
	}
}

func TestRuleString(t *testing.T) {
	seen := map[string]bool{}
	for r := RuleInvalidInteraction; r <= RuleOpensResource; r++ {
		s := r.String()
		if s == "" || seen[s] {
			t.Errorf("Rule(%d).String() = %q: empty or duplicate", r, s)
		}
		seen[s] = true
	}
	if got := Rule(200).String(); got != "rule(200)" {
		t.Errorf("Rule(200).String() = %q", got)
	}
}

// TestScopeTokens: scopes are split on spaces only, and a token with any
// other character a scope may not hold grants nothing (the privileges
// mapper splits on spaces only, so it would pass "x\tgrouping/NDD.read"
// whole, and splitting on every space character read NDD out of it).
func TestScopeTokens(t *testing.T) {
	for scope, want := range map[string][]string{
		"system/*.read  grouping/NDD.read":       {"NDD"},
		"system/*.read x\tgrouping/NDD.read":     nil,
		"system/*.read x\u00a0grouping/NDD.read": nil,
		"system/*.read x\u0085grouping/NDD.read": nil,
		"system/*.read grouping/NDD.read\n":      nil,
	} {
		if got := Parse(scope, nil).Communities().Read; !slices.Equal(got, want) {
			t.Errorf("%q reads %v, want %v", scope, got, want)
		}
	}
}

func TestParseClaims(t *testing.T) {
	// The shape encoding/json gives a Keycloak access token of this project.
	var claims map[string]any
	err := json.Unmarshal([]byte(`{
		"scope": "openid grouping/NDD.read grouping/bird.write system/*.read",
		"authorities": ["FHIR_READ", "PERM_XXX_READ", 7],
		"realm_access": {"roles": ["PERM_NDD_WRITE", "PERM_READ", "offline_access"]}
	}`), &claims)
	if err != nil {
		t.Fatal(err)
	}
	p := ParseClaims(claims)
	want := Reach{Read: []string{"NDD", "XXX"}, Write: []string{"NDD", "bird"}, AllRead: true}
	if got := p.Communities(); !reflect.DeepEqual(got, want) {
		t.Errorf("Communities() = %+v, want %+v", got, want)
	}
	d := Decide(p, Request{"CodeSystem", Update, perm("NDD.write"), nil})
	if d.Allowed || d.Rule != RuleNoAPIAccess {
		t.Errorf("update without API write: %s", d.Reason())
	}

	// []string is accepted too, for callers building claims by hand.
	p = ParseClaims(map[string]any{"authorities": []string{"FHIR_WRITE", "PERM_WRITE"}})
	if d := Decide(p, Request{"CodeSystem", Update, perm("NDD.write"), nil}); !d.Allowed {
		t.Errorf("update with FHIR_WRITE and PERM_WRITE: %s", d.Reason())
	}
	if got := ParseClaims(nil).Communities(); !reflect.DeepEqual(got, Reach{Read: []string{}, Write: []string{}}) {
		t.Errorf("ParseClaims(nil).Communities() = %+v", got)
	}
}
