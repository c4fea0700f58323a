package integration

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/test/harness"
)

// faultyFixture is a parallel test's realm and a service whose Keycloak
// calls go through a fault-injecting transport, with the communities URL
// and a service-desk token.
func faultyFixture(t *testing.T) (*harness.Realm, *harness.Service, *harness.FaultTransport, string, string) {
	t.Helper()
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	faults := &harness.FaultTransport{}
	svc := env.StartServiceVia(t, env.Config(realm.Name), faults)
	return realm, svc, faults, svc.URL + "/realms/" + realm.Name + "/communities",
		realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
}

// TestKeycloakFailsAtEachStepOfCreate makes Keycloak fail at every
// mutating step of a create in turn. Each time the caller gets 503, and
// nothing is left: no artefact in Keycloak, no registry row.
func TestKeycloakFailsAtEachStepOfCreate(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)

	// Warm up: the root group exists afterwards, so every create below
	// takes the same steps.
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "WARM", "communityName": "Warm"}).Expect(t, 201)
	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "COUNT", "communityName": "Count"}).Expect(t, 201)
	steps, _ := faults.Counts()
	// The extension's one-transaction create and the four admin
	// permissions.
	if steps != 5 {
		t.Fatalf("a create made %d mutating calls, want 5", steps)
	}

	orphans, absorbed := 0, 0
	for step := 1; step <= steps; step++ {
		faults.Arm(step, false)
		resp := harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "FLAKY", "communityName": "Flaky"})
		left := realm.Artefacts(t, "Communities", "FLAKY")
		row, rowErr := svc.Store.Get(context.Background(), realm.Name, "flaky")
		switch resp.Status {
		case http.StatusServiceUnavailable:
			orphans += len(left)
			if len(left) > 0 {
				t.Errorf("fault at step %d left %v", step, left)
			}
			if rowErr != community.ErrNoRecord {
				t.Errorf("fault at step %d left registry row %+v (%v)", step, row, rowErr)
			}
			// The cause stays in the log; callers get a stable message.
			if strings.Contains(string(resp.Body), "injected fault") || strings.Contains(string(resp.Body), "connection refused") {
				t.Errorf("fault at step %d: problem detail passes Keycloak's error on: %s", step, resp.Body)
			}
		case http.StatusCreated:
			// A repeatable call (PUT) was retried past the fault: the
			// create is whole.
			absorbed++
			if len(left) != 6 || rowErr != nil || row.State != community.StateActive {
				t.Errorf("fault at step %d absorbed, but artefacts %v, row %+v %v", step, left, row, rowErr)
			}
			faults.Arm(0, false)
			harness.Do(t, "DELETE", base+"/FLAKY", sd, nil).Expect(t, 204)
		default:
			t.Fatalf("step %d: %s, want 503 (or 201 when a retry absorbed the fault)", step, resp)
		}
	}
	_, injected := faults.Counts()
	t.Logf("create: %d steps, %d faults injected, %d absorbed by retries, %d orphans found", steps, injected, absorbed, orphans)
	// Every mutating step of a create is a POST (service desk's community
	// is dormant: no owner membership), and a POST is never retried.
	if absorbed > 0 {
		t.Errorf("%d faults absorbed: a POST must never be retried", absorbed)
	}

	// With Keycloak healthy again the same create succeeds.
	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "FLAKY", "communityName": "Flaky"}).Expect(t, 201)
}

// TestKeycloakRefusalIsNotUnavailable: a 4xx from Keycloak once became
// "503, retry", which retrying never fixes. It is 502, names no internals,
// and the create is undone.
func TestKeycloakRefusalIsNotUnavailable(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "WARM", "communityName": "Warm"}).Expect(t, 201)
	faults.Refuse = true
	faults.Arm(2, false) // the first admin permission, after the roles and groups were made
	resp := harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "REFUSED", "communityName": "Refused"}).Expect(t, 502)
	harness.ConformsToOpenAPI(t, "POST", base, resp)
	if strings.Contains(string(resp.Body), "injected") || resp.Header.Get("Retry-After") != "" {
		t.Errorf("a refusal answered as unavailable or with Keycloak's text: %s %v", resp.Body, resp.Header)
	}
	if left := realm.Artefacts(t, "Communities", "REFUSED"); len(left) > 0 {
		t.Errorf("the refused create left %v", left)
	}
	if _, err := svc.Store.Get(context.Background(), realm.Name, "refused"); err != community.ErrNoRecord {
		t.Errorf("the refused create left its registry row (%v)", err)
	}
}

