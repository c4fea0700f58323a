package integration

import (
	"context"
	"errors"
	"fmt"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestSeedCurlFlow runs seed 000's three curl commands ("Deleting a
// community", steps 1-3) verbatim but for host and names: the token from
// Keycloak's own host, the communities calls on the service's host.
func TestSeedCurlFlow(t *testing.T) {
	f := newFixture(t)
	seedCurlFlow(t, f.realm, f.svc.Store, f.env.KeycloakURL+"/realms/"+f.realm.Name, f.svc.URL+"/auth/realms/"+f.realm.Name, nil)
}

// TestFrontDoor runs the same flow through Debian's nginx with
// deploy/nginx's configuration, all on one host as the seed has it:
// https://authorisation-server/auth/realms/realm-name/... for the token
// endpoint and the communities endpoint alike.
func TestFrontDoor(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	port := harness.FreePort(t)
	cfg := env.Config(realm.Name)
	front := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg.IssuerBaseURL = front
	svc := env.StartService(t, cfg)
	harness.StartNginx(t, port, svc.URL, env.KeycloakURL, realm.Name)
	token := seedCurlFlow(t, realm, svc.Store, front+"/auth/realms/"+realm.Name, front+"/auth/realms/"+realm.Name, nil)
	if iss := claims(t, token)["iss"]; iss != front+"/realms/"+realm.Name {
		t.Errorf("token through the front door has iss %v", iss)
	}
	// Both prefixes reach the service; the realm's own paths reach Keycloak.
	harness.Do(t, "GET", front+"/realms/"+realm.Name+"/communities", token, nil).Expect(t, 200)
	harness.Do(t, "GET", front+"/realms/"+realm.Name+"/.well-known/openid-configuration", "", nil).Expect(t, 200)
	harness.Do(t, "GET", front+"/auth/realms/"+realm.Name+"/.well-known/openid-configuration", "", nil).Expect(t, 200)
	harness.Do(t, "GET", front+"/admin/"+realm.Name+"/console/", "", nil).Expect(t, 200)
	harness.Do(t, "GET", front+"/.well-known/oauth-authorization-server/realms/"+realm.Name, "", nil).Expect(t, 200)
	// Nothing else of Keycloak's: the master realm's login and console,
	// Keycloak's other realms, its admin API beyond this realm (Keycloak
	// itself answers these, so the door must not forward them).
	for _, path := range []string{
		"/realms/master/.well-known/openid-configuration",
		"/auth/realms/master/.well-known/openid-configuration",
		"/realms/master/protocol/openid-connect/auth?client_id=security-admin-console",
		"/admin/master/console/",
		"/auth/admin/master/console/",
		"/admin/",
		"/admin/realms/master",
		"/admin/realms",
		"/realms/" + realm.Name + "x/.well-known/openid-configuration",
		"/admin/realms/" + realm.Name + "x",
		"/.well-known/oauth-authorization-server/realms/master",
		// Encoded dot segments are resolved before the door decides.
		"/realms/" + realm.Name + "/..%2F..%2Fadmin%2Frealms%2Fmaster",
		"/auth/realms/" + realm.Name + "/%2e%2e/%2e%2e/admin/realms/master",
		"/resources/..%2Fadmin%2Frealms%2Fmaster",
		"/admin/%2e%2e/admin/master/console/",
		"/admin/" + realm.Name + "/console/%2e%2e/%2e%2e/master/console/",
	} {
		resp := harness.Do(t, "GET", front+path, "", nil).Expect(t, 404)
		if resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s through the front door: %s %s", path, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
	if resp := harness.Do(t, "GET", env.KeycloakURL+"/realms/master/.well-known/openid-configuration", "", nil); resp.Status != 200 {
		t.Fatalf("Keycloak itself does not answer for the master realm (%d), so the check above proves nothing", resp.Status)
	}
	// A token Keycloak issued to a direct caller names another issuer and
	// is refused through the front door's service configuration.
	direct := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "GET", front+"/realms/"+realm.Name+"/communities", direct, nil).Expect(t, 401)

	// Header sizes (issue 14): a token of 20 KiB passes the front door and
	// is the service's to judge; a header beyond the front door's 32 KiB
	// buffers is refused there, with problem details that say why.
	big := token + strings.Repeat("x", 20<<10)
	harness.Do(t, "GET", front+"/realms/"+realm.Name+"/communities", big, nil).Expect(t, 401)
	huge := token + strings.Repeat("x", 40<<10)
	resp := harness.Do(t, "GET", front+"/realms/"+realm.Name+"/communities", huge, nil).Expect(t, 431)
	if resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(resp.Body), "too many roles or scopes") {
		t.Errorf("the front door's 431: %s %s", resp.Header.Get("Content-Type"), resp.Body)
	}
}

