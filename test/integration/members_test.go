package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/test/harness"
)

type members map[string][]struct {
	ID, Username string
	Enabled      bool
}

func (m members) usernames(role string) []string {
	var out []string
	for _, u := range m[role] {
		out = append(out, u.Username)
	}
	slices.Sort(out)
	return out
}

// TestMembershipAPI: owners and service desk manage a community's members;
// nobody else does, and the last owner stays unless service desk acts.
func TestMembershipAPI(t *testing.T) {
	f := newFixture(t)
	author := f.realm.UserToken(t, "author")
	creator := f.realm.UserToken(t, "creator")
	consumer := f.realm.UserToken(t, "consumer")
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, author, "NDD", "National data dictionary").Expect(t, 201)
	f.create(t, creator, "OTHER", "Other").Expect(t, 201)
	do := func(method, path, token string, want int) *harness.Response {
		t.Helper()
		u := f.base + path
		resp := harness.Do(t, method, u, token, nil).Expect(t, want)
		harness.ConformsToOpenAPI(t, method, u, resp)
		return resp
	}
	get := func(token string) members {
		var m members
		do("GET", "/NDD/members", token, 200).JSON(t, &m)
		return m
	}

	m := get(author)
	if !slices.Equal(m.usernames("owner"), []string{"author"}) || len(m["author"]) != 0 || len(m["consumer"]) != 0 {
		t.Fatalf("members of a new community: %v", m)
	}
	do("GET", "/NDD/members", consumer, 403)
	do("GET", "/NDD/members", creator, 403)

	// The owner adds a consumer (by username) and an author (by id).
	do("PUT", "/NDD/consumer/consumer", author, 204)
	do("PUT", "/NDD/consumer/consumer", author, 204)
	do("PUT", "/NDD/author/"+f.realm.UserID(t, "approver"), author, 204)
	m = get(author)
	if !slices.Equal(m.usernames("consumer"), []string{"consumer"}) || !slices.Equal(m.usernames("author"), []string{"approver"}) {
		t.Fatalf("after adding: %v", m)
	}
	mustContain(t, "new consumer's scopes", scopesOf(t, f.realm.UserToken(t, "consumer")), "grouping/NDD.read")
	mustContain(t, "new author's scopes", scopesOf(t, f.realm.UserToken(t, "approver")), "grouping/NDD.read", "grouping/NDD.write")

	// Nobody else: not a non-owner, not the owner of another community.
	do("PUT", "/NDD/consumer/creator", creator, 403)
	do("PUT", "/NDD/consumer/creator", consumer, 403)
	do("PUT", "/OTHER/consumer/consumer", author, 403)
	do("DELETE", "/OTHER/owner/creator", author, 403)
	do("PUT", "/NDD/admin/consumer", author, 404)
	do("PUT", "/NDD/consumer/nobody-by-that-name", author, 404)
	do("PUT", "/NOPE/consumer/consumer", sd, 404)

	// The last owner cannot leave on their own...
	do("DELETE", "/NDD/owner/author", author, 409)
	// ...but can once there is another.
	do("PUT", "/NDD/owner/approver", author, 204)
	do("DELETE", "/NDD/owner/author", author, 204)
	if got := get(sd).usernames("owner"); !slices.Equal(got, []string{"approver"}) {
		t.Fatalf("owners %v", got)
	}
	do("GET", "/NDD/members", author, 403) // no longer an owner

	// Service desk may remove the last owner (a dormant community) and
	// appoint new owners (seed 000: "resurrect the community").
	do("DELETE", "/NDD/owner/approver", sd, 204)
	if got := get(sd)["owner"]; len(got) != 0 {
		t.Fatalf("owners of a dormant community: %v", got)
	}
	do("PUT", "/NDD/owner/creator", sd, 204)
	creator = f.realm.UserToken(t, "creator")
	do("DELETE", "/NDD/consumer/consumer", creator, 204)
	do("DELETE", "/NDD/consumer/consumer", creator, 204)
	mustLack(t, "removed consumer's scopes", scopesOf(t, f.realm.UserToken(t, "consumer")), "grouping/NDD.read")

	// A community may be labelled "members": its routes do not collide.
	f.create(t, sd, "members", "Members").Expect(t, 201)
	var c map[string]string
	do("GET", "/members", sd, 200).JSON(t, &c)
	if c["securityLabel"] != "members" {
		t.Errorf("GET /communities/members gave %v", c)
	}
	var mm members
	do("GET", "/members/members", sd, 200).JSON(t, &mm)
	// Service desk made it without naming owners: dormant, no owner.
	if len(mm.usernames("owner")) != 0 {
		t.Errorf("members of community 'members': %v", mm)
	}

	trail := f.svc.AuditTrail(t, f.realm.Name, "NDD")
	var actions []string
	for _, e := range trail {
		actions = append(actions, e.Action+":"+e.Outcome)
	}
	for _, want := range []string{"add-member:success", "remove-member:success", "add-member:denied", "remove-member:denied"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit trail lacks %s: %v", want, actions)
		}
	}
}