// TestUndoThatFailsIsFinishedByRecovery: Keycloak goes away mid-create and
// stays away, so the undo fails too. The row is kept as failed (the label
// stays reserved) and recovery undoes the create once Keycloak is back.
func TestUndoThatFailsIsFinishedByRecovery(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	ctx := context.Background()

	faults.Arm(6, true)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "DOWN", "communityName": "Down"}).Expect(t, 503)
	row, err := svc.Store.Get(ctx, realm.Name, "down")
	if err != nil || row.State != community.StateFailed {
		t.Fatalf("row after failed undo: %+v %v", row, err)
	}
	if left := realm.Artefacts(t, "Communities", "DOWN"); len(left) == 0 {
		t.Fatal("expected the half-made create to be left in Keycloak while it is down")
	}
	// The label stays reserved until recovery has cleaned up.
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "down", "communityName": "Down again"}).Expect(t, 409)
	// Invisible meanwhile.
	harness.Do(t, "GET", base+"/DOWN", sd, nil).Expect(t, 404)

	faults.Arm(0, false)
	svc.Server.RecoverOnce(ctx)
	if left := realm.Artefacts(t, "Communities", "DOWN"); len(left) > 0 {
		t.Fatalf("recovery left %v", left)
	}
	if _, err := svc.Store.Get(ctx, realm.Name, "down"); err != community.ErrNoRecord {
		t.Fatalf("recovery left the row: %v", err)
	}
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "DOWN", "communityName": "Down"}).Expect(t, 201)
}

// TestApplyUndoesWhatAnEarlierRunLeft: a pipeline runs no service, so
// nothing else undoes a create whose undo failed; apply does, first, and
// then makes the community the file asks for (it once planned a conflict
// on every run until a service or reconcile came by).
func TestApplyUndoesWhatAnEarlierRunLeft(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	faults.Arm(6, true)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "LEFT", "communityName": "Left"}).Expect(t, 503)
	faults.Arm(0, false)
	if row, err := svc.Store.Get(context.Background(), realm.Name, "left"); err != nil || row.State != community.StateFailed {
		t.Fatalf("row after the failed undo: %+v %v", row, err)
	}
	file := filepath.Join(t.TempDir(), "communities.yaml")
	if err := os.WriteFile(file, []byte("realm: "+realm.Name+"\ncommunities:\n  - {label: LEFT, name: Left}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := harness.Current(t)
	out, code := runCLI(t, env, env.DatabaseURL, nil, "apply", "-f", file)
	if code != 0 || !strings.Contains(out, "undid 1 abandoned operation") || !strings.Contains(out, "done   create LEFT") {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	harness.Do(t, "GET", base+"/LEFT", sd, nil).Expect(t, 200)
}

// TestKeycloakCommitsAfterTheUndo: the extension's create goes unanswered,
// the service undoes the create (finding nothing) and answers 503, and
// Keycloak then commits the create. What it made carries the undone
// create's id: the drift check serve runs, which only reports, removes it
// as the rest of the undo, not as drift, and the label can be used again.
func TestKeycloakCommitsAfterTheUndo(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	ctx := context.Background()
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "WARM", "communityName": "Warm"}).Expect(t, 201)

	faults.Late = true
	faults.Arm(1, false) // the extension's one-transaction create
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "LATE", "communityName": "Late"}).Expect(t, 503)
	faults.Arm(0, false)
	if left := realm.Artefacts(t, "Communities", "LATE"); len(left) > 0 {
		t.Fatalf("the undo left %v", left)
	}
	if _, err := svc.Store.Get(ctx, realm.Name, "late"); err != community.ErrNoRecord {
		t.Fatalf("the undo left the row: %v", err)
	}
	if codes, err := faults.SendLate(); err != nil || !slices.Equal(codes, []int{http.StatusCreated}) {
		t.Fatalf("the late create: %v %v", codes, err)
	}
	if left := realm.Artefacts(t, "Communities", "LATE"); len(left) != 3 {
		t.Fatalf("the late create made %v, want its group and two roles", left)
	}

	reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; !slices.Equal(r.UndoneFinished, []string{"LATE"}) || r.DriftCount() != 0 {
		t.Errorf("drift check: %+v; want the undo of LATE finished, and no drift", r)
	}
	if left := realm.Artefacts(t, "Communities", "LATE"); len(left) > 0 {
		t.Errorf("the drift check left %v", left)
	}
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "LATE", "communityName": "Late"}).Expect(t, 201)

	// Asked again before any drift check, the create finishes the undo
	// itself: no 409 for what the service itself left. Whether Keycloak
	// committed the extension's call late (step 1), or the first admin
	// permission (step 2), which clashes only after this create's own
	// call has made its roles and groups.
	for step, l := range []string{1: "AGAIN", 2: "OWNED"} {
		if l == "" {
			continue
		}
		faults.Late = true
		faults.Arm(step, false)
		harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": l, "communityName": l}).Expect(t, 503)
		faults.Arm(0, false)
		if codes, err := faults.SendLate(); err != nil || !slices.Equal(codes, []int{http.StatusCreated}) {
			t.Fatalf("%s: the late call: %v %v", l, codes, err)
		}
		harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": l, "communityName": l}).Expect(t, 201)
		row, err := svc.Store.Get(ctx, realm.Name, strings.ToLower(l))
		if err != nil {
			t.Fatal(err)
		}
		if drift, err := svc.Server.Service().Check(ctx, realm.Name, l); err != nil || len(drift) != 0 {
			t.Errorf("%s, made after finishing the undo: drift %v %v", l, drift, err)
		}
		if left := realm.Artefacts(t, "Communities", l); len(left) != 3 {
			t.Errorf("Keycloak holds %v of %s (%s), want its group and two roles", left, l, row.ID)
		}
	}
	reports, _, err = svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; len(r.UndoneFinished) != 0 || r.DriftCount() != 0 {
		t.Errorf("drift check after the retry: %+v; want nothing left to finish, and no drift", r)
	}
}