// seedCurlFlow creates two communities, then runs the seed's curl commands
// with tokenBase and apiBase standing for
// https://authorisation-server/auth/realms/realm-name; others are the
// communities that exist besides, which step 2 lists too. It returns the
// token.
func seedCurlFlow(t *testing.T, realm *harness.Realm, store *registry.Store, tokenBase, apiBase string, others []map[string]string) string {
	t.Helper()
	sh := func(script string) string {
		t.Helper()
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}

	// Step 1 - Get a bearer token (http: the test servers have no TLS).
	step1 := `curl --silent --location --request POST '` + tokenBase + `/protocol/openid-connect/token' \
--header 'Content-Type: application/x-www-form-urlencoded' \
--data-urlencode 'grant_type=client_credentials' \
--data-urlencode 'client_id=service-desk' \
--data-urlencode 'client_secret=` + harness.ServiceDeskSecret + `'`
	tokenJSON := sh(step1)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	(&harness.Response{Body: []byte(tokenJSON)}).JSON(t, &tok)
	if tok.AccessToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("step 1 gave no bearer token: %s", tokenJSON)
	}
	for _, c := range [][2]string{{"bird", "Bird watching"}, {"NDD", "NHS Data Dictionary"}} {
		harness.Do(t, "POST", apiBase+"/communities", tok.AccessToken,
			map[string]string{"securityLabel": c[0], "communityName": c[1]}).Expect(t, 201)
	}

	// Step 2 - List communities.
	step2 := `curl --silent --location --request GET '` + apiBase + `/communities' \
--header 'Authorization: Bearer ` + tok.AccessToken + `'`
	var listed []map[string]string
	(&harness.Response{Body: []byte(sh(step2))}).JSON(t, &listed)
	want := append([]map[string]string{
		{"securityLabel": "bird", "communityName": "Bird watching"},
		{"securityLabel": "NDD", "communityName": "NHS Data Dictionary"},
	}, others...)
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Fatalf("step 2 listed %v, want %v", listed, want)
	}

	// Step 3 - Delete community, body exactly as the seed sends it
	// (leading space included).
	step3 := `curl --silent --write-out '%{http_code}' --location --request DELETE '` + apiBase + `/communities' \
--header 'Authorization: Bearer ` + tok.AccessToken + `' --header 'Content-Type: application/json' \
--data-raw ' {
"securityLabel": "bird",
"communityName": "Bird watching"
}'`
	if code := sh(step3); code != "204" {
		t.Fatalf("step 3 answered %s, want 204", code)
	}
	var after []map[string]string
	harness.Do(t, "GET", apiBase+"/communities", tok.AccessToken, nil).Expect(t, 200).JSON(t, &after)
	if got := labels(after); !slices.Equal(got, labels(want[1:])) {
		t.Fatalf("after delete the list is %v", got)
	}
	// "This process will delete ... groups, roles, scopes, underlying
	// database record" and users are not removed.
	if left := realm.Artefacts(t, "Communities", "bird"); len(left) > 0 {
		t.Fatalf("delete left %v in Keycloak", left)
	}
	if _, err := store.Get(context.Background(), realm.Name, "bird"); !errors.Is(err, community.ErrNoRecord) {
		t.Fatal("delete left the registry row")
	}
	realm.UserID(t, "service-account-service-desk")
	return tok.AccessToken
}

