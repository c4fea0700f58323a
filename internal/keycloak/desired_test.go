package keycloak

import (
	"github.com/nhs-terminology/communities/internal/community"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var ndd = community.Spec{ID: "id-1", Realm: "terminology", Root: "Communities", Label: "NDD", Name: "National data dictionary"}

func TestDescribeNamesFollowOntoserver(t *testing.T) {
	d := Describe(ndd)
	for _, c := range []struct{ what, got, want string }{
		{"read role", d.Roles[0].Name, "PERM_NDD_READ"},
		{"write role", d.Roles[1].Name, "PERM_NDD_WRITE"},
		{"label group", d.Group.Path, "/Communities/NDD"},
		{"owner group", d.Children[0].Path, "/Communities/NDD/owner"},
		{"author group", d.Children[1].Path, "/Communities/NDD/author"},
		{"consumer group", d.Children[2].Path, "/Communities/NDD/consumer"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	if len(d.Roles) != 2 {
		t.Errorf("roles %v: a community has exactly its read and write roles", d.RoleNames())
	}
}

// Issue 14: a community adds no role nothing reads (PERM_<label>_OWNER) and
// no client scope (every default scope costs every login of the realm);
// what earlier versions made of those is listed for removal.
func TestDescribeLegacy(t *testing.T) {
	d := Describe(ndd)
	want := Legacy{Roles: []string{"PERM_NDD_OWNER"}, Scopes: []string{"grouping/NDD.read", "grouping/NDD.write"}}
	if !reflect.DeepEqual(d.Legacy, want) {
		t.Errorf("legacy %+v, want %+v", d.Legacy, want)
	}
	for _, r := range d.RoleNames() {
		if slices.Contains(d.Legacy.Roles, r) {
			t.Errorf("role %s is both made and removed as legacy", r)
		}
	}
}

// Seed 003: authors read and write, consumers read; owners manage (and may
// open the console's Users and Groups pages).
func TestDescribeGrants(t *testing.T) {
	d := Describe(ndd)
	want := map[string][]string{
		community.RoleOwner:    {OwnerRole},
		community.RoleAuthor:   {"PERM_NDD_READ", "PERM_NDD_WRITE"},
		community.RoleConsumer: {"PERM_NDD_READ"},
	}
	for _, g := range d.Children {
		if !reflect.DeepEqual(g.Grants, want[g.Member]) {
			t.Errorf("%s grants %v, want %v", g.Path, g.Grants, want[g.Member])
		}
	}
	if len(d.Group.Grants) != 0 {
		t.Errorf("the label group grants %v: membership of it must give nothing", d.Group.Grants)
	}
}

// Clean-up removes only what carries the community's marker, so every
// artefact must carry it.
func TestDescribeMarksEverything(t *testing.T) {
	d := Describe(ndd)
	if !slices.Equal(d.Marker[MarkerAttribute], []string{"id-1"}) {
		t.Errorf("marker %v", d.Marker)
	}
	for _, g := range append([]GroupSpec{d.Group}, d.Children...) {
		if !slices.Equal(g.Attributes[MarkerAttribute], []string{"id-1"}) {
			t.Errorf("group %s has no marker: %v", g.Path, g.Attributes)
		}
	}
	for _, p := range d.Policies {
		if !strings.Contains(p.Description, MarkerAttribute+"=id-1") {
			t.Errorf("policy %s has no marker: %q", p.Name, p.Description)
		}
	}
	for _, r := range d.Roles {
		if !strings.Contains(r.Description, "National data dictionary") {
			t.Errorf("role %s does not name the community: %q", r.Name, r.Description)
		}
	}
}

func TestDescribePolicies(t *testing.T) {
	d := Describe(ndd)
	a := community.Artifacts{GroupID: "g", OwnerGroupID: "go", AuthorGroupID: "ga", ConsumerGroupID: "gc"}
	cases := []struct {
		name string
		kind string
		want map[string]any
	}{
		{"community:NDD:owners", "group", map[string]any{
			"groups": []map[string]any{{"id": "go", "extendChildren": false}}, "logic": "POSITIVE"}},
		{"community:NDD:membership-admins", "aggregate", map[string]any{
			"decisionStrategy": "AFFIRMATIVE", "policies": []string{"community:NDD:owners", policyServiceDesk}, "logic": "POSITIVE"}},
		// Every community admin sees the groups (docs/keycloak-fgap.md,
		// surprise 1); only the community's owners and service desk
		// change membership, of the member groups only.
		{"community:NDD:view", "scope", map[string]any{
			"resources": []string{"g", "go", "ga", "gc"}, "scopes": []string{"view"}, "policies": []string{policyAdmins}, "resourceType": "Groups"}},
		{"community:NDD:membership", "scope", map[string]any{
			"resources": []string{"go", "ga", "gc"}, "scopes": []string{"manage-membership"}, "policies": []string{"community:NDD:membership-admins"}, "resourceType": "Groups"}},
	}
	if len(d.Policies) != len(cases) {
		t.Fatalf("%d policies, want %d", len(d.Policies), len(cases))
	}
	for i, c := range cases {
		p := d.Policies[i]
		if p.Name != c.name || p.Kind != c.kind {
			t.Errorf("policy %d: %s %s, want %s %s (made in this order, deleted in reverse)", i, p.Kind, p.Name, c.kind, c.name)
			continue
		}
		body := p.body(func(m string) string { return groupID(a, m) }, nil)
		for k, v := range c.want {
			if !reflect.DeepEqual(body[k], v) {
				t.Errorf("%s: %s = %v, want %v", p.Name, k, body[k], v)
			}
		}
	}
}

func TestDescribeIsPure(t *testing.T) {
	if !reflect.DeepEqual(Describe(ndd), Describe(ndd)) {
		t.Error("two descriptions of one community differ")
	}
	other := ndd
	other.ID = "id-2"
	if reflect.DeepEqual(Describe(ndd), Describe(other)) {
		t.Error("the description ignores the community's id")
	}
}

// TestPolicyProblems: what a stored policy grants is compared with the
// description in names (roles by name, groups by path), and any
// difference that changes who is granted what is named; its description
// is not compared (a community's marker is checked on its own).
func TestPolicyProblems(t *testing.T) {
	byName := map[string]PolicySpec{}
	for _, p := range append(RealmPolicies("service-desk"), Describe(ndd).Policies...) {
		byName[p.Name] = p
	}
	path := func(m string) string {
		if m == "" {
			return "/Communities/NDD"
		}
		return "/Communities/NDD/" + m
	}
	root := func(string) string { return "/Communities" }
	admins := policyContent{Type: "role", Logic: "POSITIVE", Roles: []string{"service-desk", OwnerRole}}
	users := policyContent{Type: "scope", Logic: "POSITIVE", ResourceType: "Users", Scopes: []string{"view", "manage-group-membership"},
		Policies: []string{policyAdmins}, Resources: []string{"Users"}}
	owners := policyContent{Type: "group", Logic: "POSITIVE", Groups: []string{"/Communities/NDD/owner"}}
	either := policyContent{Type: "aggregate", Logic: "POSITIVE", DecisionStrategy: "AFFIRMATIVE",
		Policies: []string{"community:NDD:owners", policyServiceDesk}}
	with := func(c policyContent, change func(*policyContent)) policyContent { change(&c); return c }
	membership := policyContent{Type: "scope", Logic: "POSITIVE", ResourceType: "Groups", Scopes: []string{"manage-membership"},
		Policies:  []string{"community:NDD:membership-admins"},
		Resources: []string{"group /Communities/NDD/owner", "group /Communities/NDD/author", "group /Communities/NDD/consumer"}}
	cases := []struct {
		policy string
		got    policyContent
		paths  func(string) string
		want   string
		widens bool
	}{
		{policyAdmins, admins, root, "", false},
		{policyAdmins, with(admins, func(c *policyContent) { c.Description = "changed" }), root, "", false},
		{policyAdmins, with(admins, func(c *policyContent) { c.Roles = append(c.Roles, "default-roles-r") }), root,
			`roles ["community-owner" "default-roles-r" "service-desk"], not ["community-owner" "service-desk"]`, true},
		{policyAdmins, with(admins, func(c *policyContent) { c.Roles = []string{"community-owner (required)", "service-desk"} }), root,
			`roles ["community-owner (required)" "service-desk"], not ["community-owner" "service-desk"]`, true},
		{policyAdmins, with(admins, func(c *policyContent) { c.Roles = []string{OwnerRole} }), root,
			`roles ["community-owner"], not ["community-owner" "service-desk"]`, false},
		{policyAdmins, with(admins, func(c *policyContent) { c.Logic = "NEGATIVE" }), root, `logic "NEGATIVE", not "POSITIVE"`, true},
		{policyAdmins, with(admins, func(c *policyContent) { c.Type = "js" }), root, `type "js", not "role"`, true},
		{policyAdmins, with(admins, func(c *policyContent) { c.FetchRoles = true }), root, `fetches roles`, true},
		{permUsers, users, root, "", false},
		{permUsers, with(users, func(c *policyContent) { c.Resources = []string{"group /Communities/NDD/owner"} }), root,
			`resources ["group /Communities/NDD/owner"], not ["Users"]`, true},
		{permUsers, with(users, func(c *policyContent) { c.Scopes = append(c.Scopes, "impersonate") }), root,
			`scopes ["impersonate" "manage-group-membership" "view"], not ["manage-group-membership" "view"]`, true},
		{permUsers, with(users, func(c *policyContent) { c.Scopes = []string{"view"} }), root,
			`scopes ["view"], not ["manage-group-membership" "view"]`, false},
		{permRoot, policyContent{Type: "scope", Logic: "POSITIVE", ResourceType: "Groups", Scopes: []string{"view"},
			Policies: []string{policyAdmins}, Resources: []string{"group /Communities"}}, root, "", false},
		// A permission needs all its policies: another one asks more of
		// whom it grants to, but under another strategy it would not.
		{permRoot, policyContent{Type: "scope", Logic: "POSITIVE", ResourceType: "Groups", Scopes: []string{"view"},
			Policies: []string{policyAdmins, "anyone"}, Resources: []string{"group /Communities"}}, root,
			`policies ["anyone" "role:community-admins"], not ["role:community-admins"]`, true},
		{"community:NDD:owners", owners, path, "", false},
		{"community:NDD:owners", with(owners, func(c *policyContent) { c.Groups = []string{"/Communities/NDD/owner (and subgroups)"} }), path,
			`groups ["/Communities/NDD/owner (and subgroups)"], not ["/Communities/NDD/owner"]`, true},
		{"community:NDD:owners", with(owners, func(c *policyContent) { c.GroupsClaim = "groups" }), path,
			`matches groups in claim "groups"`, true},
		// The owner group deleted: Keycloak takes it out of the policy.
		{"community:NDD:owners", with(owners, func(c *policyContent) { c.Groups = nil }), path,
			`groups [], not ["/Communities/NDD/owner"]`, false},
		{"community:NDD:membership-admins", either, path, "", false},
		{"community:NDD:membership-admins", with(either, func(c *policyContent) { c.DecisionStrategy = "UNANIMOUS" }), path,
			`decision strategy "UNANIMOUS", not "AFFIRMATIVE"`, true},
		// role:service-desk deleted: Keycloak takes it out of the aggregate.
		{"community:NDD:membership-admins", with(either, func(c *policyContent) { c.Policies = []string{"community:NDD:owners"} }), path,
			`policies ["community:NDD:owners"], not ["community:NDD:owners" "role:service-desk"]`, false},
		{"community:NDD:membership", membership, path, "", false},
		// The consumer group deleted: Keycloak takes it out of the
		// permission's resources.
		{"community:NDD:membership", with(membership, func(c *policyContent) { c.Resources = c.Resources[:2] }), path,
			`resources ["group /Communities/NDD/author" "group /Communities/NDD/owner"], not ` +
				`["group /Communities/NDD/author" "group /Communities/NDD/consumer" "group /Communities/NDD/owner"]`, false},
		// With none left it may be on every group.
		{"community:NDD:membership", with(membership, func(c *policyContent) { c.Resources = nil }), path,
			`resources ["(none)"], not ["group /Communities/NDD/author" "group /Communities/NDD/consumer" "group /Communities/NDD/owner"]`, true},
		{"community:NDD:membership", with(membership, func(c *policyContent) { c.Policies = nil }), path,
			`policies [], not ["community:NDD:membership-admins"]`, true},
	}
	for _, c := range cases {
		if got, widens := byName[c.policy].problems(c.got, c.paths); got != c.want || widens != c.widens {
			t.Errorf("%s %+v:\n got %s (widens %v)\nwant %s (widens %v)", c.policy, c.got, got, widens, c.want, c.widens)
		}
	}
}

// TestRealmPoliciesName: the realm-wide policies name the configured
// service-desk role, not one spelled into the code.
func TestRealmPoliciesName(t *testing.T) {
	for _, p := range RealmPolicies("helpdesk") {
		if p.Kind == "role" && !slices.Contains(p.Roles, "helpdesk") || slices.Contains(p.Roles, "service-desk") {
			t.Errorf("%s names roles %q, want helpdesk's", p.Name, p.Roles)
		}
	}
}
