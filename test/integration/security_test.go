package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/Nerzal/gocloak/v13"
	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/test/harness"
)

// The security review's findings (issue 12), each proved against the real
// Keycloak and PostgreSQL. The decision-rule findings are proved in
// decision_test.go and pkg/decision.

// TestChangeClients: the service's audience is given to clients on purpose,
// and only the clients in --change-clients may change anything.
func TestChangeClients(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	svc := env.StartService(t, env.Config(realm.Name)) // the harness adds terminology-client
	cfg := env.Config(realm.Name)
	cfg.ChangeClients = []string{"service-desk", "security-admin-console", "communities-cli"} // the default
	strict := env.StartService(t, cfg)
	base := strict.URL + "/realms/" + realm.Name + "/communities"
	body := func(l string) map[string]string {
		return map[string]string{"securityLabel": l, "communityName": "Community " + l}
	}

	fhirClientToken := realm.UserToken(t, "creator") // terminology-client
	resp := harness.Do(t, "POST", base, fhirClientToken, body("AZP1")).Expect(t, 403)
	if !strings.Contains(string(resp.Body), "terminology-client") {
		t.Errorf("refusal does not name the client: %s", resp.Body)
	}
	harness.Do(t, "GET", base, fhirClientToken, nil).Expect(t, 200) // reading stays open
	cliToken := realm.PasswordToken(t, "communities-cli", "creator")
	harness.Do(t, "POST", base, cliToken, body("AZP1")).Expect(t, 201)
	harness.Do(t, "PUT", base+"/AZP1/consumer/consumer", fhirClientToken, nil).Expect(t, 403)
	harness.Do(t, "DELETE", base+"/AZP1", fhirClientToken, nil).Expect(t, 403)
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "POST", strict.URL+"/realms/"+realm.Name+"/system-accounts", fhirClientToken,
		map[string]string{"clientId": "azp-x", "purpose": "consumer", "content": "published"}).Expect(t, 403)
	harness.Do(t, "DELETE", base+"/AZP1", sd, nil).Expect(t, 204)

	// A client added later, as a third-party app would be, gets the realm's
	// default scopes: they no longer carry the service's audience, so even
	// with service-desk roles its tokens are refused.
	ctx := context.Background()
	admin := realm.AdminToken(t)
	cid, err := realm.GC.CreateClient(ctx, admin, realm.Name, gocloak.Client{
		ClientID: gocloak.StringP("third-party"), Secret: gocloak.StringP("third-party-secret"),
		PublicClient: gocloak.BoolP(false), ServiceAccountsEnabled: gocloak.BoolP(true), StandardFlowEnabled: gocloak.BoolP(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	saUser, err := realm.GC.GetClientServiceAccount(ctx, admin, realm.Name, cid)
	if err != nil {
		t.Fatal(err)
	}
	role, err := realm.GC.GetRealmRole(ctx, admin, realm.Name, "service-desk")
	if err != nil {
		t.Fatal(err)
	}
	if err := realm.GC.AddRealmRoleToUser(ctx, admin, realm.Name, *saUser.ID, []gocloak.Role{*role}); err != nil {
		t.Fatal(err)
	}
	third := realm.ClientToken(t, "third-party", "third-party-secret")
	if aud := claims(t, third)["aud"]; aud != nil && strings.Contains(strings.Join(toStrings(aud), " "), "communities") {
		t.Errorf("a new client's token carries the service's audience: %v", aud)
	}
	harness.Do(t, "POST", svc.URL+"/realms/"+realm.Name+"/communities", third, body("AZP2")).Expect(t, 401)
}

func toStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestCreatingNeedsAuthorAndGrantedRole: seed 000, "Users with system/API
// level Author access who have been granted a Community Owner role can
// create communities". Every author once could.
func TestCreatingNeedsAuthorAndGrantedRole(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		user string
		want int
	}{
		{"approver", 403},  // an author, not granted the creator role
		{"applicant", 403}, // granted the creator role, but a consumer at API level
		{"consumer", 403},
		{"creator", 201}, // an author granted the role
	} {
		resp := f.create(t, f.realm.UserToken(t, c.user), "CR"+strings.ToUpper(c.user[:3]), "Created by "+c.user)
		if resp.Status != c.want {
			t.Errorf("%s creating: %s, want %d", c.user, resp, c.want)
		}
	}

	// The role is checked live: taken away, a token issued before still
	// names it but creates nothing.
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	stale := f.realm.UserToken(t, "creator")
	role, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, "community-creator")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.DeleteRealmRoleFromUser(ctx, admin, f.realm.Name, f.realm.UserID(t, "creator"), []gocloak.Role{*role}); err != nil {
		t.Fatal(err)
	}
	f.create(t, stale, "CRSTALE", "Created with a stale role").Expect(t, 403)
	if got := labels(f.list(t, stale)); slices.Contains(got, "CRSTALE") {
		t.Errorf("a stale creator role made a community: %v", got)
	}
}

