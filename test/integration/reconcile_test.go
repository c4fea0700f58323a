package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/internal/provision"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestReconcileFindsAndRepairsDrift removes and changes artefacts by hand,
// as an administrator in the console might, and checks the reconciler
// reports each change, repairs what is its own, and leaves the rest alone.
func TestReconcileFindsAndRepairsDrift(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "DRIFT", "Drifting").Expect(t, 201)
	f.create(t, sd, "LOST", "Lost row").Expect(t, 201)
	f.create(t, sd, "FINE", "Untouched").Expect(t, 201)
	f.create(t, sd, "BARE", "Roles and permissions left").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name

	// Drift by hand: a role deleted, a group deleted, a scope mapping and a
	// default client scope removed.
	if err := gc.DeleteRealmRole(ctx, admin, realm, "PERM_DRIFT_WRITE"); err != nil {
		t.Fatal(err)
	}
	consumer, err := gc.GetGroupByPath(ctx, admin, realm, "Communities/DRIFT/consumer")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.DeleteGroup(ctx, admin, realm, *consumer.ID); err != nil {
		t.Fatal(err)
	}
	// Adding a consumer meets the drift: a conflict naming the repair, not
	// an outage to retry (503 before).
	if resp := harness.Do(t, "PUT", f.base+"/DRIFT/consumer/consumer", sd, nil).Expect(t, 409); !strings.Contains(string(resp.Body), "reconcile --repair") {
		t.Errorf("adding to a deleted group: %s", resp.Body)
	}
	row := f.row(t, "DRIFT")
	// What an earlier version made (issue 14): PERM_DRIFT_OWNER and the
	// client scope grouping/DRIFT.read, mapped to its role and a default
	// scope of the FHIR client, both with the community's marker.
	marker := map[string][]string{keycloak.MarkerAttribute: {row.ID}}
	if _, err := gc.CreateRealmRole(ctx, admin, realm, gocloak.Role{Name: gocloak.StringP("PERM_DRIFT_OWNER"), Attributes: &marker}); err != nil {
		t.Fatal(err)
	}
	scopeID := legacyScope(t, f.env, f.realm, "grouping/DRIFT.read", row.ID)
	read, _ := gc.GetRealmRole(ctx, admin, realm, "PERM_DRIFT_READ")
	if err := gc.CreateClientScopesScopeMappingsRealmRoles(ctx, admin, realm, scopeID, []gocloak.Role{*read}); err != nil {
		t.Fatal(err)
	}
	clients, _ := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("terminology-client")})
	if err := gc.AddDefaultScopeToClient(ctx, admin, realm, *clients[0].ID, scopeID); err != nil {
		t.Fatal(err)
	}
	// An admin permission deleted in the console.
	base := f.env.KeycloakURL + "/admin/realms/" + realm
	var realmRep struct {
		AdminPermissionsClient struct{ ID string } `json:"adminPermissionsClient"`
	}
	harness.Do(t, "GET", base, admin, nil).Expect(t, 200).JSON(t, &realmRep)
	authz := base + "/clients/" + realmRep.AdminPermissionsClient.ID + "/authz/resource-server"
	viewPolicy := func() (found []struct{ ID, Name string }) {
		t.Helper()
		harness.Do(t, "GET", authz+"/policy?exact=true&name=community:DRIFT:view", admin, nil).Expect(t, 200).JSON(t, &found)
		return found
	}
	views := viewPolicy()
	if len(views) != 1 {
		t.Fatalf("admin permission community:DRIFT:view: found %v", views)
	}
	harness.Do(t, "DELETE", authz+"/policy/"+views[0].ID, admin, nil).Expect(t, 204)
	// An orphan of ours: the registry row of LOST is gone.
	lost := f.row(t, "LOST")
	if err := f.svc.Store.DB().Exec("DELETE FROM communities WHERE id = ?", lost.ID).Error; err != nil {
		t.Fatal(err)
	}
	// Orphans of ours without a group: BARE's row and group are gone, its
	// roles and two of its admin permissions stayed (Keycloak deletes the
	// permissions whose only resources were the groups). Left unreported,
	// they blocked the label for good.
	bare := f.row(t, "BARE")
	if err := f.svc.Store.DB().Exec("DELETE FROM communities WHERE id = ?", bare.ID).Error; err != nil {
		t.Fatal(err)
	}
	bareGroup, err := gc.GetGroupByPath(ctx, admin, realm, "Communities/BARE")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.DeleteGroup(ctx, admin, realm, *bareGroup.ID); err != nil {
		t.Fatal(err)
	}
	f.create(t, sd, "BARE", "Again").Expect(t, 409)
	// A group someone made by hand under the root.
	root, _ := gc.GetGroupByPath(ctx, admin, realm, "Communities")
	if _, err := gc.CreateChildGroup(ctx, admin, realm, *root.ID, gocloak.Group{Name: gocloak.StringP("HANDMADE")}); err != nil {
		t.Fatal(err)
	}

	svc := f.svc.Server.Service()
	reports, ran, err := svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || !ran {
		t.Fatalf("reconcile: ran %v, %v", ran, err)
	}
	rep := reports[0]
	var found []string
	for _, d := range rep.Drift["DRIFT"] {
		found = append(found, d.String())
	}
	for _, want := range []string{
		"realm role PERM_DRIFT_WRITE: missing",
		"group /Communities/DRIFT/consumer: missing",
		"role mapping /Communities/DRIFT/author → PERM_DRIFT_WRITE: missing",
		"realm role PERM_DRIFT_OWNER: " + earlier,
		"client scope grouping/DRIFT.read: " + earlier,
		"admin permission community:DRIFT:view: missing",
	} {
		if !slices.Contains(found, want) {
			t.Errorf("drift report lacks %q; got %v", want, found)
		}
	}
	if len(rep.Drift["FINE"]) != 0 || len(rep.Drift) != 1 {
		t.Errorf("drift reported for untouched communities: %v", rep.Drift)
	}
	var orphans []string
	for _, o := range rep.Orphans {
		orphans = append(orphans, o.Label)
		// Named by the first of its artefacts the extension lists: roles
		// come before permissions, and of each marker's roles the least name.
		if o.Label == "BARE" && (o.ID != bare.ID || o.Artefact != "realm role PERM_BARE_READ") {
			t.Errorf("BARE's orphan %+v; want its marker and its read role", o)
		}
	}
	slices.Sort(orphans)
	if !slices.Equal(orphans, []string{"BARE", "HANDMADE", "LOST"}) {
		t.Errorf("orphans %v", orphans)
	}
	// Reporting changed nothing.
	if _, err := gc.GetRealmRole(ctx, admin, realm, "PERM_DRIFT_WRITE"); err == nil {
		t.Error("a report-only reconcile recreated a role")
	}

	// The command line says the same and exits 2 while drift remains.
	cli := func(args ...string) (string, int) {
		t.Helper()
		return runCLI(t, f.env, f.env.DatabaseURL, []string{"COMMUNITIES_REALMS=" + realm}, append([]string{"reconcile"}, args...)...)
	}
	out, code := cli()
	if code != 2 || !strings.Contains(out, realm+"/DRIFT: realm role PERM_DRIFT_WRITE: missing") {
		t.Errorf("reconcile exited %d:\n%s", code, out)
	}

	out, code = cli("--repair")
	t.Logf("reconcile --repair:\n%s", out)
	if code != 2 || !strings.Contains(out, "HANDMADE: community group without a registry row, not made by this service (left alone)") {
		t.Errorf("reconcile --repair exited %d (the hand-made group must remain and be reported)", code)
	}
	reports, _, err = svc.Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports[0].Drift) != 0 || len(reports[0].Orphans) != 1 || reports[0].Orphans[0].Label != "HANDMADE" {
		t.Errorf("after repair: drift %v, orphans %v", reports[0].Drift, reports[0].Orphans)
	}
	for _, l := range []string{"LOST", "BARE"} {
		if left := f.realm.Artefacts(t, "Communities", l); len(left) > 0 {
			t.Errorf("repair left the orphan %s's %v", l, left)
		}
	}
	f.create(t, sd, "BARE", "Again").Expect(t, 201)
	// Repaired for real: a consumer gets the read scope again.
	consumer, err = gc.GetGroupByPath(ctx, admin, realm, "Communities/DRIFT/consumer")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.AddUserToGroup(ctx, admin, realm, f.realm.UserID(t, "consumer"), *consumer.ID); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "repaired consumer's scopes", scopesOf(t, f.realm.UserToken(t, "consumer")), "grouping/DRIFT.read")
	// The legacy artefacts are gone.
	var notFound *gocloak.APIError
	if _, err := gc.GetRealmRole(ctx, admin, realm, "PERM_DRIFT_OWNER"); !errors.As(err, &notFound) || notFound.Code != 404 {
		t.Errorf("legacy role PERM_DRIFT_OWNER after repair: %v", err)
	}
	if _, err := gc.GetClientScope(ctx, admin, realm, scopeID); !errors.As(err, &notFound) || notFound.Code != 404 {
		t.Errorf("legacy client scope after repair: %v", err)
	}
	write, err := gc.GetRealmRole(ctx, admin, realm, "PERM_DRIFT_WRITE")
	if err != nil || (*write.Attributes)[keycloak.MarkerAttribute][0] != row.ID {
		t.Errorf("recreated role lacks the marker: %v", err)
	}

	if again := viewPolicy(); len(again) != 1 {
		t.Error("repair did not make admin permission community:DRIFT:view again")
	}

	// Issue 14: a pass reads the realm in four calls up to 500
	// communities (the extension's groups under the root, the markers on
	// roles and permissions, what the realm-wide permissions say, then a
	// page of the survey), and looks the hand-made group up again before
	// reporting it (1).
	pass := func() int64 {
		t.Helper()
		before := f.svc.KeycloakRoundTrips()
		reports, _, err := svc.Reconcile(ctx, []string{realm}, false)
		if err != nil || len(reports[0].Drift) != 0 {
			t.Fatalf("clean pass: %v %v", reports, err)
		}
		return f.svc.KeycloakRoundTrips() - before
	}
	few := pass()
	t.Logf("a clean drift pass: %d Keycloak calls", few)
	for _, l := range []string{"MORE1", "MORE2", "MORE3", "MORE4", "MORE5"} {
		f.create(t, sd, l, "Community "+l).Expect(t, 201)
	}
	if many := pass(); many != few || few > 5 {
		t.Errorf("Keycloak calls of a clean drift pass: %d with 2 communities, %d with 7", few, many)
	}
}

