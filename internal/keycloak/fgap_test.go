package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// TestOnlyARepairSwitchesAdminPermissionsOn: a check that only reports
// (the server's periodic drift check, plan) leaves a realm whose admin
// permissions an operator switched off as it is, and says so; a repair
// switches them on (the review of 2026-11-24 found every check doing it).
func TestOnlyARepairSwitchesAdminPermissionsOn(t *testing.T) {
	var (
		mu   sync.Mutex
		puts int
		on   bool
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r" && on:
			fmt.Fprint(w, `{"adminPermissionsEnabled":true,"adminPermissionsClient":{"id":"perm"}}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r":
			fmt.Fprint(w, `{"adminPermissionsEnabled":false}`)
		case r.Method == http.MethodPut && r.URL.Path == "/admin/realms/r":
			puts++
			on = true
			w.WriteHeader(http.StatusNoContent)
		default:
			fmt.Fprint(w, `[]`)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "NDD", Name: "n"}
	var noted []string
	err := c.ensureOwnerPermissions(context.Background(), "t", s, Describe(s), community.Artifacts{}, false, false,
		func(what, problem string, _ bool) { noted = append(noted, what+": "+problem) }, nil)
	if err != nil || puts != 0 || !slices.Equal(noted, []string{"admin permissions of realm r: not enabled"}) {
		t.Errorf("a check: %v, %d PUTs of the realm, noted %q", err, puts, noted)
	}
	if _, err := c.permissionsBase(context.Background(), "t", "r", false); !errors.Is(err, errPermissionsOff) || puts != 0 {
		t.Errorf("without enable: %v, %d PUTs", err, puts)
	}
	base, err := c.permissionsBase(context.Background(), "t", "r", true)
	if err != nil || puts != 1 || base != "r/clients/perm/authz/resource-server" {
		t.Errorf("a repair: %q %v, %d PUTs", base, err, puts)
	}
}

// storedPolicy is what the extension's GET policies answers for p as a
// create makes it for the community of d, with id.
func storedPolicy(d Desired, p PolicySpec, id string) policyContent {
	c := policyContent{ID: id, Name: p.Name, Description: p.Description, Type: p.Kind, Logic: "POSITIVE",
		DecisionStrategy: "UNANIMOUS", ResourceType: p.ResourceType, Roles: []string{}, ClientRoles: []string{},
		Groups: []string{}, Policies: slices.Clone(p.Policies), Scopes: slices.Clone(p.Scopes), Resources: []string{}}
	if p.Strategy != "" {
		c.DecisionStrategy = p.Strategy
	}
	for _, m := range p.Groups {
		c.Groups = append(c.Groups, d.groupPath(m))
	}
	for _, m := range p.Resources {
		c.Resources = append(c.Resources, "group "+d.groupPath(m))
	}
	return c
}

// healthyPolicies are the realm-wide policies and d's own, as the
// extension answers them for a realm where nothing was changed.
func healthyPolicies(t *testing.T, d Desired) map[string]policyContent {
	t.Helper()
	var realmWide struct{ Policies []policyContent }
	if err := json.Unmarshal([]byte(storedRealmPolicies(`["service-desk"]`)), &realmWide); err != nil {
		t.Fatal(err)
	}
	stored := map[string]policyContent{}
	for _, p := range realmWide.Policies {
		stored[p.Name] = p
	}
	for i, p := range d.Policies {
		stored[p.Name] = storedPolicy(d, p, fmt.Sprint("p", i))
	}
	return stored
}

// fakePermissionsBase is the fake realm r's admin-permissions path.
const fakePermissionsBase = "/admin/realms/r/clients/perms/authz/resource-server"

// fakePermissions is realm r with its admin permissions on: it answers
// the service's login, the realm, and the extension's GET policies from
// stored (each read also goes to read, if given), under mu; every other
// request goes to other, under mu too.
func fakePermissions(mu *sync.Mutex, stored map[string]policyContent, read func(names []string), other http.HandlerFunc) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r":
			fmt.Fprint(w, `{"adminPermissionsEnabled":true,"adminPermissionsClient":{"id":"perms"}}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			names := r.URL.Query()["name"]
			if read != nil {
				read(names)
			}
			out := []policyContent{}
			for _, n := range names {
				if p, ok := stored[n]; ok {
					out = append(out, p)
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"adminPermissions": true, "policies": out})
		default:
			other(w, r)
		}
	}))
}