// TestServiceDeskIsConfirmedLive: service desk's role, like the creator
// role, counts only while Keycloak still grants it. Taken away, a token
// issued before still names it but changes nothing: no create, delete,
// member list or change, and no system accounts.
func TestServiceDeskIsConfirmedLive(t *testing.T) {
	f := newFixture(t)
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	stale := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, stale, "DESK", "Made while service desk").Expect(t, 201)
	clients, err := f.realm.GC.GetClients(ctx, admin, f.realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("service-desk")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("service-desk client: %v %v", clients, err)
	}
	account, err := f.realm.GC.GetClientServiceAccount(ctx, admin, f.realm.Name, *clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	role, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, "service-desk")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.DeleteRealmRoleFromUser(ctx, admin, f.realm.Name, *account.ID, []gocloak.Role{*role}); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "the stale token's roles", realmRolesOf(t, stale), "service-desk")

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", f.base, map[string]string{"securityLabel": "DESK2", "communityName": "Made after"}},
		{"DELETE", f.base + "/DESK", nil},
		{"GET", f.base + "/DESK/members", nil},
		{"PUT", f.base + "/DESK/consumer/consumer", nil},
		{"GET", f.svc.URL + "/realms/" + f.realm.Name + "/system-accounts", nil},
	} {
		resp := harness.Do(t, c.method, c.path, stale, c.body).Expect(t, 403)
		if !strings.Contains(string(resp.Body), "service desk role has been taken away") {
			t.Errorf("%s %s: the refusal does not say why: %s", c.method, c.path, resp.Body)
		}
	}
	if got := labels(f.list(t, stale)); !slices.Equal(got, []string{"DESK"}) {
		t.Errorf("communities after the refusals: %v", got)
	}
	members, err := f.realm.GC.GetGroupMembers(ctx, admin, f.realm.Name, f.row(t, "DESK").Artifacts.ConsumerGroupID, gocloak.GetGroupsParams{})
	if err != nil || len(members) != 0 {
		t.Errorf("consumers after the refused change: %v (%v)", members, err)
	}
}