// TestCreateMakesOntoserverCompatibleArtefacts checks what a community is
// in Keycloak, and that tokens then carry its privileges exactly for the
// users who hold them.
func TestCreateMakesOntoserverCompatibleArtefacts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	author := f.realm.UserToken(t, "author")

	before := f.svc.KeycloakRoundTrips()
	start := time.Now()
	resp := f.create(t, author, "NDD", "National data dictionary").Expect(t, 201)
	createTook, createTrips := time.Since(start), f.svc.KeycloakRoundTrips()-before
	if loc := resp.Header.Get("Location"); loc != "/realms/"+f.realm.Name+"/communities/NDD" {
		t.Errorf("Location %q", loc)
	}
	var got map[string]string
	resp.JSON(t, &got)
	if got["securityLabel"] != "NDD" || got["communityName"] != "National data dictionary" || len(got) != 2 {
		t.Errorf("created representation %v", got)
	}

	admin := f.realm.AdminToken(t)
	row := f.row(t, "NDD")
	for _, name := range []string{"PERM_NDD_READ", "PERM_NDD_WRITE"} {
		role, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, name)
		if err != nil {
			t.Fatalf("role %s: %v", name, err)
		}
		if (*role.Attributes)[keycloak.MarkerAttribute][0] != row.ID {
			t.Errorf("role %s lacks the community's marker", name)
		}
	}
	// Issue 14: no role nothing reads, so none in owners' tokens.
	var notFound *gocloak.APIError
	if _, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, "PERM_NDD_OWNER"); !errors.As(err, &notFound) || notFound.Code != 404 {
		t.Errorf("role PERM_NDD_OWNER: %v, want none", err)
	}
	group, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/NDD")
	if err != nil {
		t.Fatal(err)
	}
	if (*group.Attributes)["communityName"][0] != "National data dictionary" {
		t.Errorf("group attributes %v", *group.Attributes)
	}
	wantRoles := map[string][]string{
		"owner": {"community-owner"}, "author": {"PERM_NDD_READ", "PERM_NDD_WRITE"}, "consumer": {"PERM_NDD_READ"},
	}
	for member, roles := range wantRoles {
		g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/NDD/"+member)
		if err != nil {
			t.Fatalf("group %s: %v", member, err)
		}
		mapped, err := f.realm.GC.GetRealmRolesByGroupID(ctx, admin, f.realm.Name, *g.ID)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range mapped {
			names = append(names, *r.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, roles) {
			t.Errorf("group %s maps %v, want %v", member, names, roles)
		}
	}
	clients, err := f.realm.GC.GetClients(ctx, admin, f.realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("terminology-client")})
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := f.realm.GC.GetClientsDefaultScopes(ctx, admin, f.realm.Name, *clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var defaultNames []string
	for _, s := range defaults {
		defaultNames = append(defaultNames, *s.Name)
	}
	// Issue 14: no client scope per community (Keycloak evaluates every
	// default scope on every token request of the realm); the realm's
	// token mapper makes the scopes from the roles.
	mustLack(t, "terminology-client default scopes", defaultNames, "grouping/NDD.read", "grouping/NDD.write")
	scopes, err := f.realm.GC.GetClientScopes(ctx, admin, f.realm.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scopes {
		if strings.HasPrefix(*s.Name, "grouping/") {
			t.Errorf("client scope %s exists", *s.Name)
		}
	}

	// The creator is the owner: a member of the owner group only.
	ownerGroup, _ := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/NDD/owner")
	members, err := f.realm.GC.GetGroupMembers(ctx, admin, f.realm.Name, *ownerGroup.ID, gocloak.GetGroupsParams{})
	if err != nil || len(members) != 1 || *members[0].Username != "author" {
		t.Fatalf("owner group members %v %v", members, err)
	}
	authorTok := f.realm.UserToken(t, "author")
	mustLack(t, "owner's authorities", authoritiesOf(t, authorTok), "PERM_NDD_OWNER")
	mustLack(t, "owner's realm roles", realmRolesOf(t, authorTok), "PERM_NDD_OWNER")
	mustLack(t, "owner's scopes", scopesOf(t, authorTok), "grouping/NDD.read", "grouping/NDD.write")

	// Seed 003: consumers get read, authors read and write.
	consumerID, authorID := f.realm.UserID(t, "consumer"), f.realm.UserID(t, "author")
	consumerGroup, _ := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/NDD/consumer")
	authorGroup, _ := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/NDD/author")
	if err := f.realm.GC.AddUserToGroup(ctx, admin, f.realm.Name, consumerID, *consumerGroup.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.AddUserToGroup(ctx, admin, f.realm.Name, authorID, *authorGroup.ID); err != nil {
		t.Fatal(err)
	}
	consumerTok := f.realm.UserToken(t, "consumer")
	mustContain(t, "consumer's scopes", scopesOf(t, consumerTok), "grouping/NDD.read")
	mustLack(t, "consumer's scopes", scopesOf(t, consumerTok), "grouping/NDD.write")
	// The realm's form is "scopes": each privilege once, as a scope.
	mustLack(t, "consumer's authorities", authoritiesOf(t, consumerTok), "PERM_NDD_READ", "PERM_NDD_WRITE")
	mustLack(t, "consumer's realm roles", realmRolesOf(t, consumerTok), "PERM_NDD_READ", "PERM_NDD_WRITE")
	authorTok = f.realm.UserToken(t, "author")
	mustContain(t, "author's scopes", scopesOf(t, authorTok), "grouping/NDD.read", "grouping/NDD.write")
	mustLack(t, "author's authorities", authoritiesOf(t, authorTok), "PERM_NDD_READ", "PERM_NDD_WRITE")
	approverTok := f.realm.UserToken(t, "approver")
	mustLack(t, "non-member's scopes", scopesOf(t, approverTok), "grouping/NDD.read", "grouping/NDD.write")

	before = f.svc.KeycloakRoundTrips()
	start = time.Now()
	harness.Do(t, "DELETE", f.base+"/NDD", authorTok, nil).Expect(t, 204)
	deleteTook, deleteTrips := time.Since(start), f.svc.KeycloakRoundTrips()-before
	before = f.svc.KeycloakRoundTrips()
	start = time.Now()
	f.create(t, author, "WARM", "Warm caches").Expect(t, 201)
	warmTook, warmTrips := time.Since(start), f.svc.KeycloakRoundTrips()-before
	t.Logf("first create: %s, %d Keycloak round trips; warm create: %s, %d; delete by owner: %s, %d",
		createTook, createTrips, warmTook, warmTrips, deleteTook, deleteTrips)
	// 7: the live creator check, the creator looked up as its owner (a
	// system account owns nothing; 6 before that check), the extension's
	// create (roles, groups, role mappings, the creator as owner, in one
	// transaction), 4 admin permissions (docs/architecture.md, "Measured").
	if warmTrips > 7 {
		t.Errorf("a warm create took %d round trips; the design needs 7", warmTrips)
	}
	// 3: the live creator check, the live ownership check, and the
	// extension's cleanup (permissions, group and roles in one
	// transaction).
	if deleteTrips > 3 {
		t.Errorf("a delete by an owner took %d round trips; the design needs 3", deleteTrips)
	}

	if left := f.realm.Artefacts(t, "Communities", "NDD"); len(left) > 0 {
		t.Fatalf("delete left %v", left)
	}
	// Users are never deleted, only lose the memberships.
	f.realm.UserID(t, "consumer")
	mustLack(t, "consumer's scopes after delete", scopesOf(t, f.realm.UserToken(t, "consumer")), "grouping/NDD.read")
	mustLack(t, "consumer's authorities after delete", authoritiesOf(t, f.realm.UserToken(t, "consumer")), "PERM_NDD_READ")

	// Resources may still carry NDD's labels (a delete leaves them, seed
	// 000): a creator may not take the label again, and whoever joined
	// the new community would get them. Service desk may.
	again := f.create(t, author, "ndd", "Not the dictionary").Expect(t, 409)
	if again.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(again.Body), "only service desk may reuse it") {
		t.Errorf("a creator's create of a deleted community's label: %s %s", again.Header.Get("Content-Type"), again.Body)
	}
	if left := f.realm.Artefacts(t, "Communities", "ndd"); len(left) > 0 {
		t.Errorf("the refused create made %v", left)
	}
	f.create(t, f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret), "NDD", "National data dictionary").Expect(t, 201)
}

