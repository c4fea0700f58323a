package integration

import (
	"context"
	"net/url"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

// adminAPI calls Keycloak's admin REST API with a user's own token, as the
// admin console does on their behalf.
func adminAPI(t *testing.T, f *fixture, token, method, path string, body any) int {
	t.Helper()
	return harness.Do(t, method, f.env.KeycloakURL+"/admin/realms/"+f.realm.Name+path, token, body).Status
}

// consoleToken is a user's token from the realm's admin-cli client (password
// grant), with which the admin REST API acts as the console does.
func consoleToken(t *testing.T, f *fixture, username string) string {
	t.Helper()
	resp, err := f.realm.TryToken(url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {username}, "password": {username + "-pass"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestRepairRestoresOwnersConsoleRights: Keycloak takes a deleted group out
// of the admin permissions that named it, so a group a repair makes anew
// was named by none of them, and its owners could no longer manage
// members in the console. The repair makes them again around the new
// groups: whether the owner group alone or the whole community group was
// deleted, an owner appointed again can add a consumer with their own token.
func TestRepairRestoresOwnersConsoleRights(t *testing.T) {
	f := newFixture(t)
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for _, c := range []struct{ label, deleted string }{{"OWNERLESS", "owner"}, {"GROUPLESS", ""}} {
		f.create(t, sd, c.label, "Repaired "+c.label).Expect(t, 201)
		path := "Communities/" + c.label
		if c.deleted != "" {
			path += "/" + c.deleted
		}
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.realm.GC.DeleteGroup(ctx, admin, f.realm.Name, *g.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.svc.Server.Service().Reconcile(ctx, []string{f.realm.Name}, true); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"OWNERLESS", "GROUPLESS"} {
		harness.Do(t, "PUT", f.base+"/"+l+"/owner/author", sd, nil).Expect(t, 204)
	}
	owner, consumerID := consoleToken(t, f, "author"), f.realm.UserID(t, "consumer")
	for _, l := range []string{"OWNERLESS", "GROUPLESS"} {
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/"+l+"/consumer")
		if err != nil {
			t.Fatal(err)
		}
		if got := adminAPI(t, f, owner, "PUT", "/users/"+consumerID+"/groups/"+*g.ID, nil); got != 204 {
			t.Errorf("%s: the owner adds a consumer in Keycloak after the repair: %d, want 204", l, got)
		}
	}
}

// TestOwnersManageOnlyTheirCommunityInKeycloak: with their own tokens,
// against Keycloak's admin REST API (the calls the console makes), a
// community owner can find users and add and remove them in their
// community's groups, and Keycloak refuses them everything else.
func TestOwnersManageOnlyTheirCommunityInKeycloak(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, f.realm.UserToken(t, "author"), "A", "Community A").Expect(t, 201)
	f.create(t, f.realm.UserToken(t, "creator"), "B", "Community B").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	gid := func(path string) string {
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, path)
		if err != nil {
			t.Fatalf("group %s: %v", path, err)
		}
		return *g.ID
	}
	otherID, err := f.realm.GC.CreateGroup(ctx, admin, f.realm.Name, gocloak.Group{Name: gocloak.StringP("Other")})
	if err != nil {
		t.Fatal(err)
	}
	consumerID := f.realm.UserID(t, "consumer")
	owner := consoleToken(t, f, "author")

	allowed := []struct {
		what, method, path string
		want               int
	}{
		{"list users", "GET", "/users?first=0&max=11&q=", 200},
		{"search users", "GET", "/users?search=consumer", 200},
		{"count users", "GET", "/users/count", 200},
		{"open a user", "GET", "/users/" + consumerID, 200},
		{"a user's groups", "GET", "/users/" + consumerID + "/groups", 200},
		{"the group tree", "GET", "/groups", 200},
		{"the community's groups", "GET", "/groups/" + gid("Communities/A") + "/children", 200},
	}
	for _, path := range []string{"Communities/A/owner", "Communities/A/author", "Communities/A/consumer"} {
		allowed = append(allowed,
			struct {
				what, method, path string
				want               int
			}{"join " + path, "PUT", "/users/" + consumerID + "/groups/" + gid(path), 204},
			struct {
				what, method, path string
				want               int
			}{"leave " + path, "DELETE", "/users/" + consumerID + "/groups/" + gid(path), 204})
	}
	for _, c := range allowed {
		if got := adminAPI(t, f, owner, c.method, c.path, nil); got != c.want {
			t.Errorf("owner of A: %s (%s %s) = %d, want %d", c.what, c.method, c.path, got, c.want)
		}
	}
	refused := []struct {
		what, method, path string
		body               any
	}{
		{"join B's consumer group", "PUT", "/users/" + consumerID + "/groups/" + gid("Communities/B/consumer"), nil},
		{"join B's owner group", "PUT", "/users/" + consumerID + "/groups/" + gid("Communities/B/owner"), nil},
		{"join a non-community group", "PUT", "/users/" + consumerID + "/groups/" + otherID, nil},
		{"join the community's parent group", "PUT", "/users/" + consumerID + "/groups/" + gid("Communities/A"), nil},
		{"create a user", "POST", "/users", map[string]any{"username": "intruder"}},
		{"edit a user", "PUT", "/users/" + consumerID, map[string]any{"firstName": "Changed"}},
		{"delete a user", "DELETE", "/users/" + consumerID, nil},
		{"map a realm role to a user", "POST", "/users/" + consumerID + "/role-mappings/realm", []map[string]any{{"name": "service-desk"}}},
		{"list roles", "GET", "/roles", nil},
		{"create a role", "POST", "/roles", map[string]any{"name": "intruder"}},
		{"list clients", "GET", "/clients", nil},
		{"create a group", "POST", "/groups", map[string]any{"name": "intruder"}},
		{"change the realm", "PUT", "", map[string]any{"displayName": "changed"}},
	}
	for _, c := range refused {
		if got := adminAPI(t, f, owner, c.method, c.path, c.body); got != 403 {
			t.Errorf("owner of A: %s = %d, want 403", c.what, got)
		}
	}
	// Memberships after all that: consumer is in none of A's or B's groups.
	groups, err := f.realm.GC.GetUserGroups(ctx, admin, f.realm.Name, consumerID, gocloak.GetGroupsParams{})
	if err != nil || len(groups) != 0 {
		t.Errorf("consumer's groups after the owner's calls: %v %v", groups, err)
	}

	// Service desk manages every community's membership, B's too.
	sd := consoleToken(t, f, "servicedesk")
	if got := adminAPI(t, f, sd, "PUT", "/users/"+consumerID+"/groups/"+gid("Communities/B/consumer"), nil); got != 204 {
		t.Errorf("service desk joining B: %d", got)
	}
	// A user who owns nothing sees nothing.
	if got := adminAPI(t, f, consoleToken(t, f, "consumer"), "GET", "/users", nil); got != 403 {
		t.Errorf("a consumer listing users: %d", got)
	}
	// When A is deleted, its permissions go with it.
	harness.Do(t, "DELETE", f.base+"/A", f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret), nil).Expect(t, 204)
	reports, _, err := f.svc.Server.Service().Reconcile(ctx, []string{f.realm.Name}, false)
	if err != nil || reports[0].DriftCount() != 0 {
		t.Errorf("after deleting A: %v %+v", err, reports)
	}
}