// TestKeycloakFailsDuringDelete: a delete that Keycloak interrupts answers
// 503, hides the community, and recovery finishes the delete.
func TestKeycloakFailsDuringDelete(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	ctx := context.Background()

	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "GONE", "communityName": "Gone"}).Expect(t, 201)
	faults.Arm(0, false)
	harness.Do(t, "DELETE", base+"/GONE", sd, nil).Expect(t, 204)
	steps, _ := faults.Counts()
	injected := 0
	for step := 1; step <= steps; step++ {
		label := "GONE" + string(rune('A'+step))
		faults.Arm(0, false)
		harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": label, "communityName": label}).Expect(t, 201)
		faults.Arm(step, true)
		harness.Do(t, "DELETE", base+"/"+label, sd, nil).Expect(t, 503)
		injected++
		harness.Do(t, "GET", base+"/"+label, sd, nil).Expect(t, 404)
		faults.Arm(0, false)
		svc.Server.RecoverOnce(ctx)
		if left := realm.Artefacts(t, "Communities", label); len(left) > 0 {
			t.Errorf("fault at delete step %d: recovery left %v", step, left)
		}
		if _, err := svc.Store.Get(ctx, realm.Name, label); err != community.ErrNoRecord {
			t.Errorf("fault at delete step %d: recovery left the row (%v)", step, err)
		}
	}
	t.Logf("delete: %d mutating steps, %d faults injected", steps, injected)
}

// TestConflictingArtefactInKeycloak: a group someone made by hand under a
// community's name makes the create fail with 409; the hand-made group is
// left alone and nothing else is kept.
func TestConflictingArtefactInKeycloak(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.realm.AdminToken(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "WARM", "Warm").Expect(t, 201) // the root group exists
	root, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.realm.GC.CreateChildGroup(ctx, admin, f.realm.Name, *root.ID, gocloak.Group{Name: gocloak.StringP("CLASH")})
	if err != nil {
		t.Fatal(err)
	}
	resp := f.create(t, sd, "CLASH", "Clash").Expect(t, 409)
	t.Logf("answer: %s", resp.Body)
	left := f.realm.Artefacts(t, "Communities", "CLASH")
	if len(left) != 1 || left[0] != "group /Communities/CLASH" {
		t.Fatalf("after the clash Keycloak holds %v; want only the hand-made group", left)
	}
	if g, err := f.realm.GC.GetGroup(ctx, admin, f.realm.Name, id); err != nil || *g.Name != "CLASH" {
		t.Fatalf("hand-made group damaged: %v", err)
	}
	if f.row(t, "CLASH") != nil {
		t.Fatal("registry row kept")
	}

	// Likewise a hand-made realm role.
	if _, err := f.realm.GC.CreateRealmRole(ctx, admin, f.realm.Name, role("PERM_ROLECLASH_WRITE")); err != nil {
		t.Fatal(err)
	}
	f.create(t, sd, "ROLECLASH", "Role clash").Expect(t, 409)
	left = f.realm.Artefacts(t, "Communities", "ROLECLASH")
	if len(left) != 1 || left[0] != "role PERM_ROLECLASH_WRITE" {
		t.Fatalf("after the role clash Keycloak holds %v", left)
	}
}