func TestListSortedAndPaginated(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for _, l := range []string{"charlie", "Alpha", "bravo", "DELTA"} {
		f.create(t, sd, l, "Community "+l).Expect(t, 201)
	}
	consumer := f.realm.UserToken(t, "consumer")
	if got := labels(f.list(t, consumer)); !slices.Equal(got, []string{"Alpha", "bravo", "charlie", "DELTA"}) {
		t.Errorf("list %v, want sorted by label ignoring case", got)
	}
	var page []map[string]string
	harness.Do(t, "GET", f.base+"?first=1&max=2", consumer, nil).Expect(t, 200).JSON(t, &page)
	if got := labels(page); !slices.Equal(got, []string{"bravo", "charlie"}) {
		t.Errorf("first=1&max=2 gave %v", got)
	}
	harness.Do(t, "GET", f.base+"?first=10", consumer, nil).Expect(t, 200).JSON(t, &page)
	if len(page) != 0 {
		t.Errorf("first past the end gave %v", page)
	}
	for _, q := range []string{"first=-1", "max=0", "max=abc", "max=1001", "first=1.5", "mine=yes", "mine=1",
		"search=" + strings.Repeat("x", 201), "max=1&max=2", "mine=true&mine=false", "search=a&search=b"} {
		harness.Do(t, "GET", f.base+"?"+q, consumer, nil).Expect(t, 400)
	}

	// Search: label or name, ignoring case, as text; mine: the caller's
	// memberships now, searched and paged the same way.
	get := func(tok, q string) []string {
		t.Helper()
		var out []map[string]string
		harness.Do(t, "GET", f.base+"?"+q, tok, nil).Expect(t, 200).JSON(t, &out)
		return labels(out)
	}
	for q, want := range map[string][]string{
		"search=ALPH":                        {"Alpha"},
		"search=community%20":                {"Alpha", "bravo", "charlie", "DELTA"},
		"search=a&first=1&max=2":             {"bravo", "charlie"},
		"search=%25":                         nil,
		"search=":                            {"Alpha", "bravo", "charlie", "DELTA"},
		"mine=false&search=delta":            {"DELTA"},
		"mine=true":                          nil,
		"search=" + strings.Repeat("x", 200): nil,
	} {
		if got := get(consumer, q); !slices.Equal(got, want) {
			t.Errorf("%s gave %v, want %v", q, got, want)
		}
	}
	harness.Do(t, "PUT", f.base+"/DELTA/consumer/consumer", sd, nil).Expect(t, 204)
	harness.Do(t, "PUT", f.base+"/bravo/author/consumer", sd, nil).Expect(t, 204)
	for q, want := range map[string][]string{
		"mine=true":                  {"bravo", "DELTA"},
		"mine=true&search=COMMUNITY": {"bravo", "DELTA"},
		"mine=true&search=d":         {"DELTA"},
		"mine=true&first=1":          {"DELTA"},
		"mine=true&max=1":            {"bravo"},
	} {
		if got := get(consumer, q); !slices.Equal(got, want) {
			t.Errorf("%s gave %v, want %v", q, got, want)
		}
	}
	// A service account is in no community's groups.
	if got := get(sd, "mine=true"); len(got) != 0 {
		t.Errorf("service desk's own communities: %v", got)
	}
	// An empty realm lists [] (not null).
	g := setup(t)
	resp := harness.Do(t, "GET", g.base, g.realm.UserToken(t, "consumer"), nil).Expect(t, 200)
	if strings.TrimSpace(string(resp.Body)) != "[]" {
		t.Errorf("empty list body %s", resp.Body)
	}
}

