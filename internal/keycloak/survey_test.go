package keycloak

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"
	json "github.com/go-json-experiment/json"

	"github.com/nhs-terminology/communities/internal/community"
)

// healthy is the view of a realm holding exactly what Provision makes for
// s, as Keycloak's bulk reads answer it.
func healthy(s community.Spec) realmView {
	d := Describe(s)
	v := realmView{roles: map[string]gocloak.Role{}, groups: map[string]gocloak.Group{},
		policies: map[string]policyContent{}, scopes: map[string]scopeRep{}}
	marker := d.Marker
	for _, r := range d.Roles {
		v.roles[r.Name] = gocloak.Role{Name: gocloak.StringP(r.Name), Attributes: &marker}
	}
	attrs := d.Group.Attributes
	v.groups[d.Group.Path] = gocloak.Group{Name: gocloak.StringP(d.Group.Name), Attributes: &attrs}
	for _, c := range d.Children {
		grants := slices.Clone(c.Grants)
		v.groups[c.Path] = gocloak.Group{Name: gocloak.StringP(c.Name), Attributes: &marker, RealmRoles: &grants}
	}
	for i, p := range d.Policies {
		v.policies[p.Name] = storedPolicy(d, p, fmt.Sprint("p", i))
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

// compared is what compare finds in v of s, in whats' words; what it
// finds shared follows, each after "shared ".
func compared(v realmView, s community.Spec) []string {
	d, shared := v.compare(s)
	out := whats(d)
	for _, w := range whats(shared) {
		out = append(out, "shared "+w)
	}
	return out
}

// TestCompare: the bulk comparison finds what Ensure would, in its words,
// without a call of its own; what it does not understand is a suspect.
func TestCompare(t *testing.T) {
	if d := compared(healthy(ndd), ndd); len(d) != 0 {
		t.Fatalf("a healthy community: %v", d)
	}
	other := map[string][]string{MarkerAttribute: {"id-2"}}
	// A second value added by hand makes an artefact nobody's.
	both := map[string][]string{MarkerAttribute: {ndd.ID, "id-2"}}
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
		{"role with a second marker", func(v realmView) {
			v.roles["PERM_NDD_READ"] = gocloak.Role{Name: gocloak.StringP("PERM_NDD_READ"), Attributes: &both}
		}, []string{"realm role PERM_NDD_READ: exists but is not this community's"}},
		{"label group someone else's", func(v realmView) {
			v.groups["/Communities/NDD"] = gocloak.Group{Name: gocloak.StringP("NDD"), Attributes: &other}
		}, []string{"group /Communities/NDD: exists but is not this community's"}},
		{"member group missing", func(v realmView) { delete(v.groups, "/Communities/NDD/consumer") },
			[]string{"group /Communities/NDD/consumer: missing"}},
		{"member group made by hand in the place of the community's, its roles mapped too", func(v realmView) {
			grants := []string{"PERM_NDD_READ"}
			v.groups["/Communities/NDD/consumer"] = gocloak.Group{Name: gocloak.StringP("consumer"), RealmRoles: &grants}
		}, []string{"group /Communities/NDD/consumer: exists but is not this community's"}},
		{"role mapping missing", func(v realmView) {
			g := v.groups["/Communities/NDD/author"]
			g.RealmRoles = &[]string{"PERM_NDD_READ"}
			v.groups["/Communities/NDD/author"] = g
		}, []string{"role mapping /Communities/NDD/author → PERM_NDD_WRITE: missing"}},
		{"a role the community did not grant, on a member group and on the label group", func(v realmView) {
			g := v.groups["/Communities/NDD/consumer"]
			g.RealmRoles = &[]string{"PERM_NDD_READ", "PERM_READ"}
			g.ClientRoles = &map[string][]string{"realm-management": {"manage-users"}, "account": {"view-profile"}}
			v.groups["/Communities/NDD/consumer"] = g
			l := v.groups["/Communities/NDD"]
			l.RealmRoles = &[]string{"FHIR_WRITE"}
			v.groups["/Communities/NDD"] = l
		}, []string{
			"role mapping /Communities/NDD → FHIR_WRITE: " + problemGranted,
			"role mapping /Communities/NDD/consumer → PERM_READ: " + problemGranted,
			"role mapping /Communities/NDD/consumer → account client role view-profile: " + problemGranted,
			"role mapping /Communities/NDD/consumer → realm-management client role manage-users: " + problemGranted + problemByHand,
		}},
		{"an earlier version's owner role on the owner group is the role's business", func(v realmView) {
			g := v.groups["/Communities/NDD/owner"]
			g.RealmRoles = &[]string{OwnerRole, "PERM_NDD_OWNER"}
			v.groups["/Communities/NDD/owner"] = g
		}, nil},
		{"a group made by hand under a member group", func(v realmView) {
			g := v.groups["/Communities/NDD/author"]
			g.SubGroups = &[]gocloak.Group{{Name: gocloak.StringP("team"), Path: gocloak.StringP("/Communities/NDD/author/team")}}
			v.groups["/Communities/NDD/author"] = g
		}, []string{"group /Communities/NDD/author: " + problemBelow}},
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
			p := v.policies["community:NDD:owners"]
			p.Description = markerDescription("id-2")
			v.policies["community:NDD:owners"] = p
		}, []string{"admin permission community:NDD:owners: exists but is not this community's"}},
		{"admin permission whose description holds the marker among other words", func(v realmView) {
			p := v.policies["community:NDD:owners"]
			p.Description = "copied from " + markerDescription(ndd.ID)
			v.policies["community:NDD:owners"] = p
		}, []string{"admin permission community:NDD:owners: exists but is not this community's"}},
		{"owners' policy naming the consumers too", func(v realmView) {
			p := v.policies["community:NDD:owners"]
			p.Groups = []string{"/Communities/NDD/owner", "/Communities/NDD/consumer"}
			v.policies["community:NDD:owners"] = p
		}, []string{"admin permission community:NDD:owners: " + problemChanged +
			`groups ["/Communities/NDD/consumer" "/Communities/NDD/owner"], not ["/Communities/NDD/owner"]`}},
		// Keycloak's doing when role:service-desk is deleted, to every
		// community at once: shared, for MendShared, not a suspect.
		{"aggregate without role:service-desk, deleted and made again", func(v realmView) {
			p := v.policies["community:NDD:membership-admins"]
			p.Policies = []string{"community:NDD:owners"}
			v.policies["community:NDD:membership-admins"] = p
		}, []string{"shared admin permission community:NDD:membership-admins: " + problemChanged +
			`policies ["community:NDD:owners"], not ["community:NDD:owners" "role:service-desk"]`}},
		// Keycloak's doing when community-owner is deleted (and made
		// again), to every community at once: shared too.
		{"owner group without community-owner", func(v realmView) {
			g := v.groups["/Communities/NDD/owner"]
			g.RealmRoles = &[]string{}
			v.groups["/Communities/NDD/owner"] = g
		}, []string{"shared role mapping /Communities/NDD/owner → community-owner: missing"}},
		{"owner group without community-owner, and its aggregate without role:service-desk", func(v realmView) {
			g := v.groups["/Communities/NDD/owner"]
			g.RealmRoles = &[]string{}
			v.groups["/Communities/NDD/owner"] = g
			p := v.policies["community:NDD:membership-admins"]
			p.Policies = []string{"community:NDD:owners"}
			v.policies["community:NDD:membership-admins"] = p
		}, []string{"shared role mapping /Communities/NDD/owner → community-owner: missing",
			"shared admin permission community:NDD:membership-admins: " + problemChanged +
				`policies ["community:NDD:owners"], not ["community:NDD:owners" "role:service-desk"]`}},
		// (Survey makes such a community a suspect, with both.)
		{"owner group without community-owner, and another role in its place", func(v realmView) {
			g := v.groups["/Communities/NDD/owner"]
			g.RealmRoles = &[]string{"PERM_NDD_WRITE"}
			v.groups["/Communities/NDD/owner"] = g
		}, []string{"role mapping /Communities/NDD/owner → PERM_NDD_WRITE: " + problemGranted,
			"shared role mapping /Communities/NDD/owner → community-owner: missing"}},
		{"aggregate without role:service-desk, and something else wrong", func(v realmView) {
			p := v.policies["community:NDD:membership-admins"]
			p.Policies = []string{"community:NDD:owners"}
			v.policies["community:NDD:membership-admins"] = p
			delete(v.roles, "PERM_NDD_WRITE")
		}, []string{"realm role PERM_NDD_WRITE: missing", "shared admin permission community:NDD:membership-admins: " + problemChanged +
			`policies ["community:NDD:owners"], not ["community:NDD:owners" "role:service-desk"]`}},
		{"aggregate without role:service-desk and changed otherwise is not shared", func(v realmView) {
			p := v.policies["community:NDD:membership-admins"]
			p.Policies, p.DecisionStrategy = []string{"community:NDD:owners"}, "UNANIMOUS"
			v.policies["community:NDD:membership-admins"] = p
		}, []string{"admin permission community:NDD:membership-admins: " + problemChanged +
			`decision strategy "UNANIMOUS", not "AFFIRMATIVE"; policies ["community:NDD:owners"], not ["community:NDD:owners" "role:service-desk"]`}},
		{"aggregate naming another policy in the place of role:service-desk", func(v realmView) {
			p := v.policies["community:NDD:membership-admins"]
			p.Policies = []string{"community:NDD:owners", "role:community-admins"}
			v.policies["community:NDD:membership-admins"] = p
		}, []string{"admin permission community:NDD:membership-admins: " + problemChanged +
			`policies ["community:NDD:owners" "role:community-admins"], not ["community:NDD:owners" "role:service-desk"]`}},
		{"aggregate naming nothing: its owners' policy gone too", func(v realmView) {
			p := v.policies["community:NDD:membership-admins"]
			p.Policies = []string{}
			v.policies["community:NDD:membership-admins"] = p
		}, []string{"admin permission community:NDD:membership-admins: " + problemChanged +
			`policies [], not ["community:NDD:owners" "role:service-desk"]`}},
		{"membership permission widened to every group", func(v realmView) {
			p := v.policies["community:NDD:membership"]
			p.Resources, p.Scopes = []string{"Groups"}, []string{"manage-membership", "manage-members"}
			v.policies["community:NDD:membership"] = p
		}, []string{"admin permission community:NDD:membership: " + problemChanged +
			`scopes ["manage-members" "manage-membership"], not ["manage-membership"]; ` +
			`resources ["Groups"], not ["group /Communities/NDD/author" "group /Communities/NDD/consumer" "group /Communities/NDD/owner"]`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := healthy(ndd)
			c.spoil(v)
			if got := compared(v, ndd); !slices.Equal(got, c.want) {
				t.Errorf("drift %q, want %q", got, c.want)
			}
		})
	}
	// Admin permissions off are the realm's drift, said once by Survey:
	// once, they made every community a suspect, each confirmed in its
	// own calls on every pass.
	v := healthy(ndd)
	v.policies = nil
	if got := compared(v, ndd); len(got) != 0 {
		t.Errorf("permissions off: %q, want no drift of the community's", got)
	}
}