// TestArtefactsAreAllOrNothing: the extension's create
// (deploy/keycloak-extension) makes a community's roles, groups, role
// mappings and owners in one Keycloak transaction. Whatever part of it
// fails, nothing of it stays; and only a caller who may manage the realm's
// roles and groups may call it.
func TestArtefactsAreAllOrNothing(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "FIRST", "Makes the root group").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	root, err := f.realm.GC.GetGroupByPath(context.Background(), admin, f.realm.Name, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	u := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name + "/communities/artefacts"
	body := func(label, grant, owner string) map[string]any {
		marker := map[string][]string{keycloak.MarkerAttribute: {"id-" + label}}
		return map[string]any{
			"parent": *root.ID,
			"roles": []map[string]any{
				{"name": "PERM_" + label + "_READ", "attributes": marker},
				{"name": "PERM_" + label + "_WRITE", "attributes": marker},
			},
			"group": map[string]any{"name": label, "attributes": marker, "subGroups": []map[string]any{
				{"name": "owner", "attributes": marker, "realmRoles": []string{keycloak.OwnerRole}},
				{"name": "consumer", "attributes": marker, "realmRoles": []string{grant}},
			}},
			"members": map[string][]string{"owner": {owner}},
		}
	}
	owner := f.realm.UserID(t, "consumer")
	nested := body("NESTED", "PERM_NESTED_READ", owner)
	subs := nested["group"].(map[string]any)["subGroups"].([]map[string]any)
	subs[1]["subGroups"] = []map[string]any{{"name": "deeper"}}
	// Nulls and excess once answered 500 half-way (a null pointer).
	nullRole := body("NULLROLE", "PERM_NULLROLE_READ", owner)
	nullRole["roles"] = append(nullRole["roles"].([]map[string]any), nil)
	nullMember := body("NULLMEMBER", "PERM_NULLMEMBER_READ", owner)
	nullMember["members"] = map[string][]*string{"owner": {nil}}
	nullAttribute := body("NULLATTR", "PERM_NULLATTR_READ", owner)
	nullAttribute["group"].(map[string]any)["attributes"] = map[string]any{"x": nil}
	crowd := body("CROWD", "PERM_CROWD_READ", owner)
	crowd["members"] = map[string][]string{"owner": slices.Repeat([]string{owner}, 65)}

	for _, c := range []struct {
		why    string
		token  string
		body   map[string]any
		status int
	}{
		{"no token", "", body("NOAUTH", "PERM_NOAUTH_READ", owner), 401},
		{"a consumer", f.realm.UserToken(t, "consumer"), body("CONSUMER", "PERM_CONSUMER_READ", owner), 403},
		{"a grant of a role that does not exist, after the roles and groups are made", admin, body("NOROLE", "PERM_NOSUCH_READ", owner), 400},
		{"an owner who is no user, made last", admin, body("NOUSER", "PERM_NOUSER_READ", "no-such-user"), 404},
		{"subgroups two levels deep", admin, nested, 400},
		{"a null role", admin, nullRole, 400},
		{"a null member", admin, nullMember, 400},
		{"a null attribute", admin, nullAttribute, 400},
		{"more members than a call makes", admin, crowd, 400},
		{"no body", admin, nil, 400},
	} {
		resp := harness.Do(t, "POST", u, c.token, c.body)
		if resp.Status != c.status {
			t.Errorf("%s: %s, want %d", c.why, resp, c.status)
		}
		if c.body == nil {
			continue
		}
		label := c.body["group"].(map[string]any)["name"].(string)
		if left := f.realm.Artefacts(t, "Communities", label); len(left) > 0 {
			t.Errorf("%s: Keycloak kept %v", c.why, left)
		}
	}

	// The same body, whole, is made, with the owner a member.
	var made struct{ Roles, Groups map[string]string }
	harness.Do(t, "POST", u, admin, body("WHOLE", "PERM_WHOLE_READ", owner)).Expect(t, 201).JSON(t, &made)
	if len(made.Roles) != 2 || len(made.Groups) != 3 || made.Groups["/Communities/WHOLE/owner"] == "" {
		t.Fatalf("made %+v", made)
	}
	members, err := f.realm.GC.GetGroupMembers(context.Background(), admin, f.realm.Name, made.Groups["/Communities/WHOLE/owner"], gocloak.GetGroupsParams{})
	if err != nil || len(members) != 1 || *members[0].ID != owner {
		t.Errorf("owner group members %v (%v)", members, err)
	}
	mustContain(t, "the consumer's roles", realmRolesOf(t, f.realm.UserToken(t, "consumer")), keycloak.OwnerRole)
	// Made again: 409 naming the first clash, and nothing new.
	resp := harness.Do(t, "POST", u, admin, body("WHOLE", "PERM_WHOLE_READ", owner)).Expect(t, 409)
	if !strings.Contains(string(resp.Body), "realm role PERM_WHOLE_READ") {
		t.Errorf("conflict does not name the role: %s", resp.Body)
	}
}