func TestGetAndDeleteByLabel(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "NDD", "National data dictionary").Expect(t, 201)
	for _, prefix := range []string{"", "/auth"} {
		u := f.svc.URL + prefix + "/realms/" + f.realm.Name + "/communities/ndd"
		var got map[string]string
		harness.Do(t, "GET", u, sd, nil).Expect(t, 200).JSON(t, &got)
		if got["securityLabel"] != "NDD" {
			t.Errorf("%s: %v", prefix, got)
		}
	}
	harness.Do(t, "GET", f.base+"/nope", sd, nil).Expect(t, 404)
	harness.Do(t, "DELETE", f.svc.URL+"/auth/realms/"+f.realm.Name+"/communities/NDD", sd, nil).Expect(t, 204)
	harness.Do(t, "GET", f.base+"/NDD", sd, nil).Expect(t, 404)
	harness.Do(t, "DELETE", f.base+"/NDD", sd, nil).Expect(t, 404)
}

func TestCreateWithLegacyPrefixAnswersLegacyLocation(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	resp := harness.Do(t, "POST", f.svc.URL+"/auth/realms/"+f.realm.Name+"/communities", sd,
		map[string]string{"securityLabel": "SNOMED", "communityName": "SNOMED"}).Expect(t, 201)
	if loc := resp.Header.Get("Location"); loc != "/auth/realms/"+f.realm.Name+"/communities/SNOMED" {
		t.Errorf("Location %q", loc)
	}
}

