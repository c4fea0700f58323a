package keycloak

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/nhs-terminology/communities/internal/community"
)

// surveyJSON is the extension's survey answer for n healthy communities,
// as Keycloak sends it.
func surveyJSON(tb testing.TB, n int) ([]byte, []community.Spec) {
	tb.Helper()
	var rep struct {
		Roles            []map[string]any `json:"roles"`
		Groups           []map[string]any `json:"groups"`
		AdminPermissions bool             `json:"adminPermissions"`
		Policies         []policyContent  `json:"policies"`
		ClientScopes     []map[string]any `json:"clientScopes"`
	}
	rep.AdminPermissions = true
	specs := make([]community.Spec, n)
	for i := range specs {
		s := community.Spec{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Realm: "r", Root: "Communities", Label: fmt.Sprintf("S%05d", i), Name: "n"}
		specs[i] = s
		d := Describe(s)
		for _, r := range d.Roles {
			rep.Roles = append(rep.Roles, map[string]any{"name": r.Name, "attributes": d.Marker})
		}
		rep.Groups = append(rep.Groups, map[string]any{"name": d.Group.Name, "path": d.Group.Path, "attributes": d.Marker})
		for _, c := range d.Children {
			rep.Groups = append(rep.Groups, map[string]any{"name": c.Name, "path": c.Path, "attributes": d.Marker, "realmRoles": c.Grants})
		}
		for j, p := range d.Policies {
			rep.Policies = append(rep.Policies, storedPolicy(d, p, fmt.Sprintf("%08d-%d", i, j)))
		}
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		tb.Fatal(err)
	}
	return raw, specs
}

// BenchmarkSurveyRead is the service's share of a drift pass over 1,000
// communities: decoding the extension's answer and comparing every
// community with Describe.
func BenchmarkSurveyRead(b *testing.B) {
	raw, specs := surveyJSON(b, 1000)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := decodeSurvey(raw)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range specs {
			if d, shared := v.compare(s); len(d) > 0 || len(shared) > 0 {
				b.Fatalf("%s: %v %v", s.Label, d, shared)
			}
		}
	}
}
