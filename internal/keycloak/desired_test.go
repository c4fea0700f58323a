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
		{"owner role", d.Roles[2].Name, "PERM_NDD_OWNER"},
		{"label group", d.Group.Path, "/Communities/NDD"},
		{"owner group", d.Children[0].Path, "/Communities/NDD/owner"},
		{"author group", d.Children[1].Path, "/Communities/NDD/author"},
		{"consumer group", d.Children[2].Path, "/Communities/NDD/consumer"},
		{"read scope", d.Scopes[0].Name, "grouping/NDD.read"},
		{"write scope", d.Scopes[1].Name, "grouping/NDD.write"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
}

// Seed 003: authors read and write, consumers read; owners manage (and may
// open the console's Users and Groups pages).
func TestDescribeGrants(t *testing.T) {
	d := Describe(ndd)
	want := map[string][]string{
		community.RoleOwner:    {"PERM_NDD_OWNER", OwnerRole},
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
	// A scope without its role would be in every user's token.
	for i, sc := range d.Scopes {
		if sc.Role != d.Roles[i].Name {
			t.Errorf("scope %s maps %q, want %q", sc.Name, sc.Role, d.Roles[i].Name)
		}
		if sc.Attributes["include.in.token.scope"] != "true" || sc.Attributes["display.on.consent.screen"] != "false" {
			t.Errorf("scope %s attributes %v", sc.Name, sc.Attributes)
		}
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
	for _, sc := range d.Scopes {
		if sc.Attributes[MarkerAttribute] != "id-1" {
			t.Errorf("scope %s has no marker", sc.Name)
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