// TestCleanupIsAllOrNothing: the extension's cleanup removes a community's
// admin permissions, group and roles in one Keycloak transaction, where the
// admin API took 8 calls that could fail between any two. A failure at its
// last step (a foreign client scope of the community's name to be taken off
// a client that does not exist) leaves everything as it was, and a caller
// without the rights removes nothing. The delete then removes it all and
// keeps the foreign scope.
func TestCleanupIsAllOrNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "WHOLE", "Removed whole").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name
	if _, err := gc.CreateClientScope(ctx, admin, realm, gocloak.ClientScope{Name: gocloak.StringP("grouping/WHOLE.read"),
		Protocol: gocloak.StringP("openid-connect")}); err != nil {
		t.Fatal(err)
	}
	clients, err := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("admin-permissions")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("admin-permissions client: %v %v", clients, err)
	}
	policies := func() []string {
		var found []struct{ Name string }
		harness.Do(t, "GET", f.env.KeycloakURL+"/admin/realms/"+realm+"/clients/"+*clients[0].ID+
			"/authz/resource-server/policy?first=0&max=100&name=community:WHOLE:", admin, nil).Expect(t, 200).JSON(t, &found)
		var names []string
		for _, p := range found {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		return names
	}
	before, beforePolicies := f.realm.Artefacts(t, "Communities", "WHOLE"), policies()
	if len(before) != 4 || len(beforePolicies) != 4 {
		t.Fatalf("before: %v, %v", before, beforePolicies)
	}
	id := f.row(t, "WHOLE").ID
	body := func(client string) map[string]any {
		return map[string]any{"root": "Communities", "attribute": keycloak.MarkerAttribute, "marker": id, "group": "WHOLE",
			"roles": []string{"PERM_WHOLE_READ", "PERM_WHOLE_WRITE"}, "legacyRoles": []string{"PERM_WHOLE_OWNER"},
			"policies":     []string{"community:WHOLE:membership", "community:WHOLE:view", "community:WHOLE:membership-admins", "community:WHOLE:owners"},
			"policyMarker": keycloak.MarkerAttribute + "=" + id, "scopes": []string{"grouping/WHOLE.read", "grouping/WHOLE.write"},
			"clients": []string{client}}
	}
	with := func(b map[string]any, key string, v any) map[string]any {
		b[key] = v
		return b
	}
	// A marker no artefact carries: nothing is the caller's to remove, so
	// no permission was needed for any one of them.
	guess := func(b map[string]any) map[string]any {
		return with(with(b, "marker", "guess"), "policyMarker", "guess")
	}
	u := f.env.KeycloakURL + "/admin/realms/" + realm + "/communities/cleanup"
	for _, c := range []struct {
		why    string
		token  string
		body   map[string]any
		status int
	}{
		{"a client to take the foreign scope off that does not exist, the last step", admin, body("no-such-client"), 404},
		{"a consumer", f.realm.UserToken(t, "consumer"), body("terminology-client"), 403},
		// Refused before any name is looked up, so that a caller without
		// the rights learns nothing: with markers nothing carries, the
		// cleanup answered 200 listing what exists (no scope to take off a
		// client), or 404 for a client that does not exist.
		{"a consumer guessing the markers", f.realm.UserToken(t, "consumer"), with(guess(body("terminology-client")), "scopes", []string{}), 403},
		{"a consumer naming a client that does not exist", f.realm.UserToken(t, "consumer"), guess(body("no-such-client")), 403},
		{"more names than a community has", admin, with(body("terminology-client"), "roles", slices.Repeat([]string{"PERM_WHOLE_READ"}, 33)), 400},
		{"a blank name", admin, with(body("terminology-client"), "policies", []string{""}), 400},
		{"no token", "", body("terminology-client"), 401},
		{"no marker", admin, map[string]any{"root": "Communities", "group": "WHOLE"}, 400},
	} {
		harness.Do(t, "POST", u, c.token, c.body).Expect(t, c.status)
		if after, afterPolicies := f.realm.Artefacts(t, "Communities", "WHOLE"), policies(); !slices.Equal(after, before) || !slices.Equal(afterPolicies, beforePolicies) {
			t.Errorf("%s: Keycloak holds %v, %v; before %v, %v", c.why, after, afterPolicies, before, beforePolicies)
		}
	}
	if f.row(t, "WHOLE") == nil {
		t.Fatal("the row went")
	}

	harness.Do(t, "DELETE", f.base+"/WHOLE", sd, nil).Expect(t, 204)
	if left := f.realm.Artefacts(t, "Communities", "WHOLE"); !slices.Equal(left, []string{"scope grouping/WHOLE.read"}) {
		t.Errorf("the delete left %v; want only the foreign scope", left)
	}
	if left := policies(); len(left) > 0 {
		t.Errorf("the delete left the admin permissions %v", left)
	}
}