// TestChangedOwnPoliciesAreReportedAndRepaired: a community's own admin
// policies were checked by name and marker only, so one changed to name
// another group, or an aggregate that lost role:service-desk when someone
// deleted it (Keycloak takes a deleted policy out of those that name it),
// passed every check. They are now read in one call by exact name (a
// label's "_" once matched any character in Keycloak's name search) and
// compared with Describe: a check reports what grants otherwise as
// critical and changes nothing; a repair PUTs each back, leaves one whose
// type was changed to an administrator, and reads them back; someone
// else's is never touched.
func TestChangedOwnPoliciesAreReportedAndRepaired(t *testing.T) {
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "A_B", Name: "n"}
	d := Describe(s)
	owners, admins, view, membership := fgapNames(s.Label)
	var (
		mu     sync.Mutex
		stored = healthyPolicies(t, d)
		puts   = map[string]map[string]any{}
		reads  int
	)
	o := stored[owners]
	o.Groups = append(o.Groups, "/Communities/A_B/consumer")
	stored[owners] = o
	a := stored[admins]
	a.Policies = []string{owners}
	stored[admins] = a
	v := stored[view]
	v.Type = "resource"
	stored[view] = v
	m := stored[membership]
	m.Description = markerDescription("someone-else")
	m.Scopes = []string{"manage-membership", "manage-members"}
	stored[membership] = m
	read := func(names []string) {
		if names[0] == owners {
			reads++
			if want := []string{owners, admins, view, membership}; !slices.Equal(names, want) {
				t.Errorf("asked for %q, want %q", names, want)
			}
		}
	}
	kc := fakePermissions(&mu, stored, read, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, fakePermissionsBase+"/") {
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Error(err)
		}
		puts[strings.TrimPrefix(r.URL.Path, fakePermissionsBase)] = body
		name, _ := body["name"].(string)
		stored[name] = storedPolicy(d, d.Policies[slices.IndexFunc(d.Policies, func(p PolicySpec) bool { return p.Name == name })],
			stored[name].ID)
		w.WriteHeader(http.StatusCreated)
	})
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"})
	ga := community.Artifacts{GroupID: "g", OwnerGroupID: "g-owner", AuthorGroupID: "g-author", ConsumerGroupID: "g-consumer"}
	ensure := func(repair bool) []string {
		t.Helper()
		var got []string
		note := func(critical bool) func(string, string, bool) {
			return func(what, problem string, repaired bool) {
				got = append(got, fmt.Sprintf("%s: %s (critical %v, repaired %v)", what, problem, critical, repaired))
			}
		}
		mu.Lock()
		reads = 0
		mu.Unlock()
		if err := c.ensureOwnerPermissions(t.Context(), "t", s, d, ga, repair, false, note(false), note(true)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	changed := func(name, problem string, critical, repaired bool) string {
		return fmt.Sprintf("admin permission %s: %s%s (critical %v, repaired %v)", name, problemChanged, problem, critical, repaired)
	}
	// Someone else's, never touched, but widened: the community's own
	// permissions may name it.
	foreign := "admin permission " + membership + ": " + problemForeign + ", and " + problemChanged +
		`scopes ["manage-members" "manage-membership"], not ["manage-membership"] (critical true, repaired false)`
	ownersProblem := `groups ["/Communities/A_B/consumer" "/Communities/A_B/owner"], not ["/Communities/A_B/owner"]`
	adminsProblem := `policies ["community:A_B:owners"], not ["community:A_B:owners" "role:service-desk"]`
	viewProblem := `type "resource", not "scope"`
	// The aggregate without role:service-desk grants less: not critical.
	want := []string{foreign, changed(owners, ownersProblem, true, false), changed(admins, adminsProblem, false, false),
		changed(view, viewProblem, true, false)}
	if got := ensure(false); !slices.Equal(got, want) || len(puts) != 0 || reads != 1 {
		t.Errorf("a check:\n%s\nwant\n%s\n(%d PUTs, %d reads of the community's policies, want none and 1)",
			strings.Join(got, "\n"), strings.Join(want, "\n"), len(puts), reads)
	}
	want = []string{foreign, changed(owners, ownersProblem, true, true), changed(admins, adminsProblem, false, true),
		changed(view, viewProblem+problemByHand, true, false)}
	if got := ensure(true); !slices.Equal(got, want) || reads != 2 {
		t.Errorf("a repair:\n%s\nwant\n%s\n(%d reads of the community's policies, want 2: before and after)",
			strings.Join(got, "\n"), strings.Join(want, "\n"), reads)
	}
	if got := fmt.Sprint(puts["/policy/group/p0"]["groups"]); got != "[map[extendChildren:false id:g-owner]]" {
		t.Errorf("the owners' policy was sent naming %s, want the owner group alone", got)
	}
	if got := fmt.Sprint(puts["/policy/aggregate/p1"]["policies"]); got != "[community:A_B:owners role:service-desk]" {
		t.Errorf("the aggregate was sent naming %s, want the owners' policy and role:service-desk", got)
	}
	if len(puts) != 2 {
		t.Errorf("%d PUTs (%v), want the two whose type is unchanged, never someone else's", len(puts), slices.Collect(maps.Keys(puts)))
	}
}

// TestMissingAndChangedOwnPoliciesAreMadeAgain: with the owners' policy
// deleted, Keycloak leaves the aggregate naming role:service-desk alone.
// Putting the aggregate back first fails (it names a policy that does not
// exist) and making the owners' policy first meets nothing to verify, so
// a repair that did one or the other failed on every pass. It now removes
// the community's own ones and makes all four again.
func TestMissingAndChangedOwnPoliciesAreMadeAgain(t *testing.T) {
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "NDD", Name: "n"}
	d := Describe(s)
	owners, admins, _, _ := fgapNames(s.Label)
	var (
		mu     sync.Mutex
		stored = healthyPolicies(t, d)
		calls  []string
	)
	delete(stored, owners)
	a := stored[admins]
	a.Policies = []string{policyServiceDesk}
	stored[admins] = a
	kc := fakePermissions(&mu, stored, nil, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, fakePermissionsBase+"/policy/"):
			calls = append(calls, "DELETE "+strings.TrimPrefix(r.URL.Path, fakePermissionsBase))
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, fakePermissionsBase+"/"):
			var body map[string]any
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Error(err)
			}
			calls = append(calls, fmt.Sprintf("POST %s %v", strings.TrimPrefix(r.URL.Path, fakePermissionsBase), body["name"]))
			w.WriteHeader(http.StatusCreated)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	})
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"})
	ga := community.Artifacts{GroupID: "g", OwnerGroupID: "g-owner", AuthorGroupID: "g-author", ConsumerGroupID: "g-consumer"}
	var got []string
	note := func(what, problem string, repaired bool) {
		got = append(got, fmt.Sprintf("%s: %s (repaired %v)", what, problem, repaired))
	}
	if err := c.ensureOwnerPermissions(t.Context(), "t", s, d, ga, true, false, note, note); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"admin permission community:NDD:owners: missing (repaired true)",
		"admin permission community:NDD:membership-admins: " + problemChanged +
			`policies ["role:service-desk"], not ["community:NDD:owners" "role:service-desk"] (repaired true)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("reported\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantCalls := []string{"DELETE /policy/p3", "DELETE /policy/p2", "DELETE /policy/p1",
		"POST /policy/group community:NDD:owners", "POST /policy/aggregate community:NDD:membership-admins",
		"POST /permission/scope community:NDD:view", "POST /permission/scope community:NDD:membership"}
	if !slices.Equal(calls, wantCalls) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(wantCalls, "\n"))
	}
}

// TestAdminPermissionsAreReadAgainAfterAMinute: a replica that found a
// realm's admin permissions on takes them as on for permissionsFresh, one
// read of the realm for every create meanwhile, and then reads again, so
// that one switched off is seen by the next create within a minute where
// it was seen only by the replica's drift pass or a restart.
func TestAdminPermissionsAreReadAgainAfterAMinute(t *testing.T) {
	var (
		mu    sync.Mutex
		reads int
		on    = true
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r":
			reads++
			fmt.Fprintf(w, `{"adminPermissionsEnabled":%v,"adminPermissionsClient":{"id":"perms"}}`, on)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	cl.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		if base, err := cl.permissionsBase(ctx, "t", "r", false); err != nil || base != "r/clients/perms/authz/resource-server" {
			t.Fatalf("permissions on: %q, %v", base, err)
		}
	}
	readsNow := func() int { mu.Lock(); defer mu.Unlock(); return reads }
	if n := readsNow(); n != 1 {
		t.Errorf("three lookups within the minute read the realm %d times, want 1", n)
	}
	mu.Lock()
	on = false
	mu.Unlock()
	now = now.Add(permissionsFresh - time.Second)
	if _, err := cl.permissionsBase(ctx, "t", "r", false); err != nil {
		t.Errorf("within the minute, the permissions as found: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := cl.permissionsBase(ctx, "t", "r", false); !errors.Is(err, errPermissionsOff) {
		t.Errorf("a minute after they were found, permissions switched off: %v, want errPermissionsOff", err)
	}
	if n := readsNow(); n != 2 {
		t.Errorf("the realm read %d times, want 2", n)
	}
}

// storedRealmPolicies is what the extension's GET policies answered for a
// realm's realm-wide admin permissions as the service makes them (read on
// Keycloak 26.7.3): a permission on all users is on the resource named
// "Users".
func storedRealmPolicies(serviceDeskRoles string) string {
	return `{"adminPermissions":true,"policies":[
	{"id":"p1","name":"role:community-admins","type":"role","logic":"POSITIVE","decisionStrategy":"UNANIMOUS","resourceType":"",
	 "roles":["community-owner","service-desk"],"groups":[],"policies":[],"scopes":[],"resources":[]},
	{"id":"p2","name":"role:service-desk","type":"role","logic":"POSITIVE","decisionStrategy":"UNANIMOUS","resourceType":"",
	 "roles":` + serviceDeskRoles + `,"groups":[],"policies":[],"scopes":[],"resources":[]},
	{"id":"p3","name":"users:community-admins","type":"scope","logic":"POSITIVE","decisionStrategy":"UNANIMOUS","resourceType":"Users",
	 "roles":[],"groups":[],"policies":["role:community-admins"],"scopes":["manage-group-membership","view"],"resources":["Users"]},
	{"id":"p4","name":"groups:communities-root","type":"scope","logic":"POSITIVE","decisionStrategy":"UNANIMOUS","resourceType":"Groups",
	 "roles":[],"groups":[],"policies":["role:community-admins"],"scopes":["view"],"resources":["group /Communities"]}]}`
}

// answerRealm answers what a repair of the realm-wide policies looks up
// before it writes, and reports whether r was one of those: an admin
// token, realm r with its admin permissions on (client "perms"), the root
// group, and the realm roles OwnerRole (of id ownerID) and service-desk.
func answerRealm(w http.ResponseWriter, r *http.Request, ownerID string) bool {
	get := func(path string) bool { return r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+path }
	switch {
	case r.URL.Path == "/realms/r/protocol/openid-connect/token":
		fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
	case get(""):
		fmt.Fprint(w, `{"adminPermissionsEnabled":true,"adminPermissionsClient":{"id":"perms"}}`)
	case get("/group-by-path/Communities"):
		fmt.Fprint(w, `{"id":"root","name":"Communities","path":"/Communities"}`)
	case get("/roles/" + OwnerRole):
		fmt.Fprint(w, `{"id":"`+ownerID+`","name":"`+OwnerRole+`"}`)
	case get("/roles/service-desk"):
		fmt.Fprint(w, `{"id":"sd-id","name":"service-desk"}`)
	default:
		return false
	}
	return true
}

// TestChangedRealmPoliciesAreRefusedAndRepaired: the realm-wide policies every
// community's permissions name were taken as found by name, and never
// checked again. One that names another role (here every user's default
// roles) gave its holders every community's membership management. Now a
// create refuses to build on it (a conflict, checked again by the next
// create), a check reports it as critical, and a repair makes it name the
// service-desk role again.
func TestChangedRealmPoliciesAreRefusedAndRepaired(t *testing.T) {
	var (
		mu    sync.Mutex
		roles = `["default-roles-r"]`
		put   map[string]any
		off   bool
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		base := "/admin/realms/r/clients/perms/authz/resource-server"
		switch {
		case answerRealm(w, r, "owner-id"):
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, base+"/"):
			w.WriteHeader(http.StatusConflict) // all four exist
			fmt.Fprint(w, `{"errorMessage":"Policy with name [x] already exists"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			if got := r.URL.Query()["name"]; len(got) != 4 {
				t.Errorf("asked for %q, want the 4 realm-wide names", got)
			}
			if off {
				fmt.Fprint(w, `{"adminPermissions":false,"policies":[]}`)
				return
			}
			fmt.Fprint(w, storedRealmPolicies(roles))
		case r.Method == http.MethodPut && r.URL.Path == base+"/policy/role/p2":
			if err := json.NewDecoder(r.Body).Decode(&put); err != nil {
				t.Error(err)
			}
			roles = `["service-desk"]`
			w.WriteHeader(http.StatusCreated)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"})
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := t.Context()

	for range 2 {
		if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); !errors.Is(err, fault.Conflict) ||
			!strings.Contains(err.Error(), `role:service-desk `+problemChanged+`roles ["default-roles-r"], not ["service-desk"]`) {
			t.Errorf("a create on a changed role:service-desk: %v, want a conflict naming it", err)
		}
	}
	want := community.Drift{What: "admin permission role:service-desk",
		Problem: problemChanged + `roles ["default-roles-r"], not ["service-desk"]`, Critical: true}
	if got, err := c.EnsureRealm(ctx, "r", "Communities", false); err != nil || !slices.Equal(got, []community.Drift{want}) {
		t.Errorf("a check: %+v %v, want %+v", got, err, want)
	}
	if put != nil {
		t.Errorf("a check changed the policy: %v", put)
	}
	want.Repaired = true
	if got, err := c.EnsureRealm(ctx, "r", "Communities", true); err != nil || !slices.Equal(got, []community.Drift{want}) {
		t.Errorf("a repair: %+v %v, want %+v", got, err, want)
	}
	if fmt.Sprintf("%v %v", put["id"], put["roles"]) != "p2 [map[id:sd-id required:false]]" {
		t.Errorf("the repair sent %v, want role:service-desk naming the service-desk role alone", put)
	}
	if got, err := c.EnsureRealm(ctx, "r", "Communities", false); err != nil || len(got) != 0 {
		t.Errorf("after the repair: %+v %v", got, err)
	}
	if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); err != nil {
		t.Errorf("a create after the repair: %v", err)
	}

	// Changed again after a create: creates trust what they found for a
	// minute, then read it again.
	mu.Lock()
	roles = `["default-roles-r"]`
	mu.Unlock()
	now = now.Add(permissionsFresh - time.Second)
	if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); err != nil {
		t.Errorf("a create within the minute: %v", err)
	}
	now = now.Add(time.Second)
	if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); !errors.Is(err, fault.Conflict) {
		t.Errorf("a create a minute later, on a changed role:service-desk: %v, want a conflict", err)
	}
	// Read as off (switched off since the realm was read): nothing is
	// taken as checked.
	mu.Lock()
	roles, off = `["service-desk"]`, true
	mu.Unlock()
	if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); !errors.Is(err, errPermissionsOff) {
		t.Errorf("a create while the policies read as off: %v, want errPermissionsOff", err)
	}
	mu.Lock()
	off = false
	mu.Unlock()
	if _, err := c.ensureRealmPermissions(ctx, "t", "r", "Communities"); err != nil {
		t.Errorf("a create once they read as on again: %v", err)
	}
}