// TestDisabledUsersLoseTheirPowers: a token outlives its user's disabling,
// so the live checks ask about the user as Keycloak sees them now: a
// disabled creator holds no creator role, and a disabled owner is no owner.
// Each of their changes is refused and changes nothing.
func TestDisabledUsersLoseTheirPowers(t *testing.T) {
	f := newFixture(t)
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	stale := f.realm.UserToken(t, "creator")
	f.create(t, stale, "GONE", "Owned by a leaver").Expect(t, 201)
	id := f.realm.UserID(t, "creator")
	user, err := f.realm.GC.GetUserByID(ctx, admin, f.realm.Name, id)
	if err != nil {
		t.Fatal(err)
	}
	user.Enabled = gocloak.BoolP(false)
	if err := f.realm.GC.UpdateUser(ctx, admin, f.realm.Name, *user); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", f.base, map[string]string{"securityLabel": "GONE2", "communityName": "Made after leaving"}},
		{"DELETE", f.base + "/GONE", nil},
		{"GET", f.base + "/GONE/members", nil},
		{"PUT", f.base + "/GONE/consumer/consumer", nil},
	} {
		harness.Do(t, c.method, c.path, stale, c.body).Expect(t, 403)
	}
	if got := labels(f.list(t, f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret))); !slices.Equal(got, []string{"GONE"}) {
		t.Errorf("communities after the refusals: %v", got)
	}
	members, err := f.realm.GC.GetGroupMembers(ctx, admin, f.realm.Name, f.row(t, "GONE").Artifacts.ConsumerGroupID, gocloak.GetGroupsParams{})
	if err != nil || len(members) != 0 {
		t.Errorf("consumers after the refused change: %v (%v)", members, err)
	}
	var held []string
	harness.Do(t, "GET", f.env.KeycloakURL+"/admin/realms/"+f.realm.Name+"/communities/held?user="+id+"&role=community-creator", admin, nil).
		Expect(t, 200).JSON(t, &held)
	if len(held) != 0 {
		t.Errorf("a disabled user holds %v", held)
	}
}

// TestHeldRolesAreAsKeycloakGrantsThem: the extension's held answers which
// of the roles named a user holds now, through groups and composites too,
// and only to a caller who may view the user.
func TestHeldRolesAreAsKeycloakGrantsThem(t *testing.T) {
	f := newFixture(t)
	admin := f.realm.AdminToken(t)
	base := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name + "/communities/held"
	ask := "&role=community-creator&role=service-desk&role=" + keycloak.OwnerRole
	creator := base + "?user=" + f.realm.UserID(t, "creator") + ask
	harness.Do(t, "GET", creator, "", nil).Expect(t, 401)
	harness.Do(t, "GET", creator, f.realm.UserToken(t, "consumer"), nil).Expect(t, 403)
	var held []string
	harness.Do(t, "GET", creator, admin, nil).Expect(t, 200).JSON(t, &held)
	if !slices.Equal(held, []string{"community-creator"}) {
		t.Errorf("the creator holds %v; want only community-creator of those asked", held)
	}
	// Made an owner, the creator holds community-owner through the owner
	// group's role mapping.
	f.create(t, f.realm.UserToken(t, "creator"), "HELD", "Held").Expect(t, 201)
	held = nil
	harness.Do(t, "GET", creator, admin, nil).Expect(t, 200).JSON(t, &held)
	if !slices.Equal(held, []string{"community-creator", keycloak.OwnerRole}) {
		t.Errorf("the creator, an owner, holds %v", held)
	}
	held = nil
	harness.Do(t, "GET", base+"?user="+uuid.NewString()+ask, admin, nil).Expect(t, 200).JSON(t, &held)
	if len(held) != 0 {
		t.Errorf("no user holds %v", held)
	}
	harness.Do(t, "GET", base+"?user="+f.realm.UserID(t, "creator"), admin, nil).Expect(t, 400)
}