func TestWhoMayDoWhat(t *testing.T) {
	f := newFixture(t)
	consumer := f.realm.UserToken(t, "consumer")
	creator := f.realm.UserToken(t, "creator")
	author := f.realm.UserToken(t, "author")
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	// Create: community creator or service desk.
	f.create(t, consumer, "C1", "Consumer's").Expect(t, 403)
	if f.row(t, "C1") != nil || len(f.realm.Artefacts(t, "Communities", "C1")) > 0 {
		t.Fatal("a refused create changed something")
	}
	f.create(t, creator, "CR", "Creator's").Expect(t, 201)
	f.create(t, author, "AU", "Author's").Expect(t, 201)

	// Naming owners is for service desk only.
	harness.Do(t, "POST", f.base, creator, map[string]any{
		"securityLabel": "X1", "communityName": "X1", "owners": []string{"consumer"},
	}).Expect(t, 403)

	// Delete: service desk, or a community creator who owns it.
	harness.Do(t, "DELETE", f.base+"/AU", creator, nil).Expect(t, 403)
	harness.Do(t, "DELETE", f.base+"/AU", consumer, nil).Expect(t, 403)
	harness.Do(t, "DELETE", f.base+"/CR", creator, nil).Expect(t, 204)
	harness.Do(t, "DELETE", f.base+"/AU", sd, nil).Expect(t, 204)

	// Service desk names owners by username and by id; the caller is then
	// not an owner.
	approverID := f.realm.UserID(t, "approver")
	harness.Do(t, "POST", f.base, sd, map[string]any{
		"securityLabel": "SD1", "communityName": "Service desk's", "owners": []string{"creator", approverID},
	}).Expect(t, 201)
	ctx := context.Background()
	admin := f.realm.AdminToken(t)
	og, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/SD1/owner")
	if err != nil {
		t.Fatal(err)
	}
	members, _ := f.realm.GC.GetGroupMembers(ctx, admin, f.realm.Name, *og.ID, gocloak.GetGroupsParams{})
	var names []string
	for _, m := range members {
		names = append(names, *m.Username)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"approver", "creator"}) {
		t.Errorf("owners %v", names)
	}
	// A creator who owns SD1 (named by service desk) may delete it.
	harness.Do(t, "DELETE", f.base+"/SD1", f.realm.UserToken(t, "creator"), nil).Expect(t, 204)

	// An unknown owner is a bad request, and nothing is made.
	harness.Do(t, "POST", f.base, sd, map[string]any{
		"securityLabel": "SD2", "communityName": "SD2", "owners": []string{"nobody-by-that-name"},
	}).Expect(t, 400)
	if f.row(t, "SD2") != nil || len(f.realm.Artefacts(t, "Communities", "SD2")) > 0 {
		t.Fatal("a create with an unknown owner changed something")
	}

	// Audit: every create and delete, with the actor and the outcome.
	trail := f.svc.AuditTrail(t, f.realm.Name, "AU")
	var outcomes []string
	for _, e := range trail {
		outcomes = append(outcomes, e.Action+":"+e.Outcome+":"+e.ActorUsername+":"+e.ActorClient)
		if e.ActorSub == "" {
			t.Errorf("audit event without sub: %+v", e)
		}
	}
	want := []string{
		"create:success:author:terminology-client",
		"delete:denied:creator:terminology-client",
		"delete:denied:consumer:terminology-client",
		"delete:success:service-account-service-desk:service-desk",
	}
	if !slices.Equal(outcomes, want) {
		t.Errorf("audit trail of AU:\n got %v\nwant %v", outcomes, want)
	}
}