// TestOwnPoliciesWaitForTheRealmWideOnes: role:service-desk deleted and
// made again by hand as a policy of another type (naming whom it likes).
// A repair cannot change a type back, and left it; it then put it back
// into the community's aggregate by name, so whoever the new policy names
// could manage the community's membership. The community's own now wait,
// reported, until an administrator mends the realm-wide one.
func TestOwnPoliciesWaitForTheRealmWideOnes(t *testing.T) {
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "NDD", Name: "n"}
	d := Describe(s)
	_, admins, _, _ := fgapNames(s.Label)
	var (
		mu     sync.Mutex
		stored = healthyPolicies(t, d)
		writes []string
	)
	sd := stored[policyServiceDesk]
	sd.Type, sd.Roles = "user", []string{}
	stored[policyServiceDesk] = sd
	a := stored[admins]
	a.Policies = linkedBefore(d.Policies[1])
	stored[admins] = a
	kc := fakePermissions(&mu, stored, nil, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/group-by-path/Communities":
			fmt.Fprint(w, `{"id":"root","name":"Communities","path":"/Communities"}`)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/admin/realms/r/roles/"):
			name := strings.TrimPrefix(r.URL.Path, "/admin/realms/r/roles/")
			fmt.Fprintf(w, `{"id":"role-%s","name":%q}`, name, name)
		default:
			writes = append(writes, r.Method+" "+r.URL.Path)
			w.WriteHeader(http.StatusCreated)
		}
	})
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"})
	ga := community.Artifacts{GroupID: "g", OwnerGroupID: "g-owner", AuthorGroupID: "g-author", ConsumerGroupID: "g-consumer"}
	var got []string
	note := func(what, problem string, repaired bool) {
		got = append(got, fmt.Sprintf("%s (repaired %v)", what, repaired))
	}
	if err := c.ensureOwnerPermissions(t.Context(), "t", s, d, ga, true, false, note, note); err != nil {
		t.Fatal(err)
	}
	want := []string{"admin permission role:service-desk (repaired false)", "admin permission " + admins + " (repaired false)"}
	if !slices.Equal(got, want) || len(writes) != 0 {
		t.Errorf("a repair beside a realm-wide policy of another type: %q, writes %q; want %q and none", got, writes, want)
	}
}