// TestUnmappedScopeNeverReachesNonMembers: Keycloak puts a client scope
// with no role scope mapping into every user's token. Communities make no
// client scopes any more, but earlier versions did, and anyone may make one
// of a community's name; in each way such a scope can lose its mapping, no
// token of a non-member carries it.
func TestUnmappedScopeNeverReachesNonMembers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name
	for _, l := range []string{"UNMAPA", "UNMAPB", "UNMAPC", "UNMAPD"} {
		f.create(t, sd, l, "Unmapped "+l).Expect(t, 201)
	}
	clients, err := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("terminology-client")})
	if err != nil {
		t.Fatal(err)
	}
	// attach makes scope name as an earlier version did (marked with the
	// community's id, or by hand: marker ""), mapped to the community's
	// read role if mapped, and a default scope of the FHIR client.
	attach := func(label, marker string, mapped bool) string {
		t.Helper()
		id := legacyScope(t, f.env, f.realm, "grouping/"+label+".read", marker)
		if mapped {
			read, err := gc.GetRealmRole(ctx, admin, realm, "PERM_"+label+"_READ")
			if err != nil {
				t.Fatal(err)
			}
			if err := gc.CreateClientScopesScopeMappingsRealmRoles(ctx, admin, realm, id, []gocloak.Role{*read}); err != nil {
				t.Fatal(err)
			}
		}
		if err := gc.AddDefaultScopeToClient(ctx, admin, realm, *clients[0].ID, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	nonMember := func(what, scope string) {
		t.Helper()
		mustLack(t, what+": a non-member's token", scopesOf(t, f.realm.UserToken(t, "consumer")), scope)
	}
	svc := f.svc.Server.Service()
	reportCritical := func(label string) {
		t.Helper()
		reports, _, err := svc.Reconcile(ctx, []string{realm}, false)
		if err != nil {
			t.Fatal(err)
		}
		critical := false
		for _, d := range reports[0].Drift[label] {
			critical = critical || d.Critical && d.Repaired && strings.Contains(d.What, "grouping/"+label+".read")
		}
		if !critical {
			t.Errorf("no critical drift, detached, reported for %s: %v", label, reports[0].Drift[label])
		}
	}

	// A: an earlier version's scope; the role deleted by hand takes its
	// scope mapping with it; the report-only drift check takes the scope
	// off the FHIR client at once.
	attach("UNMAPA", f.row(t, "UNMAPA").ID, true)
	if err := gc.DeleteRealmRole(ctx, admin, realm, "PERM_UNMAPA_READ"); err != nil {
		t.Fatal(err)
	}
	reportCritical("UNMAPA")
	nonMember("role deleted, report mode", "grouping/UNMAPA.read")

	// B: a hand-made scope of the community's name with no mapping: the
	// report-only check detaches it too, and leaves it (not ours).
	idB := attach("UNMAPB", "", false)
	reportCritical("UNMAPB")
	nonMember("hand-made scope, report mode", "grouping/UNMAPB.read")
	if _, err := gc.GetClientScope(ctx, admin, realm, idB); err != nil {
		t.Errorf("the hand-made scope was deleted: %v", err)
	}

	// C: an earlier version's scope, mapped: deleting the community
	// deletes it with the roles.
	idC := attach("UNMAPC", f.row(t, "UNMAPC").ID, true)
	harness.Do(t, "DELETE", f.base+"/UNMAPC", sd, nil).Expect(t, 204)
	nonMember("earlier version's scope after delete", "grouping/UNMAPC.read")
	if _, err := gc.GetClientScope(ctx, admin, realm, idC); err == nil {
		t.Error("delete left the earlier version's scope")
	}

	// D: a hand-made scope mapped to our role: deleting the community
	// deletes the role, and with it the mapping, so the scope is taken off
	// the FHIR client.
	attach("UNMAPD", "", true)
	harness.Do(t, "DELETE", f.base+"/UNMAPD", sd, nil).Expect(t, 204)
	nonMember("hand-made scope left by delete", "grouping/UNMAPD.read")

	// Members still get what they should, from the realm's token mapper.
	author := f.realm.UserID(t, "author")
	g, err := gc.GetGroupByPath(ctx, admin, realm, "Communities/UNMAPB/author")
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.AddUserToGroup(ctx, admin, realm, author, *g.ID); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "member's token", scopesOf(t, f.realm.UserToken(t, "author")), "grouping/UNMAPB.write")
}

