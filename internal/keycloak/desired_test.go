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
		body := p.body(a)
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
