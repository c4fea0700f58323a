package keycloak

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The one-call create carries exactly what Describe says: both roles with
// the marker, the label group with its name and markers, each member group
// with its grants, and the owners in the owner group only.
func TestArtefactsBodyIsDescribe(t *testing.T) {
	d := Describe(ndd)
	b := d.artefacts("root-id", []string{"u1", "u2"})
	if b.Parent != "root-id" || len(b.Roles) != 2 {
		t.Fatalf("parent %q, roles %v", b.Parent, b.Roles)
	}
	for i, r := range b.Roles {
		if r.Name != d.Roles[i].Name || r.Description != d.Roles[i].Description || !reflect.DeepEqual(r.Attributes, d.Marker) {
			t.Errorf("role %d: %+v, want %+v with the marker", i, r, d.Roles[i])
		}
	}
	if b.Group.Name != "NDD" || b.Group.Description != ndd.Name || !reflect.DeepEqual(b.Group.Attributes, d.Group.Attributes) || len(b.Group.RealmRoles) != 0 {
		t.Errorf("label group %+v", b.Group)
	}
	if len(b.Group.SubGroups) != len(d.Children) {
		t.Fatalf("subgroups %+v", b.Group.SubGroups)
	}
	for i, g := range b.Group.SubGroups {
		want := d.Children[i]
		if g.Name != want.Name || !reflect.DeepEqual(g.RealmRoles, want.Grants) || !reflect.DeepEqual(g.Attributes, d.Marker) || len(g.SubGroups) != 0 {
			t.Errorf("subgroup %+v, want %+v", g, want)
		}
	}
	if !reflect.DeepEqual(b.Members, map[string][]string{"owner": {"u1", "u2"}}) {
		t.Errorf("members %v", b.Members)
	}
	// A dormant community (no owners) adds no one; the body still names
	// an empty members map, which the extension requires.
	raw, err := json.Marshal(d.artefacts("root-id", nil))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if m, ok := back["members"].(map[string]any); !ok || len(m) != 0 {
		t.Errorf("members of a dormant community: %v", back["members"])
	}
}