func TestTokensAreVerified(t *testing.T) {
	f := newFixture(t)
	other := f.env.NewRealm(t)
	consumer := f.realm.UserToken(t, "consumer")
	cases := map[string]string{
		"no token":                          "",
		"garbage":                           "not-a-jwt",
		"another realm's token":             other.UserToken(t, "consumer"),
		"token without the audience":        f.realm.ClientToken(t, "communities-service", harness.ServiceSecret),
		"signature tampered":                consumer[:len(consumer)-4] + "AAAA",
		"master realm admin token":          f.realm.AdminToken(t),
		"payload swapped from another user": swapPayload(consumer, f.realm.UserToken(t, "author")),
	}
	for name, tok := range cases {
		resp := harness.Do(t, "GET", f.base, tok, nil)
		if resp.Status != 401 {
			t.Errorf("%s: %s, want 401", name, resp)
			continue
		}
		if resp.Header.Get("Content-Type") != "application/problem+json" || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: headers %v", name, resp.Header)
		}
	}
	harness.Do(t, "GET", f.base, consumer, nil).Expect(t, 200)
	// A realm this service does not manage is unknown, whatever the token.
	harness.Do(t, "GET", f.svc.URL+"/realms/"+other.Name+"/communities", consumer, nil).Expect(t, 404)
}

func swapPayload(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func TestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "NDD", "National data dictionary").Expect(t, 201)
	cases := []struct {
		name, body, contentType string
		status                  int
	}{
		{"label with a dot", `{"securityLabel":"NDD.read","communityName":"x"}`, "application/json", 400},
		{"label with a slash", `{"securityLabel":"a/b","communityName":"x"}`, "application/json", 400},
		{"label too long", `{"securityLabel":"` + strings.Repeat("a", 65) + `","communityName":"x"}`, "application/json", 400},
		{"empty label", `{"securityLabel":"","communityName":"x"}`, "application/json", 400},
		{"name blank", `{"securityLabel":"OK1","communityName":"   "}`, "application/json", 400},
		{"name with control", `{"securityLabel":"OK1","communityName":"a\u0007b"}`, "application/json", 400},
		{"name too long", `{"securityLabel":"OK1","communityName":"` + strings.Repeat("n", 201) + `"}`, "application/json", 400},
		{"missing name", `{"securityLabel":"OK1"}`, "application/json", 400},
		{"unknown field", `{"securityLabel":"OK1","communityName":"x","colour":"red"}`, "application/json", 400},
		{"wrong type", `{"securityLabel":1,"communityName":"x"}`, "application/json", 400},
		{"duplicate key", `{"securityLabel":"OK1","securityLabel":"OK2","communityName":"x"}`, "application/json", 400},
		{"malformed", `{"securityLabel":`, "application/json", 400},
		{"form encoded", `securityLabel=OK1&communityName=x`, "application/x-www-form-urlencoded", 415},
		{"too large", `{"securityLabel":"OK1","communityName":"` + strings.Repeat("n", 70000) + `"}`, "application/json", 413},
		{"duplicate label, other case", `{"securityLabel":"ndd","communityName":"Other"}`, "application/json", 409},
		{"duplicate name, other case", `{"securityLabel":"OK1","communityName":"NATIONAL DATA DICTIONARY"}`, "application/json", 409},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", f.base, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+sd)
		req.Header.Set("Content-Type", c.contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem+json", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
		}
	}
	if got := labels(f.list(t, sd)); !slices.Equal(got, []string{"NDD"}) {
		t.Errorf("bad input changed the list: %v", got)
	}
	for _, l := range []string{"OK1", "OK2"} {
		if left := f.realm.Artefacts(t, "Communities", l); len(left) > 0 {
			t.Errorf("bad input made %v", left)
		}
	}
	// DELETE with a body must match the registry exactly.
	harness.Do(t, "DELETE", f.base, sd, map[string]string{"securityLabel": "NDD", "communityName": "Wrong"}).Expect(t, 409)
	harness.Do(t, "DELETE", f.base, sd, map[string]string{"securityLabel": "ndd", "communityName": "National data dictionary"}).Expect(t, 409)
	harness.Do(t, "DELETE", f.base, sd, map[string]string{"securityLabel": "NOPE", "communityName": "x"}).Expect(t, 404)
	harness.Do(t, "DELETE", f.base, sd, map[string]string{"securityLabel": "NDD"}).Expect(t, 400)
	if got := labels(f.list(t, sd)); !slices.Equal(got, []string{"NDD"}) {
		t.Errorf("refused deletes changed the list: %v", got)
	}
}

