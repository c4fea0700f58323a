package integration

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

type issued struct {
	ClientID, Purpose, Content, Organization, Justification, Secret string
}

// TestSystemAccounts: service desk issues system-to-system accounts (seed
// 002); each gets a real client-credentials token with the roles, scopes
// and provenance claims (seed 004) of its purpose; secrets are shown once
// and can be rotated; accounts can be deleted.
func TestSystemAccounts(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	base := f.svc.URL + "/realms/" + f.realm.Name + "/system-accounts"
	check := func(method, u, token string, body any, want int) *harness.Response {
		t.Helper()
		resp := harness.Do(t, method, u, token, body).Expect(t, want)
		harness.ConformsToOpenAPI(t, method, u, resp)
		return resp
	}
	issue := func(body map[string]string) issued {
		t.Helper()
		var acc issued
		resp := check("POST", base, sd, body, 201)
		resp.JSON(t, &acc)
		if acc.Secret == "" || resp.Header.Get("Location") != "/realms/"+f.realm.Name+"/system-accounts/"+body["clientId"] {
			t.Fatalf("issued %+v, Location %q", acc, resp.Header.Get("Location"))
		}
		return acc
	}
	tokenOf := func(clientID, secret string) (string, error) {
		return f.realm.TryToken(url.Values{"grant_type": {"client_credentials"},
			"client_id": {clientID}, "client_secret": {secret}})
	}

	// A default community (its consumer group a realm default group):
	// Keycloak puts every new user in it, service accounts included.
	f.create(t, sd, "DEF", "Default community").Expect(t, 201)
	ctx, admin := context.Background(), f.realm.AdminToken(t)
	g, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities/DEF/consumer")
	if err != nil {
		t.Fatal(err)
	}
	harness.Do(t, "PUT", f.env.KeycloakURL+"/admin/realms/"+f.realm.Name+"/default-groups/"+*g.ID, admin, nil).Expect(t, 204)

	syn := issue(map[string]string{"clientId": "acme-syndication", "description": "ACME nightly sync",
		"purpose": "syndication", "content": "published", "organization": "ACME"})
	tok, err := tokenOf("acme-syndication", syn.Secret)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(t, tok)
	if c["requesting_system"] != "acme-syndication" || c["requesting_organization"] != "ACME" || c["requesting_user"] != "service-account-acme-syndication" {
		t.Errorf("provenance claims %v %v %v", c["requesting_system"], c["requesting_organization"], c["requesting_user"])
	}
	if _, ok := c["reason_for_request"]; ok {
		t.Error("a syndication account has reason_for_request")
	}
	mustContain(t, "syndication scopes", scopesOf(t, tok), "system/*.read")
	mustLack(t, "syndication scopes", scopesOf(t, tok), "system/*.write")
	mustContain(t, "syndication authorities", authoritiesOf(t, tok), "FHIR_READ", "published-content")
	mustLack(t, "syndication authorities", authoritiesOf(t, tok), "FHIR_WRITE", "unpublished-content", "service-desk", "community-creator")
	// Only its profile: not the realm's default roles (the demo realm's
	// include the role consumer), not a default community.
	mustLack(t, "syndication authorities", authoritiesOf(t, tok), "consumer", "offline_access", "default-roles-"+f.realm.Name, "PERM_DEF_READ")
	mustLack(t, "syndication scopes", scopesOf(t, tok), "grouping/DEF.read")
	clients, err := f.realm.GC.GetClients(ctx, admin, f.realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("acme-syndication")})
	if err != nil || len(clients) != 1 {
		t.Fatalf("client acme-syndication: %v (%d found)", err, len(clients))
	}
	sa, err := f.realm.GC.GetClientServiceAccount(ctx, admin, f.realm.Name, *clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if groups, err := f.realm.GC.GetUserGroups(ctx, admin, f.realm.Name, *sa.ID, gocloak.GetGroupsParams{}); err != nil || len(groups) != 0 {
		t.Errorf("the service account's groups: %d, %v", len(groups), err)
	}
	// Nor can anyone make it a member later, or an owner at a create: not
	// service desk, not a community's owner (who once could, by its id).
	owner := f.realm.UserToken(t, "creator")
	f.create(t, owner, "OWN", "Owned by a creator").Expect(t, 201)
	for _, add := range []struct{ token, path string }{
		{sd, "/DEF/consumer/" + *sa.ID}, {sd, "/OWN/owner/service-account-acme-syndication"},
		{owner, "/OWN/author/" + *sa.ID}, {owner, "/OWN/owner/" + *sa.ID},
		{owner, "/OWN/consumer/service-account-acme-syndication"},
	} {
		resp := check("PUT", f.base+add.path, add.token, nil, 422)
		if !strings.Contains(string(resp.Body), `\"acme-syndication\"`) {
			t.Errorf("PUT %s: the refusal does not name the client: %s", add.path, resp.Body)
		}
	}
	resp := check("POST", f.base, sd, map[string]any{"securityLabel": "SYS", "communityName": "Owned by a system", "owners": []string{*sa.ID}}, 422)
	if !strings.Contains(string(resp.Body), `\"acme-syndication\"`) {
		t.Errorf("the create's refusal does not name the client: %s", resp.Body)
	}
	harness.Do(t, "GET", f.base+"/SYS", sd, nil).Expect(t, 404)
	if groups, err := f.realm.GC.GetUserGroups(ctx, admin, f.realm.Name, *sa.ID, gocloak.GetGroupsParams{}); err != nil || len(groups) != 0 {
		t.Errorf("the service account's groups after the refusals: %d, %v", len(groups), err)
	}

	dc := issue(map[string]string{"clientId": "gp-direct-care", "purpose": "direct-care", "content": "published"})
	tok, _ = tokenOf("gp-direct-care", dc.Secret)
	if claims(t, tok)["reason_for_request"] != "directcare" {
		t.Errorf("direct care reason_for_request %v", claims(t, tok)["reason_for_request"])
	}

	// Authoring needs unpublished content, which needs a justification.
	check("POST", base, sd, map[string]string{"clientId": "acme-authoring", "purpose": "authoring", "content": "unpublished"}, 400)
	check("POST", base, sd, map[string]string{"clientId": "acme-authoring", "purpose": "authoring", "content": "published"}, 400)
	auth := issue(map[string]string{"clientId": "acme-authoring", "purpose": "authoring", "content": "unpublished",
		"justification": "Edits the ACME value sets before their release"})
	tok, _ = tokenOf("acme-authoring", auth.Secret)
	mustContain(t, "authoring scopes", scopesOf(t, tok), "system/*.read", "system/*.write")
	mustContain(t, "authoring authorities", authoritiesOf(t, tok), "FHIR_WRITE", "unpublished-content", "unpublished-authoring", "published-content")
	// Granted the creator role by hand, an authoring account (API-level
	// write) could create a community and become its owner: it cannot.
	// Its client may not change anything unless it is in --change-clients
	// (403); even there, it owns nothing.
	creatorRole, err := f.realm.GC.GetRealmRole(ctx, admin, f.realm.Name, "community-creator")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.realm.GC.AddRealmRoleToUser(ctx, admin, f.realm.Name, f.realm.UserID(t, "service-account-acme-authoring"), []gocloak.Role{*creatorRole}); err != nil {
		t.Fatal(err)
	}
	tok, _ = tokenOf("acme-authoring", auth.Secret)
	check("POST", f.base, tok, map[string]any{"securityLabel": "SYS", "communityName": "Owned by a system"}, 403)
	cfg := f.env.Config(f.realm.Name)
	cfg.ChangeClients = append(cfg.ChangeClients, "acme-authoring")
	changing := f.env.StartService(t, cfg).URL + "/realms/" + f.realm.Name + "/communities"
	resp = check("POST", changing, tok, map[string]any{"securityLabel": "SYS", "communityName": "Owned by a system"}, 422)
	if !strings.Contains(string(resp.Body), `\"acme-authoring\"`) {
		t.Errorf("the creator's refusal does not name the client: %s", resp.Body)
	}
	harness.Do(t, "GET", f.base+"/SYS", sd, nil).Expect(t, 404)

	// Refusals change nothing.
	for _, bad := range []map[string]string{
		{"clientId": "gp-2", "purpose": "direct-care", "content": "unpublished", "justification": "a long enough justification text"},
		{"clientId": "x", "purpose": "consumer", "content": "published"},
		{"clientId": "Upper-Case", "purpose": "consumer", "content": "published"},
		{"clientId": "acme-x", "purpose": "spying", "content": "published"},
		{"clientId": "acme-x", "purpose": "consumer", "content": "secret"},
		{"clientId": "acme-x", "purpose": "consumer", "content": "published", "organization": "bad\norg"},
	} {
		check("POST", base, sd, bad, 400)
	}
	check("POST", base, sd, map[string]string{"clientId": "acme-syndication", "purpose": "consumer", "content": "published"}, 409)
	check("POST", base, sd, map[string]string{"clientId": "service-desk", "purpose": "consumer", "content": "published"}, 409)
	creator := f.realm.UserToken(t, "creator")
	check("POST", base, creator, map[string]string{"clientId": "rogue", "purpose": "consumer", "content": "published"}, 403)
	check("GET", base, creator, nil, 403)

	// Listed and read without secrets.
	resp = check("GET", base, sd, nil, 200)
	if strings.Contains(string(resp.Body), syn.Secret) || strings.Contains(string(resp.Body), `"secret"`) {
		t.Fatal("the list shows a secret")
	}
	var list []issued
	resp.JSON(t, &list)
	var ids []string
	for _, a := range list {
		ids = append(ids, a.ClientID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"acme-authoring", "acme-syndication", "gp-direct-care"}) {
		t.Errorf("listed %v", ids)
	}
	var one issued
	check("GET", base+"/acme-authoring", sd, nil, 200).JSON(t, &one)
	if one.Purpose != "authoring" || one.Content != "unpublished" || one.Justification == "" || one.Secret != "" {
		t.Errorf("account %+v", one)
	}
	check("GET", base+"/service-desk", sd, nil, 404)   // not a system account
	check("GET", base+"/acme-author", sd, nil, 404)    // a part of one's clientId names none
	check("GET", base+"/ACME-AUTHORING", sd, nil, 404) // clientIds are matched as spelt

	// Rotation: the new secret works, the old one no longer.
	var rotated struct{ Secret string }
	check("POST", base+"/acme-syndication/secret", sd, nil, 200).JSON(t, &rotated)
	if _, err := tokenOf("acme-syndication", syn.Secret); err == nil {
		t.Error("the old secret still works after rotation")
	}
	if _, err := tokenOf("acme-syndication", rotated.Secret); err != nil {
		t.Errorf("the new secret: %v", err)
	}

	// Delete: gone, its secret dead; other clients cannot be deleted here.
	check("DELETE", base+"/acme-syndication", sd, nil, 204)
	check("DELETE", base+"/acme-syndication", sd, nil, 404)
	check("DELETE", base+"/service-desk", sd, nil, 404)
	if _, err := tokenOf("acme-syndication", rotated.Secret); err == nil {
		t.Error("a deleted account still gets tokens")
	}
	f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	// A create whose answer was lost leaves a client still marked pending,
	// with Keycloak's defaults on its service account: no account, never
	// listed, read or rotated; deleted, so that it can be made again.
	if _, err := f.realm.GC.CreateClient(ctx, admin, f.realm.Name, gocloak.Client{ClientID: gocloak.StringP("acme-half"),
		ServiceAccountsEnabled: gocloak.BoolP(true), PublicClient: gocloak.BoolP(false),
		Attributes: &map[string]string{"communities.systemAccount": "pending"}}); err != nil {
		t.Fatal(err)
	}
	check("GET", base+"/acme-half", sd, nil, 404)
	check("POST", base+"/acme-half/secret", sd, nil, 404)
	check("GET", base, sd, nil, 200).JSON(t, &list)
	if slices.ContainsFunc(list, func(a issued) bool { return a.ClientID == "acme-half" }) {
		t.Error("an unfinished account is listed")
	}
	check("POST", base, sd, map[string]string{"clientId": "acme-half", "purpose": "consumer", "content": "published"}, 409)
	check("DELETE", base+"/acme-half", sd, nil, 204)
	issue(map[string]string{"clientId": "acme-half", "purpose": "consumer", "content": "published"})

	// Audited, with the justification for unpublished access.
	trail := f.svc.AuditTrail(t, f.realm.Name, "acme-authoring")
	if len(trail) == 0 {
		t.Fatal("no audit trail")
	}
	last := trail[len(trail)-1]
	if last.Action != "create-system-account" || last.Outcome != "success" || !strings.Contains(last.Detail, "justification=Edits the ACME") {
		t.Errorf("audit %+v", last)
	}
	if last.Claims["requesting_system"] != "service-desk" {
		t.Errorf("audit claims %v", last.Claims)
	}
}