// TestMembersArePaged: a community's member list is read a page at a
// time (a default community's consumers may be every user of the realm),
// by username, one Keycloak call for each role asked however many members
// it has; a page or role it does not know is a 400 problem.
func TestMembersArePaged(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "PAGE", "Paged").Expect(t, 201)
	f.create(t, sd, "SMALL", "Small").Expect(t, 201)
	var want []string
	for i := range 150 {
		want = append(want, fmt.Sprintf("page%03d", i))
	}
	f.realm.ImportUsers(t, []string{"/Communities/PAGE/consumer"}, want...)

	read := func(query string) (members, int64) {
		t.Helper()
		u := f.base + "/PAGE/members" + query
		before := f.svc.KeycloakRoundTrips()
		resp := harness.Do(t, "GET", u, sd, nil).Expect(t, 200)
		calls := f.svc.KeycloakRoundTrips() - before
		harness.ConformsToOpenAPI(t, "GET", u, resp)
		var m members
		resp.JSON(t, &m)
		return m, calls
	}
	m, calls := read("")
	if got := m.usernames(community.RoleConsumer); !slices.Equal(got, want[:100]) || len(m) != 3 ||
		len(m[community.RoleOwner]) != 0 || len(m[community.RoleAuthor]) != 0 {
		t.Fatalf("first page of every role: %d consumers (%v…), %d roles", len(got), got[:min(3, len(got))], len(m))
	}
	before := f.svc.KeycloakRoundTrips()
	harness.Do(t, "GET", f.base+"/SMALL/members", sd, nil).Expect(t, 200)
	if small := f.svc.KeycloakRoundTrips() - before; calls != small {
		t.Errorf("reading 150 consumers took %d Keycloak calls, an empty community %d: a read must not grow with the members", calls, small)
	}
	t.Logf("a page of every role: %d Keycloak calls", calls)

	m, _ = read("?role=consumer&first=100&max=100")
	if got := m.usernames(community.RoleConsumer); !slices.Equal(got, want[100:]) || len(m) != 1 {
		t.Errorf("consumers from 100: %d (%v), %d roles", len(got), got, len(m))
	}
	m, _ = read("?role=consumer&first=148&max=5")
	if got := m.usernames(community.RoleConsumer); !slices.Equal(got, want[148:]) {
		t.Errorf("consumers from 148, at most 5: %v", got)
	}
	if m, _ = read("?role=owner"); len(m) != 1 || len(m[community.RoleOwner]) != 0 {
		t.Errorf("owners of a dormant community: %v", m)
	}

	for _, q := range []string{"?role=admin", "?role=", "?role=owner&role=author", "?max=0", "?max=1001", "?first=-1", "?first=x"} {
		u := f.base + "/PAGE/members" + q
		resp := harness.Do(t, "GET", u, sd, nil).Expect(t, 400)
		harness.ConformsToOpenAPI(t, "GET", u, resp)
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", q, ct)
		}
	}
}

// TestDisabledOwnerIsNoOther: a disabled owner cannot manage the
// community (its membership counts for nothing), so beside it the one
// enabled owner is the last and cannot leave; the list says which owner
// is disabled, and the enabled one may remove it.
func TestDisabledOwnerIsNoOther(t *testing.T) {
	f := newFixture(t)
	author := f.realm.UserToken(t, "author")
	f.create(t, author, "DIS", "Disabled owner").Expect(t, 201)
	harness.Do(t, "PUT", f.base+"/DIS/owner/approver", author, nil).Expect(t, 204)
	approver := f.realm.UserID(t, "approver")
	harness.Do(t, "PUT", f.env.KeycloakURL+"/admin/realms/"+f.realm.Name+"/users/"+approver, f.realm.AdminToken(t),
		map[string]any{"enabled": false}).Expect(t, 204)

	var m members
	resp := harness.Do(t, "GET", f.base+"/DIS/members", author, nil).Expect(t, 200)
	harness.ConformsToOpenAPI(t, "GET", f.base+"/DIS/members", resp)
	resp.JSON(t, &m)
	enabled := map[string]bool{}
	for _, o := range m["owner"] {
		enabled[o.Username] = o.Enabled
	}
	if len(enabled) != 2 || !enabled["author"] || enabled["approver"] {
		t.Fatalf("owners and whether each is enabled: %v", enabled)
	}
	harness.Do(t, "DELETE", f.base+"/DIS/owner/author", author, nil).Expect(t, 409)
	harness.Do(t, "DELETE", f.base+"/DIS/owner/approver", author, nil).Expect(t, 204)
	harness.Do(t, "GET", f.base+"/DIS/members", author, nil).Expect(t, 200).JSON(t, &m)
	if got := m.usernames("owner"); !slices.Equal(got, []string{"author"}) {
		t.Errorf("owners %v", got)
	}
}