// TestSurveyPagesAndRests: a pass reads the groups under the root and the
// markers on roles and permissions, then the communities 500 at a time, each once, asking for the roles and
// policies Describe names; after each call it rests four times as long as
// the call took; and a read-only client may make it.
func TestSurveyPagesAndRests(t *testing.T) {
	const took = 20 * time.Millisecond
	var (
		mu    sync.Mutex
		pages []surveyPage
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
			return
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+groupsPath:
			fmt.Fprint(w, `[{"name":"HAND","path":"/Communities/HAND","attributes":{}},
				{"name":"TWICE","path":"/Communities/TWICE","attributes":{"`+MarkerAttribute+`":["m5","m6"]}}]`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+markedPath:
			if q := r.URL.Query(); q.Get("attribute") != MarkerAttribute || q.Get("policyPrefix") != policyPrefix {
				t.Errorf("marked asked for %v", q)
			}
			// Two of a community's names, and two that are no community's.
			fmt.Fprint(w, `{"roles":[{"name":"PERM_GONE_READ","marker":"m1"},{"name":"FHIR_READ","marker":"m2"},
				{"name":"PERM_TWICE_READ","marker":"m5"},{"name":"PERM_TWICE_READ","marker":"m6"}],
				"adminPermissions":true,"policies":[{"name":"community:LOST:owners","description":"`+MarkerAttribute+`=m3"},
				{"name":"role:service-desk","description":"`+MarkerAttribute+`=m4"},{"name":"community:HAND:view","description":"by hand"}]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			fmt.Fprint(w, storedRealmPolicies(`["service-desk"]`))
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+surveyPath:
			var p surveyPage
			if err := json.UnmarshalRead(r.Body, &p); err != nil {
				t.Error(err)
			}
			mu.Lock()
			pages = append(pages, p)
			mu.Unlock()
			fmt.Fprint(w, `{"roles":[],"groups":[],"adminPermissions":true,"policies":[],"clientScopes":[]}`)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		time.Sleep(took)
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ReadOnly: true, ServiceDeskRole: "service-desk"})

	var specs []community.Spec
	for i := range 1201 {
		specs = append(specs, community.Spec{ID: fmt.Sprint(i), Realm: "r", Root: "Communities", Label: fmt.Sprintf("L%04d", 1200-i), Name: "n"})
	}
	start := time.Now()
	got, err := c.Survey(context.Background(), "r", "Communities", specs)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// A group or role with two markers is nobody's: no orphan of either.
	if want := []community.Orphan{{Label: "HAND"}, {Label: "TWICE"}}; !slices.Equal(got.Groups, want) {
		t.Errorf("groups under the root: %+v, want %+v", got.Groups, want)
	}
	wantMarked := []community.Orphan{{Label: "GONE", ID: "m1", Artefact: "realm role PERM_GONE_READ"},
		{Label: "LOST", ID: "m3", Artefact: "admin permission community:LOST:owners"}}
	if !slices.Equal(got.Marked, wantMarked) {
		t.Errorf("marked: %+v, want %+v", got.Marked, wantMarked)
	}
	if got.Realm != nil {
		t.Errorf("realm drift %v with admin permissions on", got.Realm)
	}
	if len(got.Suspects) != len(specs) { // the fake holds none of them
		t.Errorf("%d suspects, want %d", len(got.Suspects), len(specs))
	}
	if len(pages) != 3 {
		t.Fatalf("%d pages, want 3", len(pages))
	}
	byLabel := map[string]community.Spec{}
	for _, s := range specs {
		byLabel[s.Label] = s
	}
	seen := map[string]int{}
	for i, p := range pages {
		if len(p.Labels) > surveyPageSize || !slices.IsSorted(p.Labels) || p.Root != "Communities" || p.Attribute != MarkerAttribute {
			t.Errorf("page %d: %d labels (sorted %v), root %q, attribute %q", i, len(p.Labels), slices.IsSorted(p.Labels), p.Root, p.Attribute)
		}
		var roles, policies []string
		for _, l := range p.Labels {
			seen[l]++
			d := Describe(byLabel[l])
			roles = append(append(roles, d.RoleNames()...), d.Legacy.Roles...)
			for _, pol := range d.Policies {
				policies = append(policies, pol.Name)
			}
		}
		if !slices.Equal(p.Roles, roles) || !slices.Equal(p.Policies, policies) {
			t.Errorf("page %d asks for %d roles and %d policies, want Describe's %d and %d", i, len(p.Roles), len(p.Policies), len(roles), len(policies))
		}
	}
	for _, s := range specs {
		if seen[s.Label] != 1 {
			t.Errorf("label %s read %d times, want once", s.Label, seen[s.Label])
		}
	}
	// Five calls of at least 20 ms; a rest of at least 80 ms before each
	// of the three pages. Timers never fire early, so this cannot flake.
	if min := 5*took + 3*4*took; elapsed < min {
		t.Errorf("the pass took %v, less than its calls and rests (%v)", elapsed, min)
	}
}