// TestStalePolicyIsNotTakenAsOurs: an admin permission of the community's
// name that Keycloak already holds (409) once counted as made, whatever
// groups it named.
func TestStalePolicyIsNotTakenAsOurs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "WARMUP", "Warm up").Expect(t, 201) // admin permissions are on, the realm's permissions made
	admin := f.realm.AdminToken(t)
	gc, realm := f.realm.GC, f.realm.Name
	other, err := gc.CreateGroup(ctx, admin, realm, gocloak.Group{Name: gocloak.StringP("Other people")})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := gc.GetClients(ctx, admin, realm, gocloak.GetClientsParams{ClientID: gocloak.StringP("admin-permissions")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("admin-permissions client: %v %v", clients, err)
	}
	stale := map[string]any{"name": "community:STALE:owners", "logic": "POSITIVE",
		"groups": []map[string]any{{"id": other, "extendChildren": false}}}
	harness.Do(t, "POST", f.env.KeycloakURL+"/admin/realms/"+realm+"/clients/"+*clients[0].ID+"/authz/resource-server/policy/group",
		admin, stale).Expect(t, 201)

	resp := f.create(t, sd, "STALE", "Stale").Expect(t, 409)
	if !strings.Contains(string(resp.Body), "community:STALE:owners") {
		t.Errorf("conflict does not name the policy: %s", resp.Body)
	}
	if left := f.realm.Artefacts(t, "Communities", "STALE"); len(left) > 0 {
		t.Errorf("a refused create left %v", left)
	}
	if _, err := gc.GetRealmRole(ctx, admin, realm, "PERM_STALE_READ"); err == nil {
		t.Error("a refused create left its roles")
	}
}

// TestLastOwnerUnderConcurrency: two owners removing each other at the same
// moment once both passed the last-owner check and left none.
func TestLastOwnerUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	creator := f.realm.UserToken(t, "creator")
	author := f.realm.UserToken(t, "author")
	f.create(t, creator, "RACE", "Owners racing").Expect(t, 201)
	for round := 0; round < 5; round++ {
		harness.Do(t, "PUT", f.base+"/RACE/owner/author", creator, nil).Expect(t, 204)
		harness.Do(t, "PUT", f.base+"/RACE/owner/creator", author, nil).Expect(t, 204)
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, c := range []struct{ token, victim string }{{creator, "author"}, {author, "creator"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = harness.Do(t, "DELETE", f.base+"/RACE/owner/"+c.victim, c.token, nil).Status
			}()
		}
		wg.Wait()
		sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
		var m members
		harness.Do(t, "GET", f.base+"/RACE/members", sd, nil).Expect(t, 200).JSON(t, &m)
		if len(m["owner"]) == 0 {
			t.Fatalf("round %d: answers %v and no owner left", round, statuses)
		}
		if statuses[0] == http.StatusNoContent && statuses[1] == http.StatusNoContent {
			t.Fatalf("round %d: both removals succeeded", round)
		}
		// Restore both owners for the next round (service desk may).
		for _, u := range []string{"author", "creator"} {
			harness.Do(t, "PUT", f.base+"/RACE/owner/"+u, sd, nil).Expect(t, 204)
		}
	}
}

// TestReadinessHidesInternals: /readyz answers anyone, so it names no host
// or driver error.
func TestReadinessHidesInternals(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.KeycloakURL = "http://127.0.0.1:1"
	svc := env.StartService(t, cfg)
	resp := harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 503)
	for _, leak := range []string{"127.0.0.1", "refused", "dial"} {
		if strings.Contains(string(resp.Body), leak) {
			t.Errorf("readiness answer names %q: %s", leak, resp.Body)
		}
	}
}

// TestAuditKeepsTheRegistryLabel: the audit trail once kept the label as
// the path spelled it.
func TestAuditKeepsTheRegistryLabel(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "AUDITED", "Audited").Expect(t, 201)
	harness.Do(t, "PUT", f.base+"/audited/consumer/consumer", sd, nil).Expect(t, 204)
	harness.Do(t, "DELETE", f.base+"/audited", sd, nil).Expect(t, 204)
	var labels []string
	err := f.svc.Store.DB().Raw("SELECT label FROM audit_events WHERE realm = ? AND action IN ('add-member', 'delete')", f.realm.Name).
		Scan(&labels).Error
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) != 2 || labels[0] != "AUDITED" || labels[1] != "AUDITED" {
		t.Errorf("audited labels %v, want the registry's AUDITED twice", labels)
	}
}