// TestRequiredClaims: a realm can require provenance claims; tokens
// without them are refused with a problem naming the claim, and present
// claims go into the audit trail with every change.
func TestRequiredClaims(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.RequiredClaims = []string{"requesting_system", realm.Name + ":requesting_user"}
	svc := env.StartService(t, cfg)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "PROV", "communityName": "Provenance"}).Expect(t, 201)
	trail := svc.AuditTrail(t, realm.Name, "PROV")
	if len(trail) != 1 {
		t.Fatalf("trail %v", trail)
	}
	if trail[0].Claims["requesting_system"] != "service-desk" || trail[0].Claims["requesting_user"] != "service-account-service-desk" {
		t.Errorf("audited claims %v", trail[0].Claims)
	}
	// A client without the requesting_system mapper.
	noProv := noRoleAccountToken(t, realm)
	resp := harness.Do(t, "GET", base, noProv, nil).Expect(t, 403)
	if !strings.Contains(string(resp.Body), "requesting_system") {
		t.Errorf("refusal does not name the claim: %s", resp.Body)
	}

	// A fixed value: only direct-care tokens pass.
	cfg2 := env.Config(realm.Name)
	cfg2.RequiredClaims = []string{"reason_for_request=directcare"}
	strict := env.StartService(t, cfg2)
	sbase := strict.URL + "/realms/" + realm.Name
	resp = harness.Do(t, "GET", sbase+"/communities", sd, nil).Expect(t, 403)
	if !strings.Contains(string(resp.Body), "reason_for_request") {
		t.Errorf("refusal does not name the claim: %s", resp.Body)
	}
	var acc issued
	harness.Do(t, "POST", svc.URL+"/realms/"+realm.Name+"/system-accounts", sd,
		map[string]string{"clientId": "gp-direct", "purpose": "direct-care", "content": "published"}).Expect(t, 201).JSON(t, &acc)
	dcTok, err := realm.TryToken(url.Values{"grant_type": {"client_credentials"}, "client_id": {"gp-direct"}, "client_secret": {acc.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	harness.Do(t, "GET", sbase+"/communities", dcTok, nil).Expect(t, 200)

	// A token a trusted client sends to be judged is held to the same
	// claims (it was once judged without them, and allowed).
	cfg3 := env.Config(realm.Name)
	cfg3.RequiredClaims = []string{"requesting_system=fhir-server"}
	judge := env.StartService(t, cfg3)
	authz := judge.URL + "/realms/" + realm.Name + "/communities-authz"
	fhir := realm.ClientToken(t, "fhir-server", "fhir-server-secret")
	consumer := realm.UserToken(t, "consumer") // requesting_system: terminology-client
	var d struct {
		Allowed      bool
		Rule, Reason string
	}
	resp = harness.Do(t, "POST", authz+"/decision", fhir, map[string]any{
		"resourceType": "CodeSystem", "interaction": "read", "token": consumer}).Expect(t, 200)
	harness.ConformsToOpenAPI(t, "POST", authz+"/decision", resp)
	resp.JSON(t, &d)
	if d.Allowed || d.Rule != "required-claim" || !strings.Contains(d.Reason, "requesting_system") {
		t.Errorf("judged token without the required claim value: %+v", d)
	}
	resp = harness.Do(t, "POST", authz+"/labels", fhir, map[string]any{"token": consumer}).Expect(t, 422)
	if !strings.Contains(string(resp.Body), "requesting_system") {
		t.Errorf("labels refusal does not name the claim: %s", resp.Body)
	}
	// The fhir-server's own token satisfies the claim and is judged by the
	// rules (which refuse it: its account holds no API access).
	harness.Do(t, "POST", authz+"/decision", fhir, map[string]any{"resourceType": "CodeSystem", "interaction": "read"}).
		Expect(t, 200).JSON(t, &d)
	if d.Allowed || d.Rule != "no-api-access" {
		t.Errorf("fhir-server's own token: %+v", d)
	}
}