// TestRealmRepairLooksTheOwnerRoleUpAgain: community-owner deleted and
// made again by hand has a new id, and role:community-admins names the old
// one. The repair took the id from the cache this process filled before,
// wrote the old id, and reported the policy left as it was. It now looks
// the role up.
func TestRealmRepairLooksTheOwnerRoleUpAgain(t *testing.T) {
	var (
		mu      sync.Mutex
		ownerID = "owner-old"
		admins  = `["?owner-old","service-desk"]`
		put     map[string]any
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		base := "/admin/realms/r/clients/perms/authz/resource-server"
		switch {
		case answerRealm(w, r, ownerID):
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			fmt.Fprint(w, strings.Replace(storedRealmPolicies(`["service-desk"]`), `"roles":["community-owner","service-desk"]`, `"roles":`+admins, 1))
		case r.Method == http.MethodPut && r.URL.Path == base+"/policy/role/p1":
			if err := json.NewDecoder(r.Body).Decode(&put); err != nil {
				t.Error(err)
			}
			// Keycloak names a role it knows by its name.
			if fmt.Sprint(put["roles"]) == "[map[id:owner-new required:false] map[id:sd-id required:false]]" {
				admins = `["community-owner","service-desk"]`
			}
			w.WriteHeader(http.StatusCreated)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"})
	ctx := t.Context()
	// The process cached the role's id before it was deleted and made again.
	if _, err := c.ownerRole(ctx, "t", "r"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ownerID = "owner-new"
	mu.Unlock()
	got, err := c.EnsureRealm(ctx, "r", "Communities", true)
	if err != nil || len(got) != 1 || got[0].What != "admin permission role:community-admins" || !got[0].Repaired {
		t.Errorf("a repair: %+v %v, want role:community-admins repaired", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(put["roles"]) != "[map[id:owner-new required:false] map[id:sd-id required:false]]" {
		t.Errorf("the repair named %v, want the new %s and service-desk", put["roles"], OwnerRole)
	}
}