// TestDriftFindsWhatCommunityGroupsPassOn: a role mapped by hand to a
// community's groups (realm or client role, on a member group or on the
// label group) is passed on to the group's members without the community
// having granted it, and so is everything a group made by hand under a
// member group inherits, to people the community's member lists do not
// show. The drift check reports each as critical; a repair takes the
// mappings off and keeps the community's own grants; an admin role
// (realm-management's, which Keycloak does not let the service take off)
// and the hand-made group are left to an administrator, and stay reported.
func TestDriftFindsWhatCommunityGroupsPassOn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "POST", f.base, sd, map[string]any{"securityLabel": "PASS", "communityName": "Passed on",
		"owners": []string{"author"}}).Expect(t, 201)
	f.create(t, sd, "CALM", "Untouched").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name
	groupID := func(path string) string {
		t.Helper()
		g, err := gc.GetGroupByPath(ctx, admin, realm, path)
		if err != nil {
			t.Fatalf("group %s: %v", path, err)
		}
		return *g.ID
	}
	realmRole := func(name string) gocloak.Role {
		t.Helper()
		r, err := gc.GetRealmRole(ctx, admin, realm, name)
		if err != nil {
			t.Fatal(err)
		}
		return *r
	}
	for path, role := range map[string]string{"Communities/PASS/consumer": "PERM_READ", "Communities/PASS": "FHIR_WRITE"} {
		if err := gc.AddRealmRoleToGroup(ctx, admin, realm, groupID(path), []gocloak.Role{realmRole(role)}); err != nil {
			t.Fatal(err)
		}
	}
	clients, err := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("realm-management")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("realm-management: %v %v", clients, err)
	}
	viewUsers, err := gc.GetClientRole(ctx, admin, realm, *clients[0].ID, "view-users")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.AddClientRolesToGroup(ctx, admin, realm, *clients[0].ID, groupID("Communities/PASS/owner"), []gocloak.Role{*viewUsers}); err != nil {
		t.Fatal(err)
	}
	account, err := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("account")})
	if err != nil || len(account) != 1 {
		t.Fatalf("account: %v %v", account, err)
	}
	viewProfile, err := gc.GetClientRole(ctx, admin, realm, *account[0].ID, "view-profile")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.AddClientRolesToGroup(ctx, admin, realm, *account[0].ID, groupID("Communities/PASS/author"), []gocloak.Role{*viewProfile}); err != nil {
		t.Fatal(err)
	}
	team, err := gc.CreateChildGroup(ctx, admin, realm, groupID("Communities/PASS/author"), gocloak.Group{Name: gocloak.StringP("team")})
	if err != nil {
		t.Fatal(err)
	}

	svc := f.svc.Server.Service()
	check := func(repair bool) map[string]bool {
		t.Helper()
		reports, ran, err := svc.Reconcile(ctx, []string{realm}, repair)
		if err != nil || !ran {
			t.Fatalf("reconcile: ran %v, %v", ran, err)
		}
		if d := reports[0].Drift["CALM"]; len(d) != 0 {
			t.Errorf("drift of an untouched community: %v", d)
		}
		found := map[string]bool{}
		for _, d := range reports[0].Drift["PASS"] {
			if !d.Critical {
				t.Errorf("not critical: %v", d)
			}
			found[d.What] = d.Repaired
		}
		return found
	}
	want := []string{
		"role mapping /Communities/PASS/consumer → PERM_READ",
		"role mapping /Communities/PASS → FHIR_WRITE",
		"role mapping /Communities/PASS/owner → realm-management client role view-users",
		"group /Communities/PASS/author",
		"role mapping /Communities/PASS/author → account client role view-profile",
	}
	found := check(false)
	for _, w := range want {
		if _, ok := found[w]; !ok {
			t.Errorf("the drift check did not report %q; it reported %v", w, found)
		}
	}
	if len(found) != len(want) {
		t.Errorf("reported %v; want %v", found, want)
	}

	if found = check(true); !found[want[0]] || !found[want[1]] || found[want[2]] || found[want[3]] || !found[want[4]] {
		t.Errorf("repair: %v; want the mappings repaired but the admin role and the hand-made group", found)
	}
	mapped := func(path string) []string {
		t.Helper()
		m, err := gc.GetRoleMappingByGroupID(ctx, admin, realm, groupID(path))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		if m.RealmMappings != nil {
			for _, r := range *m.RealmMappings {
				out = append(out, *r.Name)
			}
		}
		for client, cm := range m.ClientMappings {
			if cm.Mappings != nil {
				for _, r := range *cm.Mappings {
					out = append(out, client+" "+*r.Name)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	for path, grants := range map[string][]string{
		"Communities/PASS":          nil,
		"Communities/PASS/owner":    {keycloak.OwnerRole, "realm-management view-users"},
		"Communities/PASS/author":   {"PERM_PASS_READ", "PERM_PASS_WRITE"},
		"Communities/PASS/consumer": {"PERM_PASS_READ"},
	} {
		if got := mapped(path); !slices.Equal(got, grants) {
			t.Errorf("after the repair %s maps %v; want %v", path, got, grants)
		}
	}
	if _, err := gc.GetGroup(ctx, admin, realm, team); err != nil {
		t.Errorf("the repair removed the hand-made group: %v", err)
	}
	if found = check(false); len(found) != 2 {
		t.Errorf("after the repair: %v; want only the admin role and the hand-made group", found)
	}
}

// TestMembersAreForWhoMaySeeEveryUser: the extension's POST members
// lists users, so seeing the realm and every group, which is all the
// survey needs, is not enough: a caller given exactly that (the realm's
// view-realm role and an admin permission to view every group) gets the
// survey and is refused the members until also allowed to view every
// user.
func TestMembersAreForWhoMaySeeEveryUser(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, f.realm.UserToken(t, "creator"), "SEEN", "Seen").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	realmURL := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name
	id, err := f.realm.GC.CreateUser(ctx, admin, f.realm.Name, gocloak.User{
		Username: gocloak.StringP("groupviewer"), Enabled: gocloak.BoolP(true), EmailVerified: gocloak.BoolP(true),
		Email: gocloak.StringP("groupviewer@example.org"), FirstName: gocloak.StringP("Group"), LastName: gocloak.StringP("Viewer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.SetPassword(ctx, admin, id, f.realm.Name, "groupviewer-pass", false); err != nil {
		t.Fatal(err)
	}
	clients, err := f.realm.GC.GetClients(ctx, admin, f.realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("realm-management")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("realm-management: %v %v", clients, err)
	}
	grant := func(role string) {
		t.Helper()
		r, err := f.realm.GC.GetClientRole(ctx, admin, f.realm.Name, *clients[0].ID, role)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.realm.GC.AddClientRolesToUser(ctx, admin, f.realm.Name, *clients[0].ID, id, []gocloak.Role{*r}); err != nil {
			t.Fatal(err)
		}
	}
	grant("view-realm")
	var rep struct{ AdminPermissionsClient struct{ ID string } }
	harness.Do(t, "GET", realmURL, admin, nil).Expect(t, 200).JSON(t, &rep)
	authz := realmURL + "/clients/" + rep.AdminPermissionsClient.ID + "/authz/resource-server"
	harness.Do(t, "POST", authz+"/policy/user", admin, map[string]any{"name": "groupviewer", "users": []string{id}}).Expect(t, 201)
	harness.Do(t, "POST", authz+"/permission/scope", admin, map[string]any{"name": "groupviewer may view every group",
		"resourceType": "Groups", "scopes": []string{"view"}, "policies": []string{"groupviewer"}}).Expect(t, 201)

	base := realmURL + "/communities"
	survey := map[string]any{"root": "Communities", "attribute": keycloak.MarkerAttribute, "labels": []string{"SEEN"},
		"roles": []string{"PERM_SEEN_READ"}, "policies": []string{}}
	members := map[string]any{"groups": []string{f.row(t, "SEEN").Artifacts.OwnerGroupID}, "max": 10}
	viewer := f.realm.PasswordToken(t, "communities-cli", "groupviewer")
	harness.Do(t, "POST", base+"/survey", viewer, survey).Expect(t, 200)
	harness.Do(t, "POST", base+"/members", viewer, members).Expect(t, 403)

	// Every user by role: a second admin permission on all users would
	// not do, as the realm's resource server wants every permission on a
	// resource to agree, and the realm's own one is for owners.
	grant("view-users")
	var ms struct {
		Members map[string][]struct{ Username string }
	}
	harness.Do(t, "POST", base+"/members", f.realm.PasswordToken(t, "communities-cli", "groupviewer"), members).Expect(t, 200).JSON(t, &ms)
	if got := ms.Members[f.row(t, "SEEN").Artifacts.OwnerGroupID]; len(got) != 1 || got[0].Username != "creator" {
		t.Errorf("members once every user may be viewed: %+v", ms)
	}
}

// TestSurveyIsForWhoMaySeeTheRealm: the extension's survey
// (deploy/keycloak-extension) shows every community's artefacts, so only a
// caller who may view the realm and every group gets it; a community owner,
// who sees groups in the console through admin permissions, does not.
func TestSurveyIsForWhoMaySeeTheRealm(t *testing.T) {
	f := newFixture(t)
	creator := f.realm.UserToken(t, "creator")
	f.create(t, creator, "SEEN", "Seen").Expect(t, 201)
	f.create(t, creator, "UNSEEN", "Not asked about").Expect(t, 201)
	base := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name + "/communities"
	groupsURL := base + "/groups?root=Communities&attribute=" + keycloak.MarkerAttribute
	markedURL := base + "/marked?policyPrefix=community:&attribute=" + keycloak.MarkerAttribute
	policies := []string{"community:SEEN:membership", "community:SEEN:membership-admins", "community:SEEN:owners", "community:SEEN:view"}
	page := map[string]any{"root": "Communities", "attribute": keycloak.MarkerAttribute, "labels": []string{"SEEN"},
		"roles": []string{"PERM_SEEN_READ", "PERM_SEEN_WRITE", "FHIR_READ"}, "policies": policies}

	// SEEN's aggregate as the survey would find it without role:service-desk.
	aggregate := func(policies ...string) map[string]any {
		return map[string]any{"name": "community:SEEN:membership-admins", "description": keycloak.MarkerAttribute + "=" + f.row(t, "SEEN").ID,
			"decisionStrategy": "AFFIRMATIVE", "policies": policies}
	}
	link := map[string]any{"policy": "role:service-desk", "aggregates": []any{aggregate("community:SEEN:owners")}}
	// community-owner onto UNSEEN's owner group, as MendShared asks for it.
	grant := func(marker string, path ...string) map[string]any {
		groups := []any{}
		for _, p := range path {
			groups = append(groups, map[string]any{"path": p, "marker": marker})
		}
		return map[string]any{"role": keycloak.OwnerRole, "root": "Communities", "attribute": keycloak.MarkerAttribute, "groups": groups}
	}
	unseenOwners := grant(f.row(t, "UNSEEN").ID, "/Communities/UNSEEN/owner")

	owner := f.realm.UserToken(t, "creator") // now an owner of SEEN
	mustContain(t, "the creator's roles", realmRolesOf(t, owner), keycloak.OwnerRole)
	for _, tok := range []struct {
		who, token string
		status     int
	}{{"no token", "", 401}, {"a consumer", f.realm.UserToken(t, "consumer"), 403}, {"an owner", owner, 403}} {
		if got := harness.Do(t, "GET", groupsURL, tok.token, nil).Status; got != tok.status {
			t.Errorf("GET groups with %s: %d, want %d", tok.who, got, tok.status)
		}
		if got := harness.Do(t, "POST", base+"/survey", tok.token, page).Status; got != tok.status {
			t.Errorf("POST survey with %s: %d, want %d", tok.who, got, tok.status)
		}
		if got := harness.Do(t, "GET", markedURL, tok.token, nil).Status; got != tok.status {
			t.Errorf("GET marked with %s: %d, want %d", tok.who, got, tok.status)
		}
		// An owner may list their community's members one group at a time
		// (the admin API), not every community's at once.
		ask := map[string]any{"groups": []string{f.row(t, "SEEN").Artifacts.OwnerGroupID}, "max": 10}
		if got := harness.Do(t, "POST", base+"/members", tok.token, ask).Status; got != tok.status {
			t.Errorf("POST members with %s: %d, want %d", tok.who, got, tok.status)
		}
		if got := harness.Do(t, "POST", base+"/policies/link", tok.token, link).Status; got != tok.status {
			t.Errorf("POST policies/link with %s: %d, want %d", tok.who, got, tok.status)
		}
		if got := harness.Do(t, "POST", base+"/roles/grant", tok.token, unseenOwners).Status; got != tok.status {
			t.Errorf("POST roles/grant with %s: %d, want %d", tok.who, got, tok.status)
		}
	}

	admin := f.realm.AdminToken(t)
	harness.Do(t, "GET", base+"/groups?root=Communities", admin, nil).Expect(t, 400)
	harness.Do(t, "GET", base+"/marked?attribute=x", admin, nil).Expect(t, 400)
	harness.Do(t, "POST", base+"/survey", admin, map[string]any{"root": "Communities", "attribute": "x"}).Expect(t, 400)
	harness.Do(t, "POST", base+"/survey", admin, map[string]any{"root": "Communities", "attribute": "x",
		"labels": make([]string, 1001), "roles": []string{}, "policies": []string{}}).Expect(t, 400)
	for _, bad := range []map[string]any{{"groups": []string{"x"}}, {"max": 5}, {"groups": []string{""}, "max": 5},
		{"groups": make([]string, 1501), "max": 5}, {"groups": []string{"x"}, "max": 50001}} {
		harness.Do(t, "POST", base+"/members", admin, bad).Expect(t, 400)
	}
	for _, bad := range []map[string]any{{"aggregates": []any{}}, {"policy": "role:service-desk"},
		{"policy": "role:service-desk", "aggregates": []any{map[string]any{"name": "x"}}},
		{"policy": "role:service-desk", "aggregates": make([]any, 1001)}} {
		harness.Do(t, "POST", base+"/policies/link", admin, bad).Expect(t, 400)
	}
	// An aggregate is never added, and one that is not as the caller read
	// it (SEEN's names role:service-desk already) is left as it is.
	harness.Do(t, "POST", base+"/policies/link", admin, map[string]any{"policy": "community:SEEN:membership-admins",
		"aggregates": []any{aggregate("community:SEEN:owners")}}).Expect(t, 409)
	var linked struct{ Linked []string }
	harness.Do(t, "POST", base+"/policies/link", admin, link).Expect(t, 200).JSON(t, &linked)
	if len(linked.Linked) != 0 {
		t.Errorf("linked %v into an aggregate not as it was read", linked.Linked)
	}

	// roles/grant: a path not of a member group under the root, a group
	// without a marker, too many groups, no role: 400; a role that does
	// not exist: 409.
	for _, bad := range []map[string]any{{}, {"role": keycloak.OwnerRole, "root": "Communities", "attribute": "x"},
		grant("id", "/Other/UNSEEN/owner"), grant("id", "/Communities/UNSEEN"), grant("id", "/Communities/UNSEEN/owner/below"),
		grant("id", "/Communities//owner"), grant("", "/Communities/UNSEEN/owner"),
		grant("id", slices.Repeat([]string{"/Communities/UNSEEN/owner"}, 1001)...)} {
		harness.Do(t, "POST", base+"/roles/grant", admin, bad).Expect(t, 400)
	}
	noRole := grant(f.row(t, "UNSEEN").ID, "/Communities/UNSEEN/owner")
	noRole["role"] = "no-such-role"
	harness.Do(t, "POST", base+"/roles/grant", admin, noRole).Expect(t, 409)
	// UNSEEN's owner group without community-owner: a group not as the
	// caller read it (another marker; SEEN's, which maps the role) is left
	// as it is, and UNSEEN's, as read, maps it again.
	ctx := context.Background()
	unseenOwner := f.row(t, "UNSEEN").Artifacts.OwnerGroupID
	ownerRole, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, keycloak.OwnerRole)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.DeleteRealmRoleFromGroup(ctx, admin, f.realm.Name, unseenOwner, []gocloak.Role{*ownerRole}); err != nil {
		t.Fatal(err)
	}
	maps := func(id string) bool {
		t.Helper()
		m, err := f.realm.GC.GetRoleMappingByGroupID(ctx, admin, f.realm.Name, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.RealmMappings != nil && slices.ContainsFunc(*m.RealmMappings, func(r gocloak.Role) bool { return *r.Name == keycloak.OwnerRole })
	}
	var granted struct{ Granted []string }
	harness.Do(t, "POST", base+"/roles/grant", admin, grant(f.row(t, "SEEN").ID, "/Communities/UNSEEN/owner", "/Communities/SEEN/owner")).
		Expect(t, 200).JSON(t, &granted)
	if len(granted.Granted) != 0 || maps(unseenOwner) {
		t.Errorf("granted %v to groups not as they were read", granted.Granted)
	}
	harness.Do(t, "POST", base+"/roles/grant", admin, unseenOwners).Expect(t, 200).JSON(t, &granted)
	if !slices.Equal(granted.Granted, []string{"/Communities/UNSEEN/owner"}) || !maps(unseenOwner) {
		t.Errorf("granted %v; want UNSEEN's owner group, mapping %s again", granted.Granted, keycloak.OwnerRole)
	}

	// Members in bulk: what the admin API lists, group by group; a group
	// that does not exist is missing; what does not fit is for another call.
	seen, unseen := f.row(t, "SEEN").Artifacts, f.row(t, "UNSEEN").Artifacts
	creatorID := f.realm.UserID(t, "creator")
	type member struct{ ID, Username string }
	type answer struct {
		Members       map[string][]member
		Missing, More []string
	}
	var ms answer
	harness.Do(t, "POST", base+"/members", admin, map[string]any{"max": 10,
		"groups": []string{seen.OwnerGroupID, seen.ConsumerGroupID, "no-such-group", unseen.OwnerGroupID}}).Expect(t, 200).JSON(t, &ms)
	ownedBy := []member{{ID: creatorID, Username: "creator"}}
	if !slices.Equal(ms.Members[seen.OwnerGroupID], ownedBy) || !slices.Equal(ms.Members[unseen.OwnerGroupID], ownedBy) ||
		len(ms.Members[seen.ConsumerGroupID]) != 0 || len(ms.Members) != 3 ||
		!slices.Equal(ms.Missing, []string{"no-such-group"}) || len(ms.More) != 0 {
		t.Errorf("members: %+v", ms)
	}
	ms = answer{}
	harness.Do(t, "POST", base+"/members", admin, map[string]any{"max": 1,
		"groups": []string{seen.OwnerGroupID, unseen.OwnerGroupID, seen.ConsumerGroupID}}).Expect(t, 200).JSON(t, &ms)
	if len(ms.Members) != 1 || !slices.Equal(ms.Members[seen.OwnerGroupID], ownedBy) ||
		!slices.Equal(ms.More, []string{unseen.OwnerGroupID, seen.ConsumerGroupID}) {
		t.Errorf("members, room for one: %+v", ms)
	}

	id := f.row(t, "SEEN").ID
	marked := func(attrs map[string][]string) bool {
		return slices.Equal(attrs[keycloak.MarkerAttribute], []string{id})
	}
	var inventory []struct {
		Path       string
		Attributes map[string][]string
	}
	harness.Do(t, "GET", groupsURL, admin, nil).Expect(t, 200).JSON(t, &inventory)
	found := map[string]bool{}
	for _, g := range inventory {
		found[g.Path] = marked(g.Attributes)
	}
	if marked, ok := found["/Communities/SEEN"]; !ok || !marked || len(found) != 2 {
		t.Errorf("groups under the root: %v, want SEEN's marked and UNSEEN's", inventory)
	}

	// The markers: SEEN's and UNSEEN's, one role and one policy each.
	var markers struct {
		Roles            []struct{ Name, Marker string }
		AdminPermissions bool
		Policies         []struct{ Name, Description string }
	}
	harness.Do(t, "GET", markedURL, admin, nil).Expect(t, 200).JSON(t, &markers)
	if len(markers.Roles) != 2 || len(markers.Policies) != 2 || !markers.AdminPermissions ||
		!slices.ContainsFunc(markers.Roles, func(r struct{ Name, Marker string }) bool { return r.Name == "PERM_SEEN_READ" && r.Marker == id }) {
		t.Errorf("marked: %+v, want one role and one policy for each of SEEN and UNSEEN", markers)
	}

	var got struct {
		Roles []struct {
			Name       string
			Attributes map[string][]string
		}
		Groups []struct {
			Path       string
			Attributes map[string][]string
			RealmRoles []string
		}
		AdminPermissions bool
		Policies         []struct{ Name, Description string }
	}
	harness.Do(t, "POST", base+"/survey", admin, page).Expect(t, 200).JSON(t, &got)
	roles := map[string]bool{}
	for _, r := range got.Roles {
		roles[r.Name] = marked(r.Attributes)
	}
	if !roles["PERM_SEEN_READ"] || !roles["PERM_SEEN_WRITE"] || len(roles) != 3 {
		t.Errorf("survey roles: %v, want SEEN's, with its marker, and FHIR_READ", got.Roles)
	}
	if marked, ok := roles["FHIR_READ"]; !ok || marked {
		t.Errorf("survey roles: FHIR_READ present %v, marked %v", ok, marked)
	}
	groups := map[string][]string{}
	for _, g := range got.Groups {
		if !marked(g.Attributes) {
			t.Errorf("survey group %s lacks SEEN's marker: %v", g.Path, g.Attributes)
		}
		groups[g.Path] = g.RealmRoles
	}
	label, ok := groups["/Communities/SEEN"]
	if len(groups) != 4 || !ok || len(label) != 0 ||
		!slices.Equal(groups["/Communities/SEEN/owner"], []string{keycloak.OwnerRole}) ||
		!slices.Contains(groups["/Communities/SEEN/author"], "PERM_SEEN_WRITE") ||
		!slices.Equal(groups["/Communities/SEEN/consumer"], []string{"PERM_SEEN_READ"}) {
		t.Errorf("survey groups: %v, want SEEN's four and no other", groups)
	}
	var names []string
	for _, p := range got.Policies {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if !got.AdminPermissions || !slices.Equal(names, policies) {
		t.Errorf("survey admin permissions %v, policies %v; want %v", got.AdminPermissions, names, policies)
	}
}

// earlier is the drift problem of what an earlier version made.
const earlier = "made by an earlier version; the realm's community-privileges token mapper replaces it"

// legacyScope makes client scope name in realm as earlier versions made a
// community's scopes, with the marker of community id ("": none, as by
// hand), and returns its id.
func legacyScope(t *testing.T, env *harness.Env, realm *harness.Realm, name, id string) string {
	t.Helper()
	admin := realm.AdminToken(t)
	harness.Do(t, "POST", env.KeycloakURL+"/admin/realms/"+realm.Name+"/client-scopes", admin, map[string]any{
		"name": name, "protocol": "openid-connect", "attributes": map[string]string{
			"include.in.token.scope": "true", "display.on.consent.screen": "false", keycloak.MarkerAttribute: id}}).Expect(t, 201)
	scopes, err := realm.GC.GetClientScopes(context.Background(), admin, realm.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scopes {
		if *s.Name == name {
			return *s.ID
		}
	}
	t.Fatalf("client scope %s not found after creating it", name)
	return ""
}

// TestOneReconcilerAtATime: while one reconciler holds the lock, another
// does nothing.
func TestOneReconcilerAtATime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other := f.env.StartService(t, f.env.Config(f.realm.Name))
	// hold takes realm's reconciler lock until release is called, which
	// says whether the lock was had.
	hold := func(realm string) (release func() bool) {
		held, stop, done := make(chan struct{}), make(chan struct{}), make(chan bool)
		go func() {
			ran, err := f.svc.Store.AsLeader(ctx, realm, func(context.Context) error {
				close(held)
				<-stop
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			done <- ran
		}()
		<-held
		return func() bool { close(stop); return <-done }
	}
	release := hold(f.realm.Name)
	if _, ran, err := other.Server.Service().Reconcile(ctx, []string{f.realm.Name}, false); err != nil || ran {
		t.Errorf("a second reconciler ran (%v, %v) while the first held the lock", ran, err)
	}
	if !release() {
		t.Error("the first reconciler did not run")
	}
	if _, ran, err := other.Server.Service().Reconcile(ctx, []string{f.realm.Name}, false); err != nil || !ran {
		t.Errorf("after release the second did not run: %v, %v", ran, err)
	}

	// The command line, asked for two realms of which another holds one,
	// still reports the realm it did, and names the one it could not.
	locked := f.realm.Name + "-held"
	release = hold(locked)
	out, code := runCLI(t, f.env, f.env.DatabaseURL, nil, "reconcile", "--realms", f.realm.Name+","+locked, "-o", "json")
	release()
	var reports []community.Report
	if code != 1 || !strings.Contains(out, "another reconciler is running for "+locked+";") ||
		json.NewDecoder(strings.NewReader(out)).Decode(&reports) != nil || len(reports) != 1 || reports[0].Realm != f.realm.Name {
		t.Errorf("reconcile of a free and a held realm: exit %d\n%s", code, out)
	}
}

// TestDriftCheckGoesOnPastAFailingRealm: a realm whose drift check fails
// (here: no such realm in Keycloak) once stopped the check of the realms
// after it in --realms, and the metrics kept its last count with nothing
// saying the check had stopped. Each realm is now checked on its own: the
// good realm's drift is found and published, the failing one is counted
// as an error and has no time of a finished check. The command line
// reports the realm it checked, and exits 1 for the other.
func TestDriftCheckGoesOnPastAFailingRealm(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "GONE", "A group deleted by hand").Expect(t, 201)
	deleteGroupByHand(t, f, "Communities/GONE/consumer")
	missing := f.realm.Name + "-missing"

	svc := f.env.StartService(t, f.env.Config(missing, f.realm.Name))
	svc.Server.ReconcileOnce(context.Background())
	metrics := string(harness.Do(t, "GET", svc.URL+"/metrics", "", nil).Expect(t, 200).Body)
	for _, want := range []string{
		// The group, and the two permissions Keycloak took it out of.
		`communities_drift_found{realm="` + f.realm.Name + `"} 3`,
		`communities_drift_check_errors_total{realm="` + missing + `"} 1`,
		`communities_drift_check_errors_total{realm="` + f.realm.Name + `"} 0`,
		"communities_reconcile_runs_total 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The failed realm has no count (not a 0 that would clear an alert),
	// and its last finished check is still the service's start.
	if strings.Contains(metrics, `communities_drift_found{realm="`+missing+`"}`) {
		t.Errorf("metrics hold a count for the realm not checked")
	}
	finished := func(realm string) float64 {
		t.Helper()
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, `communities_drift_check_last_finished_timestamp_seconds{realm="`+realm+`"} `); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
		t.Fatalf("no last finished check of %s", realm)
		return 0
	}
	if finished(f.realm.Name) <= finished(missing) {
		t.Errorf("the good realm's last finished check (%v) is not after the failed one's, the start (%v)", finished(f.realm.Name), finished(missing))
	}

	out, code := runCLI(t, f.env, f.env.DatabaseURL, nil, "reconcile", "--realms", missing+","+f.realm.Name, "-o", "json")
	var reports []community.Report
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&reports); err != nil || code != 1 || len(reports) != 2 {
		t.Fatalf("reconcile of a failing and a good realm: exit %d, %v\n%s", code, err, out)
	}
	if r := reports[0]; r.Realm != missing || !r.Incomplete {
		t.Errorf("the failing realm's report: %+v", r)
	}
	if r := reports[1]; r.Realm != f.realm.Name || r.Incomplete || len(r.Drift["GONE"]) == 0 {
		t.Errorf("the good realm's report: %+v", r)
	}
}

// TestAdminPermissionsSwitchedOffAreFoundAndMended: an administrator
// switches the realm's admin permissions off after the service made its
// communities (owners lose the console's membership management). The
// service read them once per process, so no check confirmed it, and the
// survey made every community a suspect, each confirmed in its own calls,
// on every pass. Now the drift check reports the realm's drift once, in a
// number of calls that does not grow with the communities, and a repair
// switches them on and leaves every community whole.
func TestAdminPermissionsSwitchedOffAreFoundAndMended(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for _, l := range []string{"OFFA", "OFFB", "OFFC"} {
		f.create(t, sd, l, "Permissions off "+l).Expect(t, 201)
	}
	realmURL := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name
	harness.Do(t, "PUT", realmURL, f.realm.AdminToken(t), map[string]any{"adminPermissionsEnabled": false}).Expect(t, 204)

	svc := f.svc.Server.Service()
	before := f.svc.KeycloakRoundTrips()
	reports, _, err := svc.Reconcile(ctx, []string{f.realm.Name}, false)
	calls := f.svc.KeycloakRoundTrips() - before
	if err != nil || len(reports) != 1 {
		t.Fatalf("check: %+v %v", reports, err)
	}
	want := community.Drift{What: "admin permissions of realm " + f.realm.Name, Problem: "not enabled"}
	if rep := reports[0]; !slices.Equal(rep.RealmDrift, []community.Drift{want}) || len(rep.Drift) != 0 {
		t.Errorf("check: realm drift %v, communities' %v; want the realm's alone", rep.RealmDrift, rep.Drift)
	}
	// The survey's four calls, and one to confirm: no call per community.
	t.Logf("a check of 3 communities with admin permissions off: %d Keycloak calls", calls)
	if calls > 5 {
		t.Errorf("the check made %d Keycloak calls for 3 communities, want at most 5", calls)
	}

	reports, _, err = svc.Reconcile(ctx, []string{f.realm.Name}, true)
	if err != nil || len(reports) != 1 || len(reports[0].RealmDrift) != 1 || !reports[0].RealmDrift[0].Repaired {
		t.Fatalf("repair: %+v %v", reports, err)
	}
	var rep struct {
		AdminPermissionsEnabled bool `json:"adminPermissionsEnabled"`
	}
	harness.Do(t, "GET", realmURL, f.realm.AdminToken(t), nil).Expect(t, 200).JSON(t, &rep)
	if !rep.AdminPermissionsEnabled {
		t.Error("admin permissions still off after the repair")
	}
	if reports, _, err = svc.Reconcile(ctx, []string{f.realm.Name}, false); err != nil || reports[0].DriftCount() != 0 {
		t.Errorf("after the repair: %+v %v", reports, err)
	}
}

// TestRealmWidePoliciesAreVerified: the realm-wide admin policies that
// every community's permissions name were found by name and taken as they
// were. One someone else had made, naming every user's default roles,
// gave every user the admin console's membership management of every
// community the service then made. Now a create refuses to build on it (a
// 409 that names it and leaves nothing), the drift check reports it as
// critical in a few calls, before any community exists too, and a repair
// makes it name the service-desk role again, after which creates go on.
// One changed after creates is found by the next check, and mended by a
// community's repair too (apply's).
func TestRealmWidePoliciesAreVerified(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.realm.AdminToken(t)
	realmURL := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name
	harness.Do(t, "PUT", realmURL, admin, map[string]any{"adminPermissionsEnabled": true}).Expect(t, 204)
	base := f.realm.AdminPermissions(t, admin)
	roleID := func(name string) string {
		r, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, name)
		if err != nil {
			t.Fatalf("role %s: %v", name, err)
		}
		return *r.ID
	}
	everyone, serviceDesk := roleID("default-roles-"+f.realm.Name), roleID("service-desk")
	harness.Do(t, "POST", base+"/policy/role", admin, map[string]any{"name": "role:service-desk", "logic": "POSITIVE",
		"roles": []map[string]any{{"id": everyone, "required": false}}}).Expect(t, 201)

	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	refused := f.create(t, sd, "PRE", "Before the repair").Expect(t, 409)
	if refused.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(refused.Body), "role:service-desk") || !strings.Contains(string(refused.Body), "default-roles-") {
		t.Errorf("a create on a foreign role:service-desk: %s %s", refused.Header.Get("Content-Type"), refused.Body)
	}
	if left := f.realm.Artefacts(t, "Communities", "PRE"); len(left) > 0 {
		t.Errorf("the refused create left %v", left)
	}

	svc := f.svc.Server.Service()
	check := func(repair bool) community.Report {
		t.Helper()
		rep, _ := f.reconcile(t, repair)
		return rep
	}
	wrong := func(rep community.Report, policy string, repaired bool) {
		t.Helper()
		if len(rep.RealmDrift) != 1 {
			t.Fatalf("realm drift %+v, want %s's alone", rep.RealmDrift, policy)
		}
		if d := rep.RealmDrift[0]; d.What != "admin permission "+policy || !d.Critical || d.Repaired != repaired ||
			!strings.Contains(d.Problem, "default-roles-"+f.realm.Name) {
			t.Errorf("realm drift %+v, want %s critical, naming the default roles (repaired %v)", d, policy, repaired)
		}
	}
	before := f.svc.KeycloakRoundTrips()
	wrong(check(false), "role:service-desk", false)
	// The survey's 3 calls and 2 to confirm, with no community.
	if calls := f.svc.KeycloakRoundTrips() - before; calls > 5 {
		t.Errorf("the check made %d Keycloak calls, want at most 5", calls)
	}
	wrong(check(true), "role:service-desk", true)
	roles := func(policy string) []string {
		t.Helper()
		var found []struct{ ID string }
		harness.Do(t, "GET", base+"/policy?exact=true&name="+url.QueryEscape(policy), admin, nil).Expect(t, 200).JSON(t, &found)
		if len(found) != 1 {
			t.Fatalf("policy %s: %d found", policy, len(found))
		}
		var p struct {
			Roles []struct{ ID string }
		}
		harness.Do(t, "GET", base+"/policy/role/"+found[0].ID, admin, nil).Expect(t, 200).JSON(t, &p)
		var ids []string
		for _, r := range p.Roles {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return ids
	}
	if got := roles("role:service-desk"); !slices.Equal(got, []string{serviceDesk}) {
		t.Errorf("after the repair role:service-desk names %v, want the service-desk role %s alone", got, serviceDesk)
	}
	f.create(t, sd, "PRE", "After the repair").Expect(t, 201)

	// Changed after the service made communities on it.
	var found []struct{ ID string }
	harness.Do(t, "GET", base+"/policy?exact=true&name=role:community-admins", admin, nil).Expect(t, 200).JSON(t, &found)
	owner := roleID(keycloak.OwnerRole)
	harness.Do(t, "PUT", base+"/policy/role/"+found[0].ID, admin, map[string]any{"id": found[0].ID, "name": "role:community-admins",
		"logic": "POSITIVE", "roles": []map[string]any{{"id": owner}, {"id": serviceDesk}, {"id": everyone}}}).Expect(t, 201)
	wrong(check(false), "role:community-admins", false)
	// A community's own repair (apply's of a stale record) mends the
	// realm's drift too.
	repaired, err := svc.Repair(ctx, f.realm.Name, "PRE", community.Actor{ClientID: "communities-cli", ServiceDesk: true})
	if err != nil || !slices.ContainsFunc(repaired, func(d community.Drift) bool {
		return d.What == "admin permission role:community-admins" && d.Critical && d.Repaired
	}) {
		t.Errorf("a community's repair: %+v %v, want role:community-admins repaired", repaired, err)
	}
	want := []string{owner, serviceDesk}
	slices.Sort(want)
	if got := roles("role:community-admins"); !slices.Equal(got, want) {
		t.Errorf("after the repair role:community-admins names %v, want %v", got, want)
	}
	// A permission widened to impersonation, narrowed to one user: the
	// repair's read-back says whether the PUT made it so.
	harness.Do(t, "GET", base+"/policy?exact=true&name=users:community-admins", admin, nil).Expect(t, 200).JSON(t, &found)
	harness.Do(t, "PUT", base+"/permission/scope/"+found[0].ID, admin, map[string]any{"id": found[0].ID, "name": "users:community-admins",
		"resourceType": "Users", "resources": []string{f.realm.UserID(t, "consumer")}, "scopes": []string{"view", "manage-group-membership", "impersonate"},
		"policies": []string{"role:community-admins"}}).Expect(t, 201)
	rep := check(false)
	if len(rep.RealmDrift) != 1 || rep.RealmDrift[0].What != "admin permission users:community-admins" || !rep.RealmDrift[0].Critical ||
		!strings.Contains(rep.RealmDrift[0].Problem, "impersonate") {
		t.Errorf("realm drift %+v, want users:community-admins critical, naming impersonate", rep.RealmDrift)
	}
	if rep = check(true); len(rep.RealmDrift) != 1 || !rep.RealmDrift[0].Repaired {
		t.Errorf("repair: realm drift %+v, want users:community-admins repaired", rep.RealmDrift)
	}
	if rep := check(false); rep.DriftCount() != 0 || len(rep.RealmDrift) != 0 {
		t.Errorf("after the repairs: %+v", rep)
	}
}

// TestCommunityPoliciesAreVerified: a community's own admin policies were
// checked by name and marker only. One changed to name the consumer group
// as owners gave every consumer the membership management of the
// community, and passed every drift check; and a realm-wide policy
// deleted and made again by a repair was no longer named by the
// communities' permissions (Keycloak takes a deleted policy out of those
// that name it), so service desk lost the console's membership management
// of every community made before, while the repair said it was mended.
// Both are now found by the drift check and repaired: the first as
// critical (it grants more, to the consumers and to whoever a token's
// "groups" claim names), the second not (it grants less).
func TestCommunityPoliciesAreVerified(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "CPV", "Policies verified").Expect(t, 201)
	f.create(t, sd, "CPW", "Policies untouched").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	base := f.realm.AdminPermissions(t, admin)
	policyID := func(name string) string {
		t.Helper()
		var found []struct{ ID string }
		harness.Do(t, "GET", base+"/policy?exact=true&name="+url.QueryEscape(name), admin, nil).Expect(t, 200).JSON(t, &found)
		if len(found) != 1 {
			t.Fatalf("policy %s: %d found", name, len(found))
		}
		return found[0].ID
	}
	groupID := func(path string) string {
		t.Helper()
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, path)
		if err != nil {
			t.Fatalf("group %s: %v", path, err)
		}
		return *g.ID
	}
	// names are what the policy or permission of id names in Keycloak's
	// own answer (groups by id; the policies it builds on by name).
	names := func(id, what string) []string {
		t.Helper()
		var out []string
		switch what {
		case "groups":
			var p struct{ Groups []struct{ ID string } }
			harness.Do(t, "GET", base+"/policy/group/"+id, admin, nil).Expect(t, 200).JSON(t, &p)
			for _, g := range p.Groups {
				out = append(out, g.ID)
			}
		case "policies":
			var ps []struct{ Name string }
			harness.Do(t, "GET", base+"/policy/"+id+"/associatedPolicies", admin, nil).Expect(t, 200).JSON(t, &ps)
			for _, p := range ps {
				out = append(out, p.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	var calls int64
	check := func(repair bool) (rep community.Report) {
		t.Helper()
		rep, calls = f.reconcile(t, repair)
		return rep
	}
	// drifted is the community drift of what, if it is critical and
	// repaired as said; it returns its problem.
	drifted := func(rep community.Report, label, what string, critical, repaired bool) string {
		t.Helper()
		for _, d := range rep.Drift[label] {
			if d.What == what {
				if d.Critical != critical || d.Repaired != repaired {
					t.Errorf("%s: %+v, want critical %v, repaired %v", label, d, critical, repaired)
				}
				return d.Problem
			}
		}
		t.Errorf("%s's drift %+v names no %s", label, rep.Drift[label], what)
		return ""
	}

	owner, consumer := groupID("Communities/CPV/owner"), groupID("Communities/CPV/consumer")
	owners := policyID("community:CPV:owners")
	harness.Do(t, "PUT", base+"/policy/group/"+owners, admin, map[string]any{"id": owners, "name": "community:CPV:owners",
		"description": keycloak.MarkerAttribute + "=" + f.row(t, "CPV").ID, "logic": "POSITIVE", "groupsClaim": "groups",
		"groups": []map[string]any{{"id": owner}, {"id": consumer}}}).Expect(t, 201)
	rep := check(false)
	if p := drifted(rep, "CPV", "admin permission community:CPV:owners", true, false); !strings.Contains(p, "/Communities/CPV/consumer") ||
		!strings.Contains(p, `claim "groups"`) {
		t.Errorf("the owners' policy's problem %q names neither the consumer group nor the claim", p)
	}
	if len(rep.Drift) != 1 || len(rep.RealmDrift) != 0 {
		t.Errorf("drift %+v, realm drift %+v; want CPV's alone", rep.Drift, rep.RealmDrift)
	}
	if got := names(owners, "groups"); !slices.Equal(got, slices.Sorted(slices.Values([]string{owner, consumer}))) {
		t.Errorf("a check changed the owners' policy: it names %v", got)
	}
	drifted(check(true), "CPV", "admin permission community:CPV:owners", true, true)
	if got := names(owners, "groups"); !slices.Equal(got, []string{owner}) {
		t.Errorf("after the repair the owners' policy names %v, want the owner group %s alone", got, owner)
	}

	// role:service-desk deleted: Keycloak takes it out of every
	// community's aggregate.
	harness.Do(t, "DELETE", base+"/policy/"+policyID("role:service-desk"), admin, nil).Expect(t, 204)
	admins := map[string]string{}
	for _, l := range []string{"CPV", "CPW"} {
		admins[l] = policyID("community:" + l + ":membership-admins")
		if got := names(admins[l], "policies"); slices.Contains(got, "role:service-desk") {
			t.Fatalf("%s's aggregate still names the deleted role:service-desk: %v", l, got)
		}
	}
	rep = check(false)
	if len(rep.RealmDrift) != 1 || rep.RealmDrift[0].What != "admin permission role:service-desk" || rep.RealmDrift[0].Problem != "missing" {
		t.Errorf("realm drift %+v, want role:service-desk missing", rep.RealmDrift)
	}
	// It grants less (fails closed): drift, not critical.
	for _, l := range []string{"CPV", "CPW"} {
		drifted(rep, l, "admin permission community:"+l+":membership-admins", false, false)
	}
	// Keycloak's doing, to every community at once: found by the survey
	// alone, with no community's own check (about 11 calls each), so a
	// check costs the same at 10,000 communities (but a survey page a 500):
	// the survey's 4 and the realm's confirmation, 2. (Before, 28.)
	if calls > 6 {
		t.Errorf("a check of two communities without role:service-desk made %d Keycloak calls, want 6", calls)
	}
	rep = check(true)
	for _, l := range []string{"CPV", "CPW"} {
		drifted(rep, l, "admin permission community:"+l+":membership-admins", false, true)
		if got := names(admins[l], "policies"); !slices.Equal(got, []string{"community:" + l + ":owners", "role:service-desk"}) {
			t.Errorf("after the repair %s's aggregate names %v, want its owners' policy and role:service-desk", l, got)
		}
	}
	// The survey, the realm's repair (which looks its roles up now, in
	// case one was made again), the survey again, and the mend's read of
	// the realm-wide policies and one call for both: no community's own
	// calls.
	if calls > 16 {
		t.Errorf("a repair of two communities without role:service-desk made %d Keycloak calls, want 16", calls)
	}
	if rep := check(false); rep.DriftCount() != 0 || len(rep.RealmDrift) != 0 {
		t.Errorf("after the repairs: %+v", rep)
	}
	// What the policies say comes in the survey's page: a clean pass is
	// still the survey's 3 calls and 1 a page.
	if calls > 4 {
		t.Errorf("a clean pass made %d Keycloak calls, want 4", calls)
	}

	// role:service-desk made again by hand as a user policy naming a
	// consumer: a repair cannot change its type back, so neither the
	// bulk mend nor CPV's own repair (CPV's view permission is gone too) may
	// put it back into an aggregate, where it would let that consumer
	// manage the community's membership.
	harness.Do(t, "DELETE", base+"/policy/"+policyID("role:service-desk"), admin, nil).Expect(t, 204)
	harness.Do(t, "POST", base+"/policy/user", admin, map[string]any{"name": "role:service-desk", "logic": "POSITIVE",
		"users": []string{f.realm.UserID(t, "consumer")}}).Expect(t, 201)
	harness.Do(t, "DELETE", base+"/policy/"+policyID("community:CPV:view"), admin, nil).Expect(t, 204)
	rep = check(true)
	if len(rep.RealmDrift) != 1 || !rep.RealmDrift[0].Critical || rep.RealmDrift[0].Repaired {
		t.Errorf("realm drift %+v, want role:service-desk's type, critical and left", rep.RealmDrift)
	}
	drifted(rep, "CPV", "admin permission community:CPV:view", false, false)
	for _, l := range []string{"CPV", "CPW"} {
		drifted(rep, l, "admin permission community:"+l+":membership-admins", false, false)
		if got := names(admins[l], "policies"); !slices.Equal(got, []string{"community:" + l + ":owners"}) {
			t.Errorf("beside a role:service-desk of another type, %s's aggregate names %v, want its owners' policy alone", l, got)
		}
	}
	harness.Do(t, "DELETE", base+"/policy/"+policyID("role:service-desk"), admin, nil).Expect(t, 204)
	check(true)
	if rep := check(false); rep.DriftCount() != 0 {
		t.Errorf("after the administrator deleted it and a repair: %+v", rep)
	}
}

// TestOwnerRoleMadeAgainIsMappedAgain: the realm role community-owner
// deleted by hand goes from every community's owner group (owners lose
// the console's Users and Groups pages), and one made again maps to none.
// Each community was a suspect, confirmed with its own check: 28 Keycloak
// calls for a check of two, about 110,000 at 10,000 communities on every
// pass. Now the survey tells it apart: a check makes no call per
// community, and a repair maps the role again to every owner group in one
// call once the realm-wide policy naming the role names the new one.
func TestOwnerRoleMadeAgainIsMappedAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	labels := []string{"ORA", "ORB"}
	for _, l := range labels {
		f.create(t, sd, l, "Owner role "+l).Expect(t, 201)
	}
	admin := f.realm.AdminToken(t)
	mapped := func() (n int) {
		t.Helper()
		for _, l := range labels {
			m, err := f.realm.GC.GetRoleMappingByGroupID(ctx, admin, f.realm.Name, f.row(t, l).Artifacts.OwnerGroupID)
			if err != nil {
				t.Fatal(err)
			}
			if m.RealmMappings != nil && slices.ContainsFunc(*m.RealmMappings, func(r gocloak.Role) bool { return *r.Name == keycloak.OwnerRole }) {
				n++
			}
		}
		return n
	}
	// shared checks that each community's one drift is its owner group's
	// mapping, repaired as said, and that the realm's is the role policy.
	shared := func(rep community.Report, repaired bool) {
		t.Helper()
		for _, l := range labels {
			want := []community.Drift{{What: "role mapping /Communities/" + l + "/owner → " + keycloak.OwnerRole, Problem: "missing", Repaired: repaired}}
			if !slices.Equal(rep.Drift[l], want) {
				t.Errorf("%s's drift %+v, want %+v", l, rep.Drift[l], want)
			}
		}
		if len(rep.RealmDrift) != 1 || rep.RealmDrift[0].What != "admin permission role:community-admins" || !rep.RealmDrift[0].Critical ||
			rep.RealmDrift[0].Repaired != repaired {
			t.Errorf("realm drift %+v, want role:community-admins naming a role that is gone, repaired %v", rep.RealmDrift, repaired)
		}
	}
	if err := f.realm.GC.DeleteRealmRole(ctx, admin, f.realm.Name, keycloak.OwnerRole); err != nil {
		t.Fatal(err)
	}
	rep, calls := f.reconcile(t, false)
	shared(rep, false)
	// The survey's 4 and the realm's confirmation, 2: no community's own
	// check (before, 28).
	if calls > 6 {
		t.Errorf("a check of two communities without %s made %d Keycloak calls, want 6", keycloak.OwnerRole, calls)
	}
	// Until an administrator makes it again (realm-export/ defines its
	// composites), a repair says so and changes nothing.
	before := f.svc.KeycloakRoundTrips()
	reports, _, err := f.svc.Server.Service().Reconcile(ctx, []string{f.realm.Name}, true)
	if err == nil || !strings.Contains(err.Error(), keycloak.OwnerRole) || len(reports) != 1 || !reports[0].Incomplete {
		t.Errorf("a repair without %s: %+v, %v; want it incomplete, naming the role", keycloak.OwnerRole, reports, err)
	}
	if calls := f.svc.KeycloakRoundTrips() - before; calls > 8 {
		t.Errorf("a repair without %s made %d Keycloak calls, want at most 8", keycloak.OwnerRole, calls)
	}
	if _, err := f.realm.GC.CreateRealmRole(ctx, admin, f.realm.Name, gocloak.Role{Name: gocloak.StringP(keycloak.OwnerRole)}); err != nil {
		t.Fatal(err)
	}
	rep, calls = f.reconcile(t, false)
	shared(rep, false)
	if calls > 6 || mapped() != 0 {
		t.Errorf("a check of two communities beside a new %s made %d Keycloak calls and mapped it to %d; want 6 and none", keycloak.OwnerRole, calls, mapped())
	}
	// The realm-wide policy is made to name the new role (looked up now,
	// not the id this process cached), then both owner groups map it, in
	// one call.
	rep, calls = f.reconcile(t, true)
	shared(rep, true)
	if n := mapped(); n != len(labels) {
		t.Errorf("after the repair %d owner groups map %s, want %d", n, keycloak.OwnerRole, len(labels))
	}
	// The survey (4), the realm's repair (6), the survey again (4), the
	// realm-wide policies read again and one call for both groups.
	if calls > 16 {
		t.Errorf("a repair of two communities beside a new %s made %d Keycloak calls, want 16", keycloak.OwnerRole, calls)
	}
	if rep, calls := f.reconcile(t, false); rep.DriftCount() != 0 || calls > 4 {
		t.Errorf("after the repair: %+v in %d calls, want no drift in 4", rep, calls)
	}
}

// TestApplyRepairsTogether: apply repaired each community its plan named
// with the community's own Ensure, even for what every community lacks
// alike. With the realm's admin permissions switched off (the realm's
// drift, which a plan named with every community until the
// twenty-second session, and now names once) and community-owner
// deleted and made again, a plan names every community: at 10,000
// communities that apply made hundreds of thousands of Keycloak calls.
// Its repairs are now one drift pass, as the drift check's repair: the
// realm's drift mended once, the owner groups granted the role in one
// call. The test fails on the code before.
func TestApplyRepairsTogether(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	labels := []string{"APA", "APB", "APC"}
	file := &provision.File{Realm: f.realm.Name}
	for _, l := range labels {
		f.create(t, sd, l, "Applied "+l).Expect(t, 201)
		file.Communities = append(file.Communities, provision.Community{Label: l, Name: "Applied " + l})
	}
	admin := f.realm.AdminToken(t)
	if err := f.realm.GC.DeleteRealmRole(ctx, admin, f.realm.Name, keycloak.OwnerRole); err != nil {
		t.Fatal(err)
	}
	if _, err := f.realm.GC.CreateRealmRole(ctx, admin, f.realm.Name, gocloak.Role{Name: gocloak.StringP(keycloak.OwnerRole)}); err != nil {
		t.Fatal(err)
	}
	realmURL := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name
	harness.Do(t, "PUT", realmURL, admin, map[string]any{"adminPermissionsEnabled": false}).Expect(t, 204)

	p := provision.New(f.svc.Server.Service(), community.Actor{ClientID: "communities-cli", Username: "communities-cli"})
	plan, err := p.Plan(ctx, file, false)
	if err != nil || len(plan) != len(labels)+1 {
		t.Fatalf("plan %v, %v: want a repair of the realm and of each community", plan, err)
	}
	if a := plan[0]; a.Kind != "repair-realm" || a.Label != "" || !strings.Contains(a.Detail, "admin permissions") {
		t.Errorf("plan's %v, want the realm's admin permissions repaired, first", a)
	}
	for i, a := range plan[1:] {
		if a.Kind != "repair" || a.Label != labels[i] || strings.Contains(a.Detail, "admin permissions") ||
			!strings.Contains(a.Detail, "/owner → "+keycloak.OwnerRole) {
			t.Errorf("plan's %v, want %s repaired: its owner group's role (the realm's admin permissions are the realm's)", a, labels[i])
		}
	}
	before := f.svc.KeycloakRoundTrips()
	if err := p.Apply(ctx, file, plan, nil); err != nil {
		t.Fatalf("apply: %v", err)
	}
	calls := f.svc.KeycloakRoundTrips() - before
	t.Logf("apply's repair of %d communities: %d Keycloak calls", len(labels), calls)
	// The survey (5), the realm's repair (switched on, role:community-admins
	// named the role's old id: 11), the survey again (5), the realm-wide
	// policies read again and one call for the three owner groups.
	if calls > 23 {
		t.Errorf("apply's repair of %d communities made %d Keycloak calls, want 23", len(labels), calls)
	}
	for _, l := range labels {
		m, err := f.realm.GC.GetRoleMappingByGroupID(ctx, admin, f.realm.Name, f.row(t, l).Artifacts.OwnerGroupID)
		if err != nil {
			t.Fatal(err)
		}
		if m.RealmMappings == nil || !slices.ContainsFunc(*m.RealmMappings, func(r gocloak.Role) bool { return *r.Name == keycloak.OwnerRole }) {
			t.Errorf("after apply %s's owner group does not map %s", l, keycloak.OwnerRole)
		}
	}
	// The realm's repair is audited once, with no label, as the
	// pipeline's; each owner group's as its community's.
	if trail := f.svc.AuditTrail(t, f.realm.Name, ""); len(trail) != 1 || trail[0].Action != "repair" ||
		trail[0].ActorClient != "communities-cli" || !strings.Contains(trail[0].Detail, "admin permissions") {
		t.Errorf("the realm's audit trail %+v, want one repair by communities-cli naming its admin permissions", trail)
	}
	for _, l := range labels {
		if trail := f.svc.AuditTrail(t, f.realm.Name, l); !slices.ContainsFunc(trail, func(ev community.AuditEvent) bool {
			return ev.Action == "repair" && ev.ActorClient == "communities-cli" && strings.Contains(ev.Detail, keycloak.OwnerRole)
		}) {
			t.Errorf("%s's audit trail %+v, want its owner group's repair by communities-cli", l, trail)
		}
	}
	if plan, err := p.Plan(ctx, file, false); err != nil || len(plan) != 0 {
		t.Errorf("plan after apply: %v, %v; want nothing to do", plan, err)
	}
}

// reconcile runs one drift pass (a repair with repair) over the fixture's
// realm in process, and returns its report and the Keycloak calls it made.
func (f *fixture) reconcile(t *testing.T, repair bool) (community.Report, int64) {
	t.Helper()
	before := f.svc.KeycloakRoundTrips()
	reports, _, err := f.svc.Server.Service().Reconcile(context.Background(), []string{f.realm.Name}, repair)
	if err != nil || len(reports) != 1 {
		t.Fatalf("reconcile (repair %v): %+v %v", repair, reports, err)
	}
	calls := f.svc.KeycloakRoundTrips() - before
	t.Logf("reconcile (repair %v) of %d communities: %d Keycloak calls", repair, reports[0].Communities, calls)
	return reports[0], calls
}