// TestDeleteKeepsGroupsMadeByHand: groups an administrator made under a
// community's groups are not the community's, so its delete keeps them,
// with their members, and keeps the community's groups above them; those
// lose the marker and every role mapping, so that the hand-made groups'
// members hold nothing through them (the owner group's community-owner
// role opens the admin console). The community's other groups, its roles
// and its permissions go. What is kept blocks the label, as any group of
// its name does, and the drift check reports it as not the service's.
func TestDeleteKeepsGroupsMadeByHand(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "POST", f.base, sd, map[string]any{"securityLabel": "HANDS", "communityName": "Hands",
		"owners": []string{"author"}}).Expect(t, 201)
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name
	group := func(path string) *gocloak.Group {
		t.Helper()
		g, err := gc.GetGroupByPath(ctx, admin, realm, strings.TrimPrefix(path, "/"))
		if api := (*gocloak.APIError)(nil); errors.As(err, &api) && api.Code == http.StatusNotFound {
			return nil
		}
		if err != nil {
			t.Fatalf("group %s: %v", path, err)
		}
		return g
	}
	handMade := func(parent, name, member string) {
		t.Helper()
		id, err := gc.CreateChildGroup(ctx, admin, realm, *group(parent).ID, gocloak.Group{Name: gocloak.StringP(name)})
		if err != nil {
			t.Fatal(err)
		}
		if err := gc.AddUserToGroup(ctx, admin, realm, f.realm.UserID(t, member), id); err != nil {
			t.Fatal(err)
		}
	}
	handMade("/Communities/HANDS", "reviewers", "creator")
	handMade("/Communities/HANDS/owner", "deputies", "consumer")
	consumer := f.realm.UserID(t, "consumer")
	holdsOwnerRole := func() bool {
		t.Helper()
		roles, err := gc.GetCompositeRealmRolesByUserID(ctx, admin, realm, consumer)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(roles, func(r *gocloak.Role) bool { return *r.Name == keycloak.OwnerRole })
	}
	if !holdsOwnerRole() {
		t.Fatal("a deputy does not inherit the owner group's role; the test proves nothing")
	}

	harness.Do(t, "DELETE", f.base+"/HANDS", sd, nil).Expect(t, 204)
	for _, path := range []string{"/Communities/HANDS", "/Communities/HANDS/reviewers", "/Communities/HANDS/owner",
		"/Communities/HANDS/owner/deputies"} {
		g := group(path)
		if g == nil {
			t.Errorf("the delete removed %s", path)
			continue
		}
		if g.Attributes != nil && len((*g.Attributes)[keycloak.MarkerAttribute]) > 0 {
			t.Errorf("%s still carries the marker: %v", path, *g.Attributes)
		}
		roles, err := gc.GetRoleMappingByGroupID(ctx, admin, realm, *g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if roles.RealmMappings != nil && len(*roles.RealmMappings) > 0 {
			t.Errorf("%s still maps %d realm roles", path, len(*roles.RealmMappings))
		}
	}
	for _, path := range []string{"/Communities/HANDS/author", "/Communities/HANDS/consumer"} {
		if group(path) != nil {
			t.Errorf("the delete kept %s, which holds nothing made by hand", path)
		}
	}
	if got := f.realm.Artefacts(t, "Communities", "HANDS"); !slices.Equal(got, []string{"group /Communities/HANDS"}) {
		t.Errorf("Keycloak holds %v; want only the kept group", got)
	}
	for _, c := range []struct{ path, user string }{{"/Communities/HANDS/reviewers", "creator"}, {"/Communities/HANDS/owner/deputies", "consumer"}} {
		g := group(c.path)
		if g == nil {
			continue // reported above
		}
		members, err := gc.GetGroupMembers(ctx, admin, realm, *g.ID, gocloak.GetGroupsParams{})
		if err != nil || len(members) != 1 || *members[0].Username != c.user {
			t.Errorf("members of %s: %v %v; want %s", c.path, members, err, c.user)
		}
	}
	if holdsOwnerRole() {
		t.Error("a deputy still holds the owner role through the kept owner group")
	}

	f.create(t, sd, "HANDS", "Hands again").Expect(t, 409)
	reports, _, err := f.svc.Server.Service().Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := reports[0].Orphans; len(o) != 1 || o[0].Label != "HANDS" || o[0].ID != "" {
		t.Errorf("orphans %+v; want the kept group, unmarked", o)
	}
}

