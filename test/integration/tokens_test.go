package integration

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

// setTokenForm sets the form of the realm's community-privileges token
// mapper (in the built-in "roles" client scope) and returns Keycloak's
// answer status.
func (f *fixture) setTokenForm(t *testing.T, form string) int {
	t.Helper()
	ctx := context.Background()
	admin := f.realm.AdminToken(t)
	scopes, err := f.realm.GC.GetClientScopes(ctx, admin, f.realm.Name)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(scopes, func(s *gocloak.ClientScope) bool { return *s.Name == "roles" })
	if i < 0 {
		t.Fatal("the realm has no roles client scope")
	}
	base := f.env.KeycloakURL + "/admin/realms/" + f.realm.Name + "/client-scopes/" + *scopes[i].ID + "/protocol-mappers/models"
	var mappers []map[string]any
	harness.Do(t, "GET", base, admin, nil).Expect(t, 200).JSON(t, &mappers)
	for _, m := range mappers {
		if m["protocolMapper"] != "communities-privileges-mapper" {
			continue
		}
		m["config"].(map[string]any)["communities.form"] = form
		return harness.Do(t, "PUT", base+"/"+m["id"].(string), admin, m).Status
	}
	t.Fatal("the roles client scope has no communities-privileges-mapper")
	return 0
}

// TestTokenForms: the realm's community-privileges token mapper puts each
// community privilege into tokens exactly once, in the form the realm is
// configured for; a non-member's token carries none, and a form the mapper
// does not know is refused when it is set.
func TestTokenForms(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "FORM", "Token forms").Expect(t, 201)
	f.create(t, sd, "FORM_B", "Label with an underscore").Expect(t, 201)
	admin := f.realm.AdminToken(t)
	join := func(user, path string) {
		t.Helper()
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.realm.GC.AddUserToGroup(ctx, admin, f.realm.Name, f.realm.UserID(t, user), *g.ID); err != nil {
			t.Fatal(err)
		}
	}
	join("author", "Communities/FORM/author")
	join("author", "Communities/FORM_B/consumer")
	// The wildcard role (every community) is a community privilege too.
	all, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, "PERM_READ")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.AddRealmRoleToUser(ctx, admin, f.realm.Name, f.realm.UserID(t, "approver"), []gocloak.Role{*all}); err != nil {
		t.Fatal(err)
	}

	// A grouping scope made by hand and attached to the FHIR client grants
	// nothing: only the mapper puts community privileges into tokens.
	stray, err := f.realm.GC.CreateClientScope(ctx, admin, f.realm.Name, gocloak.ClientScope{Name: gocloak.StringP("grouping/STRAY.read"),
		Protocol: gocloak.StringP("openid-connect"), ClientScopeAttributes: &gocloak.ClientScopeAttributes{IncludeInTokenScope: gocloak.StringP("true")}})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := f.realm.GC.GetClients(ctx, admin, f.realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("terminology-client")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("terminology-client: %v %v", clients, err)
	}
	if err := f.realm.GC.AddDefaultScopeToClient(ctx, admin, f.realm.Name, *clients[0].ID, stray); err != nil {
		t.Fatal(err)
	}

	perms := []string{"PERM_FORM_READ", "PERM_FORM_WRITE", "PERM_FORM_B_READ"}
	grouping := []string{"grouping/FORM.read", "grouping/FORM.write", "grouping/FORM_B.read"}
	for _, c := range []struct {
		form                string
		scopes, authorities bool
	}{{"scopes", true, false}, {"authorities", false, true}, {"both", true, true}} {
		t.Run(c.form, func(t *testing.T) {
			if status := f.setTokenForm(t, c.form); status != 204 {
				t.Fatalf("set form %s: %d", c.form, status)
			}
			tok := f.realm.UserToken(t, "author")
			scope, auth, realmRoles := scopesOf(t, tok), authoritiesOf(t, tok), realmRolesOf(t, tok)
			if c.scopes {
				mustContain(t, "scope", scope, grouping...)
			} else {
				mustLack(t, "scope", scope, grouping...)
			}
			if c.authorities {
				mustContain(t, "authorities", auth, perms...)
			} else {
				mustLack(t, "authorities", auth, perms...)
			}
			mustLack(t, "scope", scope, "grouping/STRAY.read")
			// No privilege twice: never in realm_access, once where it is.
			mustLack(t, "realm_access.roles", realmRoles, perms...)
			for _, p := range append(slices.Clone(perms), grouping...) {
				if n := count(auth, p) + count(scope, p); n > 1 {
					t.Errorf("%s appears %d times", p, n)
				}
			}
			// API-level roles are the realm's business and stay where they were.
			mustContain(t, "realm_access.roles", realmRoles, "FHIR_READ")

			wild := f.realm.UserToken(t, "approver")
			if c.scopes {
				mustContain(t, "wildcard holder's scope", scopesOf(t, wild), "grouping/*.read")
			}
			if c.authorities {
				mustContain(t, "wildcard holder's authorities", authoritiesOf(t, wild), "PERM_READ")
			} else {
				mustLack(t, "wildcard holder's authorities", authoritiesOf(t, wild), "PERM_READ")
			}
			mustLack(t, "wildcard holder's realm roles", realmRolesOf(t, wild), "PERM_READ")

			outsider := f.realm.UserToken(t, "consumer")
			for _, s := range scopesOf(t, outsider) {
				if strings.HasPrefix(s, "grouping/") {
					t.Errorf("a non-member's token carries %s", s)
				}
			}
			mustLack(t, "non-member's authorities", authoritiesOf(t, outsider), perms...)
		})
	}
	if status := f.setTokenForm(t, "everything"); status != 400 {
		t.Errorf("an unknown form was accepted: %d", status)
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