// TestMissingOwnerGroupIsConflict: an owner group deleted by hand is drift;
// an owner's member calls say so (409, naming the repair) instead of
// "unavailable, try again".
func TestMissingOwnerGroupIsConflict(t *testing.T) {
	f := newFixture(t)
	creator := f.realm.UserToken(t, "creator")
	f.create(t, creator, "NOOWN", "No owner group").Expect(t, 201)
	deleteGroupByHand(t, f, "Communities/NOOWN/owner")
	resp := harness.Do(t, "GET", f.base+"/NOOWN/members", creator, nil).Expect(t, 409)
	harness.ConformsToOpenAPI(t, "GET", f.base+"/NOOWN/members", resp)
	if !strings.Contains(string(resp.Body), "reconcile --repair") {
		t.Errorf("the answer does not point to the repair: %s", resp.Body)
	}
}

// TestStaleGroupIdIsRecordedAnew: a member group whole at its path but
// recorded under an id naming no group (a repair whose record failed) is
// found again by the owner's next member call, which records the ids anew
// and goes on; before, an addition was a 409 pointing to a repair that,
// reading by path, found nothing to do, and a removal a 204 that removed
// no one.
func TestStaleGroupIdIsRecordedAnew(t *testing.T) {
	f := newFixture(t)
	creator := f.realm.UserToken(t, "creator")
	f.create(t, creator, "STALE", "Stale record").Expect(t, 201)
	db := f.svc.Store.DB()
	recorded := func() string {
		var id string
		if err := db.Raw("SELECT artifacts->>'consumerGroupId' FROM communities WHERE realm = ? AND label_key = 'stale'", f.realm.Name).
			Scan(&id).Error; err != nil {
			t.Fatal(err)
		}
		return id
	}
	whole := recorded()
	stale := func() {
		t.Helper()
		if err := db.Exec("UPDATE communities SET artifacts = jsonb_set(artifacts, '{consumerGroupId}', to_jsonb(?::text)) "+
			"WHERE realm = ? AND label_key = 'stale'", "00000000-0000-4000-8000-000000000000", f.realm.Name).Error; err != nil {
			t.Fatal(err)
		}
	}
	stale()
	harness.Do(t, "PUT", f.base+"/STALE/consumer/consumer", creator, nil).Expect(t, 204)
	if got := recorded(); got != whole {
		t.Errorf("recorded consumer group %s, want %s", got, whole)
	}
	var m members
	harness.Do(t, "GET", f.base+"/STALE/members", creator, nil).Expect(t, 200).JSON(t, &m)
	if got := m.usernames("consumer"); !slices.Equal(got, []string{"consumer"}) {
		t.Errorf("consumers %v", got)
	}
	// A removal over a stale record removes from the group itself: Keycloak's
	// 404 for the stale id was taken for "not a member", answered 204, and
	// the consumer kept the privileges.
	stale()
	harness.Do(t, "DELETE", f.base+"/STALE/consumer/consumer", creator, nil).Expect(t, 204)
	harness.Do(t, "GET", f.base+"/STALE/members", creator, nil).Expect(t, 200).JSON(t, &m)
	if got := m.usernames("consumer"); len(got) != 0 {
		t.Errorf("consumers after the removal %v", got)
	}
	var n int64
	if err := db.Raw("SELECT count(*) FROM audit_events WHERE realm = ? AND action = 'repair' AND label = 'STALE' AND outcome = 'success'",
		f.realm.Name).Scan(&n).Error; err != nil || n != 2 {
		t.Errorf("%d repair events, %v: want each record audited", n, err)
	}

	// A group made by hand in the consumer group's place is someone
	// else's: a member call does not take it for the community's.
	gone := deleteGroupByHand(t, f, "Communities/STALE/consumer")
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	parent, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/STALE")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.realm.GC.CreateChildGroup(ctx, admin, f.realm.Name, *parent.ID, gocloak.Group{Name: gocloak.StringP("consumer")}); err != nil {
		t.Fatal(err)
	}
	harness.Do(t, "PUT", f.base+"/STALE/consumer/consumer", creator, nil).Expect(t, 409)
	if got := recorded(); got != gone {
		t.Errorf("recorded consumer group %s after a group made by hand, want the community's own %s kept", got, gone)
	}
}

// deleteGroupByHand deletes the group at path in Keycloak, as an
// administrator would by hand, and returns its id.
func deleteGroupByHand(t *testing.T, f *fixture, path string) string {
	t.Helper()
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.DeleteGroup(ctx, admin, f.realm.Name, *g.ID); err != nil {
		t.Fatal(err)
	}
	return *g.ID
}