// TestKeycloakKeysUnreachable: while Keycloak cannot give the realm's key
// set, a good token is refused with 503 (try again), not 401 (throw the
// token away), by the API and by the decision endpoint, for the caller's
// token and for a token to judge alike; once Keycloak answers again, the
// same tokens work.
func TestKeycloakKeysUnreachable(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	kc, err := url.Parse(env.KeycloakURL)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	down.Store(true)
	// Keycloak as the service reaches it, but for the key set while down.
	keycloak := httputil.NewSingleHostReverseProxy(kc)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/certs") {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r.Host = kc.Host
		keycloak.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	cfg := env.Config(realm.Name)
	cfg.KeycloakURL = front.URL
	cfg.IssuerBaseURL = env.KeycloakURL
	svc := env.StartService(t, cfg)

	consumer := realm.UserToken(t, "consumer")
	fhir := realm.ClientToken(t, "fhir-server", "fhir-server-secret")
	base := svc.URL + "/realms/" + realm.Name
	read := map[string]any{"resourceType": "CodeSystem", "interaction": "read"}
	judged := map[string]any{"resourceType": "CodeSystem", "interaction": "read", "token": consumer}
	type ask struct {
		method, path, token string
		body                any
	}
	asks := []ask{
		{"GET", "/communities", consumer, nil},
		{"POST", "/communities-authz/decision", consumer, read},
		{"POST", "/communities-authz/labels", fhir, map[string]string{"token": consumer}},
		{"POST", "/communities-authz/decision", fhir, judged},
	}
	for _, a := range asks {
		resp := harness.Do(t, a.method, base+a.path, a.token, a.body).Expect(t, 503)
		harness.ConformsToOpenAPI(t, a.method, base+a.path, resp)
		if !strings.Contains(string(resp.Body), "signing keys") || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s %s with the key set unreachable: %s %v", a.method, a.path, resp.Body, resp.Header)
		}
	}

	// The service tries the set again every few seconds while it cannot
	// fetch it, so requests soon work again.
	down.Store(false)
	deadline := time.Now().Add(2 * auth.DefaultUnknownKeyRefetch)
	for {
		resp := harness.Do(t, "POST", base+"/communities-authz/decision", consumer, read)
		if resp.Status == 200 {
			break
		}
		if resp.Status != 503 || time.Now().After(deadline) {
			t.Fatalf("after Keycloak came back: %s", resp)
		}
		time.Sleep(time.Second)
	}
	for _, a := range asks {
		harness.Do(t, a.method, base+a.path, a.token, a.body).Expect(t, 200)
	}
}
