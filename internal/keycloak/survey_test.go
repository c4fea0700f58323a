package keycloak

import (
	"slices"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
)

// healthy is the view of a realm holding exactly what Provision makes for
// s, as Keycloak's bulk reads answer it.
func healthy(s community.Spec) realmView {
	d := Describe(s)
	v := realmView{roles: map[string]gocloak.Role{}, groups: map[string]gocloak.Group{},
		policies: map[string]policyRep{}, scopes: map[string]scopeRep{}}
	marker := d.Marker
	for _, r := range d.Roles {
		v.roles[r.Name] = gocloak.Role{Name: gocloak.StringP(r.Name), Attributes: &marker}
	}
	attrs := d.Group.Attributes
	v.groups[d.Group.Path] = gocloak.Group{Name: gocloak.StringP(d.Group.Name), Attributes: &attrs}
	for _, c := range d.Children {
		grants := append([]string{"default-roles-terminology"}, c.Grants...)
		v.groups[c.Path] = gocloak.Group{Name: gocloak.StringP(c.Name), Attributes: &marker, RealmRoles: &grants}
	}
	for _, p := range d.Policies {
		v.policies[p.Name] = policyRep{Name: p.Name, Description: p.Description}
	}
	return v
}

func whats(drift []community.Drift) []string {
	var out []string
	for _, d := range drift {
		out = append(out, d.What+": "+d.Problem)
	}
	return out
}

// TestCompare: the bulk comparison finds what Ensure would, in its words,
// without a call of its own; what it does not understand is a suspect.
func TestCompare(t *testing.T) {
	if d := healthy(ndd).compare(ndd); len(d) != 0 {
		t.Fatalf("a healthy community: %v", whats(d))
	}
	other := map[string][]string{MarkerAttribute: {"id-2"}}
	for _, c := range []struct {
		name  string
		spoil func(v realmView)
		want  []string
	}{
		{"role missing", func(v realmView) { delete(v.roles, "PERM_NDD_WRITE") },
			[]string{"realm role PERM_NDD_WRITE: missing"}},
		{"role someone else's", func(v realmView) {
			v.roles["PERM_NDD_READ"] = gocloak.Role{Name: gocloak.StringP("PERM_NDD_READ"), Attributes: &other}
		}, []string{"realm role PERM_NDD_READ: exists but is not this community's"}},
		{"label group missing, children not looked at", func(v realmView) { delete(v.groups, "/Communities/NDD") },
			[]string{"group /Communities/NDD: missing"}},
		{"label group someone else's", func(v realmView) {
			v.groups["/Communities/NDD"] = gocloak.Group{Name: gocloak.StringP("NDD"), Attributes: &other}
		}, []string{"group /Communities/NDD: exists but is not this community's"}},
		{"member group missing", func(v realmView) { delete(v.groups, "/Communities/NDD/consumer") },
			[]string{"group /Communities/NDD/consumer: missing"}},
		{"role mapping missing", func(v realmView) {
			g := v.groups["/Communities/NDD/author"]
			g.RealmRoles = &[]string{"PERM_NDD_READ"}
			v.groups["/Communities/NDD/author"] = g
		}, []string{"role mapping /Communities/NDD/author → PERM_NDD_WRITE: missing"}},
		{"owner role of an earlier version", func(v realmView) {
			m := map[string][]string{MarkerAttribute: {ndd.ID}}
			v.roles["PERM_NDD_OWNER"] = gocloak.Role{Name: gocloak.StringP("PERM_NDD_OWNER"), Attributes: &m}
		}, []string{"realm role PERM_NDD_OWNER: " + problemEarlier}},
		{"someone else's owner role is not this community's business", func(v realmView) {
			v.roles["PERM_NDD_OWNER"] = gocloak.Role{Name: gocloak.StringP("PERM_NDD_OWNER")}
		}, nil},
		{"a scope of a legacy name, whoever made it", func(v realmView) {
			v.scopes["grouping/NDD.read"] = scopeRep{Name: "grouping/NDD.read"}
		}, []string{"client scope grouping/NDD.read: exists"}},
		{"admin permission missing", func(v realmView) { delete(v.policies, "community:NDD:membership") },
			[]string{"admin permission community:NDD:membership: missing"}},
		{"admin permission someone else's", func(v realmView) {
			v.policies["community:NDD:owners"] = policyRep{Name: "community:NDD:owners", Description: markerDescription("id-2")}
		}, []string{"admin permission community:NDD:owners: exists but is not this community's"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := healthy(ndd)
			c.spoil(v)
			if got := whats(v.compare(ndd)); !slices.Equal(got, c.want) {
				t.Errorf("drift %q, want %q", got, c.want)
			}
		})
	}
	// Admin permissions off: every community is a suspect.
	v := healthy(ndd)
	v.policies = nil
	if got := whats(v.compare(ndd)); !slices.Equal(got, []string{"admin permissions of realm terminology: not enabled"}) {
		t.Errorf("permissions off: %q", got)
	}
}