func TestConcurrentCreatesOfOneLabel(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	const n = 12
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = f.create(t, sd, "RACE", fmt.Sprintf("Race %d", i)).Status
		}()
	}
	wg.Wait()
	created, conflicts := 0, 0
	for _, s := range statuses {
		switch s {
		case 201:
			created++
		case 409:
			conflicts++
		}
	}
	if created != 1 || conflicts != n-1 {
		t.Fatalf("statuses %v: want one 201 and %d 409", statuses, n-1)
	}
	admin := f.realm.AdminToken(t)
	root, err := f.realm.GC.GetGroupByPath(context.Background(), admin, f.realm.Name, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	var children []gocloak.Group
	_, err = f.realm.GC.GetRequestWithBearerAuth(context.Background(), admin).SetResult(&children).
		Get(f.env.KeycloakURL + "/admin/realms/" + f.realm.Name + "/groups/" + *root.ID + "/children")
	if err != nil || len(children) != 1 {
		t.Fatalf("root group has %d children, want 1 (%v)", len(children), err)
	}
}

// TestNamesThatReadAlikeAreOne: names are unique by their PRECIS Nickname
// key, case-folded, so a name that reads as another's is refused (409), a
// name with invisible or formatting characters is refused (400), neither
// makes anything in Keycloak, and a search finds a name however it is
// written.
func TestNamesThatReadAlikeAreOne(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for _, c := range []struct{ label, name, alike string }{
		{"GREEK", "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2"}, // ΟΔΟΣ, οδος
		{"CAFE", "Caf\u00e9 society", "CAFE\u0301 SOCIETY"},               // composed, decomposed
		{"WIDE", "\uff2e\uff24\uff24 mirror", "NDD mirror"},               // full width
		{"SPACED", "Two words", "two   words"},
	} {
		f.create(t, sd, c.label, c.name).Expect(t, 201)
		resp := f.create(t, sd, c.label+"2", c.alike).Expect(t, 409)
		if resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(resp.Body), "already exists") {
			t.Errorf("%q after %q: %s %s", c.alike, c.name, resp.Header.Get("Content-Type"), resp.Body)
		}
		if left := f.realm.Artefacts(t, "Communities", c.label+"2"); len(left) > 0 {
			t.Errorf("the refused create of %q made %v", c.alike, left)
		}
		var found []map[string]string
		harness.Do(t, "GET", f.base+"?search="+url.QueryEscape(c.alike), sd, nil).Expect(t, 200).JSON(t, &found)
		if got := labels(found); !slices.Equal(got, []string{c.label}) {
			t.Errorf("search %q found %v, want %s", c.alike, got, c.label)
		}
	}
	for _, name := range []string{"National\u200b data dictionary", "abc\u202egfe", "Nat\u00adional"} {
		resp := f.create(t, sd, "HIDDEN", name).Expect(t, 400)
		if resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(resp.Body), "invisible or formatting characters") {
			t.Errorf("name %q: %s %s", name, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
	if left := f.realm.Artefacts(t, "Communities", "HIDDEN"); len(left) > 0 {
		t.Errorf("the refused creates made %v", left)
	}
}
