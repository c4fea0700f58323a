package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestDefaultCommunities: every managed realm has Open and Restricted, and
// a user registered after start-up consumes both (seed 000: "you will
// automatically join the 'Restricted' and 'Open' communities").
func TestDefaultCommunities(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.DefaultCommunities = []string{"OPEN=Open", "RESTRICTED=Restricted"}
	svc := env.StartService(t, cfg)
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	list := func() []string {
		var out []map[string]string
		harness.Do(t, "GET", base, sd, nil).Expect(t, 200).JSON(t, &out)
		return labels(out)
	}
	harness.Eventually(t, 30*time.Second, "the default communities", func() bool {
		return slices.Equal(list(), []string{"OPEN", "RESTRICTED"})
	})
	// Made by the service, without owners: service desk appoints them.
	var m members
	harness.Do(t, "GET", base+"/OPEN/members", sd, nil).Expect(t, 200).JSON(t, &m)
	if len(m["owner"]) != 0 {
		t.Errorf("default community has owners %v", m["owner"])
	}

	// A second replica starting finds them and makes nothing new.
	again := env.StartService(t, cfg)
	if !again.Server.EnsureDefaults(context.Background()) {
		t.Fatal("EnsureDefaults failed on a realm that has them")
	}
	if got := list(); !slices.Equal(got, []string{"OPEN", "RESTRICTED"}) {
		t.Errorf("after a second start: %v", got)
	}

	// A user created now is a consumer of both.
	ctx := context.Background()
	admin := realm.AdminToken(t)
	id, err := realm.GC.CreateUser(ctx, admin, realm.Name, gocloak.User{
		Username: gocloak.StringP("newcomer"), Enabled: gocloak.BoolP(true), EmailVerified: gocloak.BoolP(true),
		Email: gocloak.StringP("newcomer@example.org"), FirstName: gocloak.StringP("New"), LastName: gocloak.StringP("Comer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := realm.GC.SetPassword(ctx, admin, id, realm.Name, "newcomer-pass", false); err != nil {
		t.Fatal(err)
	}
	tok := realm.UserToken(t, "newcomer")
	mustContain(t, "newcomer's scopes", scopesOf(t, tok), "grouping/OPEN.read", "grouping/RESTRICTED.read")
	mustLack(t, "newcomer's scopes", scopesOf(t, tok), "grouping/OPEN.write")
	// The realm's token form is scopes: each privilege once, not also as an authority.
	mustLack(t, "newcomer's authorities", authoritiesOf(t, tok), "PERM_OPEN_READ", "PERM_RESTRICTED_READ")
}
