package integration

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

type accessAnswer struct {
	Realm            string              `json:"realm"`
	Username         string              `json:"username"`
	CommunityCreator bool                `json:"communityCreator"`
	ServiceDesk      bool                `json:"serviceDesk"`
	CanCreate        bool                `json:"canCreate"`
	CanChange        bool                `json:"canChange"`
	Console          bool                `json:"console"`
	Owned            []string            `json:"owned"`
	Memberships      map[string][]string `json:"memberships"`
}

func (f *fixture) access(t *testing.T, token string) accessAnswer {
	t.Helper()
	var a accessAnswer
	harness.Do(t, "GET", f.svc.URL+"/auth/realms/"+f.realm.Name+"/communities-authz/access", token, nil).Expect(t, 200).JSON(t, &a)
	return a
}

// TestAccessEndpoint: "what may I do here", the question the admin
// console's Communities page asks once. The answer follows the caller's
// roles, their memberships in Keycloak now (not when the token was issued)
// and --change-clients, counts only real community groups, and costs the
// same few Keycloak calls however many communities the realm has.
func TestAccessEndpoint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	creator, consumer := f.realm.UserToken(t, "creator"), f.realm.UserToken(t, "consumer")
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	a := f.access(t, creator)
	if !a.CommunityCreator || a.ServiceDesk || !a.CanCreate || !a.CanChange || !a.Console || len(a.Owned) != 0 || len(a.Memberships) != 0 || a.Username != "creator" || a.Realm != f.realm.Name {
		t.Errorf("creator before creating: %+v", a)
	}
	a = f.access(t, consumer)
	if a.CommunityCreator || a.ServiceDesk || a.CanCreate || a.Console || len(a.Owned) != 0 {
		t.Errorf("consumer: %+v", a)
	}
	a = f.access(t, sd)
	if !a.ServiceDesk || !a.CanCreate || !a.Console {
		t.Errorf("service desk: %+v", a)
	}

	// The same token, after creating: now owner (read from Keycloak).
	f.create(t, creator, "NDD", "National data dictionary").Expect(t, 201)
	a = f.access(t, creator)
	if !slices.Equal(a.Owned, []string{"NDD"}) || !slices.Equal(a.Memberships["NDD"], []string{"owner"}) {
		t.Errorf("creator after creating NDD: %+v", a)
	}
	harness.Do(t, "PUT", f.base+"/NDD/author/consumer", creator, nil).Expect(t, 204)
	a = f.access(t, consumer)
	if len(a.Owned) != 0 || !slices.Equal(a.Memberships["NDD"], []string{"author"}) || a.Console {
		t.Errorf("consumer as author of NDD: %+v", a)
	}
	// Owning alone opens the page: consumer becomes an owner.
	harness.Do(t, "PUT", f.base+"/NDD/owner/consumer", creator, nil).Expect(t, 204)
	if a = f.access(t, consumer); !a.Console || !slices.Equal(a.Memberships["NDD"], []string{"owner", "author"}) || a.CanCreate {
		t.Errorf("consumer as owner and author of NDD: %+v", a)
	}

	// A group made by hand where a community's would be counts for nothing.
	admin := f.realm.AdminToken(t)
	root, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	fakeID, err := f.realm.GC.CreateChildGroup(ctx, admin, f.realm.Name, *root.ID, gocloak.Group{Name: gocloak.StringP("FAKE")})
	if err != nil {
		t.Fatal(err)
	}
	ownerID, err := f.realm.GC.CreateChildGroup(ctx, admin, f.realm.Name, fakeID, gocloak.Group{Name: gocloak.StringP("owner")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.AddUserToGroup(ctx, admin, f.realm.Name, f.realm.UserID(t, "creator"), ownerID); err != nil {
		t.Fatal(err)
	}
	if a = f.access(t, creator); !slices.Equal(a.Owned, []string{"NDD"}) || len(a.Memberships) != 1 {
		t.Errorf("a hand-made /Communities/FAKE/owner counted: %+v", a)
	}

	// Tokens of a client outside --change-clients may only read: the
	// answer says so (the default list, without the harness's
	// terminology-client).
	cfg := f.env.Config(f.realm.Name)
	cfg.ChangeClients = []string{"service-desk", "security-admin-console", "communities-cli"}
	strict := &fixture{env: f.env, realm: f.realm, svc: f.env.StartService(t, cfg)}
	if a = strict.access(t, creator); a.CanChange || a.CanCreate || !slices.Equal(a.Owned, []string{"NDD"}) {
		t.Errorf("creator through terminology-client under the default --change-clients: %+v", a)
	}
	if a = strict.access(t, f.realm.PasswordToken(t, "communities-cli", "creator")); !a.CanChange || !a.CanCreate {
		t.Errorf("creator through communities-cli: %+v", a)
	}

	// Flat in the number of communities.
	trips := func() int64 {
		before := f.svc.KeycloakRoundTrips()
		f.access(t, creator)
		return f.svc.KeycloakRoundTrips() - before
	}
	few := trips()
	for _, l := range []string{"A1", "A2", "A3", "A4"} {
		f.create(t, sd, l, "Community "+l).Expect(t, 201)
	}
	if many := trips(); many > few || many > 2 {
		t.Errorf("Keycloak round trips of one access answer: %d with 1 community, %d with 5", few, many)
	}

	// No token, no answer.
	harness.Do(t, "GET", f.svc.URL+"/realms/"+f.realm.Name+"/communities-authz/access", "", nil).Expect(t, http.StatusUnauthorized)
}
