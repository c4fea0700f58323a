package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"
	"github.com/golang-jwt/jwt/v5"

	"github.com/nhs-terminology/communities/test/harness"
)

type hostileCase struct {
	name    string
	method  string
	path    string // after the service URL; {realm} is replaced
	token   string
	ctype   string // Content-Type; "-" sends none
	body    string
	headers map[string]string
	want    int
}

// TestHostileInput sends requests an attacker or a confused client might,
// and checks each is answered with the right status and changes nothing:
// no registry row, no group in Keycloak.
func TestHostileInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	realm := f.realm.Name
	author := f.realm.UserToken(t, "author")
	creator := f.realm.UserToken(t, "creator")
	f.create(t, author, "NDD", "National data dictionary").Expect(t, 201)
	f.create(t, creator, "OTHER", "Creator's own").Expect(t, 201)
	f.create(t, creator, "KELVIN", "Kelvin").Expect(t, 201)

	key, kid := f.realm.AddSigningKey(t)
	sdID := f.realm.UserID(t, "servicedesk")
	issuer := f.env.KeycloakURL + "/realms/" + realm
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		now := time.Now()
		c := jwt.MapClaims{
			"iss": issuer, "aud": []string{"communities"}, "sub": sdID, "azp": "service-desk", "typ": "Bearer",
			"preferred_username": "servicedesk", "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
			"realm_access": map[string]any{"roles": []string{"service-desk", "community-creator"}},
		}
		if change != nil {
			change(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, kid string, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	forged := sign(jwt.SigningMethodRS256, key, kid, claims(nil))
	// Control: a token signed with the realm's key and proper claims works,
	// so every refusal below is due to the one thing changed.
	harness.Do(t, "GET", f.base, forged, nil).Expect(t, 200)

	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	withClaim := func(change func(jwt.MapClaims)) string { return sign(jwt.SigningMethodRS256, key, kid, claims(change)) }
	other := f.env.NewRealm(t)
	noRoles := noRoleAccountToken(t, f.realm)
	consumer := f.realm.UserToken(t, "consumer")
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	create := func(label, name string) string {
		return fmt.Sprintf(`{"securityLabel":%q,"communityName":%q}`, label, name)
	}
	const api = "/realms/{realm}/communities"
	post := func(name, token, body string, want int) hostileCase {
		return hostileCase{name: name, method: "POST", path: api, token: token, ctype: "application/json", body: body, want: want}
	}
	get := func(name, path, token string, want int) hostileCase {
		return hostileCase{name: name, method: "GET", path: path, token: token, want: want}
	}
	cases := []hostileCase{
		// Tokens.
		post("alg none", noneTok, create("H1", "h"), 401),
		post("HS256 keyed with the realm's public key", sign(jwt.SigningMethodHS256, f.realm.PublicKeyPEM(t, &key.PublicKey), kid, claims(nil)), create("H1", "h"), 401),
		post("key not in the JWKS, real kid", sign(jwt.SigningMethodRS256, stranger, kid, claims(nil)), create("H1", "h"), 401),
		post("key not in the JWKS, unknown kid", sign(jwt.SigningMethodRS256, stranger, "forged-kid", claims(nil)), create("H1", "h"), 401),
		post("no kid", sign(jwt.SigningMethodRS256, key, "", claims(nil)), create("H1", "h"), 401),
		post("RS512 not allow-listed", sign(jwt.SigningMethodRS512, key, kid, claims(nil)), create("H1", "h"), 401),
		post("expired", withClaim(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), create("H1", "h"), 401),
		post("no expiry", withClaim(func(c jwt.MapClaims) { delete(c, "exp") }), create("H1", "h"), 401),
		post("not yet valid", withClaim(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), create("H1", "h"), 401),
		post("issued in the far future", withClaim(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(24 * time.Hour).Unix() }), create("H1", "h"), 401),
		post("issuer of another realm", withClaim(func(c jwt.MapClaims) { c["iss"] = f.env.KeycloakURL + "/realms/" + other.Name }), create("H1", "h"), 401),
		post("issuer of another Keycloak", withClaim(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/realms/" + realm }), create("H1", "h"), 401),
		post("issuer with a trailing slash", withClaim(func(c jwt.MapClaims) { c["iss"] = issuer + "/" }), create("H1", "h"), 401),
		post("no audience", withClaim(func(c jwt.MapClaims) { delete(c, "aud") }), create("H1", "h"), 401),
		post("wrong audience", withClaim(func(c jwt.MapClaims) { c["aud"] = "account" }), create("H1", "h"), 401),
		post("refresh token", withClaim(func(c jwt.MapClaims) { c["typ"] = "Refresh" }), create("H1", "h"), 401),
		post("ID token", withClaim(func(c jwt.MapClaims) { c["typ"] = "ID" }), create("H1", "h"), 401),
		post("no token type", withClaim(func(c jwt.MapClaims) { delete(c, "typ") }), create("H1", "h"), 401),
		post("no subject", withClaim(func(c jwt.MapClaims) { delete(c, "sub") }), create("H1", "h"), 401),
		post("genuine token of another realm", other.ClientToken(t, "service-desk", harness.ServiceDeskSecret), create("H1", "h"), 401),
		post("token without the service's audience", f.realm.ClientToken(t, "communities-service", harness.ServiceSecret), create("H1", "h"), 401),
		post("truncated token", forged[:len(forged)-10], create("H1", "h"), 401),
		post("payload swapped", swapPayload(consumer, forged), create("H1", "h"), 401),
		{name: "Basic instead of Bearer", method: "GET", path: api, headers: map[string]string{"Authorization": "Basic c2VydmljZS1kZXNrOnNlY3JldA=="}, want: 401},
		{name: "empty Bearer", method: "GET", path: api, headers: map[string]string{"Authorization": "Bearer "}, want: 401},
		// Roles.
		post("a consumer creating", consumer, create("H2", "h"), 403),
		post("a service account without roles creating", noRoles, create("H2", "h"), 403),
		{name: "a service account without roles deleting", method: "DELETE", path: api + "/NDD", token: noRoles, want: 403},
		{name: "owner of OTHER deleting NDD", method: "DELETE", path: api + "/NDD", token: creator, want: 403},
		{name: "owner of NDD deleting OTHER by body", method: "DELETE", path: api, token: author, ctype: "application/json", body: create("OTHER", "Creator's own"), want: 403},
		{name: "a consumer deleting", method: "DELETE", path: api + "/NDD", token: consumer, want: 403},
		post("a creator naming owners", creator, `{"securityLabel":"H3","communityName":"h","owners":["consumer"]}`, 403),
		// Bodies.
		post("malformed JSON", sd, `{"securityLabel":"H4",`, 400),
		post("oversized body", sd, `{"securityLabel":"H4","communityName":"`+strings.Repeat("x", 70<<10)+`"}`, 413),
		post("deeply nested", sd, `{"owners":`+strings.Repeat("[", 50)+strings.Repeat("]", 50)+`}`, 400),
		post("duplicate keys", sd, `{"securityLabel":"H4","securityLabel":"NDD","communityName":"h"}`, 400),
		post("unknown field", sd, `{"securityLabel":"H4","communityName":"h","admin":true}`, 400),
		post("label of the wrong type", sd, `{"securityLabel":4,"communityName":"h"}`, 400),
		post("null label", sd, `{"securityLabel":null,"communityName":"h"}`, 400),
		post("an array", sd, `[{"securityLabel":"H4","communityName":"h"}]`, 400),
		post("empty body", sd, ``, 400),
		post("two JSON values", sd, create("H4", "h")+create("H5", "h"), 400),
		post("owners not a list", sd, `{"securityLabel":"H4","communityName":"h","owners":"servicedesk"}`, 400),
		post("too many owners", sd, `{"securityLabel":"H4","communityName":"h","owners":[`+strings.Repeat(`"servicedesk",`, 50)+`"servicedesk"]}`, 400),
		post("unknown owner", sd, `{"securityLabel":"H4","communityName":"h","owners":["nobody"]}`, 400),
		// Labels.
		post("label with a dot", sd, create("H4.read", "h"), 400),
		post("label with a slash", sd, create("H4/x", "h"), 400),
		post("label ..", sd, create("..", "h"), 400),
		post("label with a space", sd, create("H 4", "h"), 400),
		post("label with a Cyrillic look-alike", sd, create("NDD\u0430", "h"), 400),
		post("label with SQL", sd, create("x'; DROP TABLE communities;--", "h"), 400),
		post("label with a template", sd, create("{{7*7}}", "h"), 400),
		post("label with a lookup", sd, create("${jndi:ldap://x}", "h"), 400),
		post("label too long", sd, create(strings.Repeat("L", 65), "h"), 400),
		post("label with NUL", sd, `{"securityLabel":"H4\u0000","communityName":"h"}`, 400),
		post("label percent-encoded slash", sd, create("H4%2F", "h"), 400),
		post("label differing only in case", sd, create("ndd", "h"), 409),
		// Names.
		post("name with a bell", sd, create("H4", "bell\a"), 400),
		post("name with a newline", sd, `{"securityLabel":"H4","communityName":"two\nlines"}`, 400),
		post("name with NUL", sd, `{"securityLabel":"H4","communityName":"nul\u0000"}`, 400),
		post("name with an escape sequence", sd, `{"securityLabel":"H4","communityName":"\u001b[31mred"}`, 400),
		post("name too long", sd, create("H4", strings.Repeat("n", 201)), 400),
		post("name only spaces", sd, create("H4", "   "), 400),
		post("name not UTF-8", sd, "{\"securityLabel\":\"H4\",\"communityName\":\"\xff\xfe\"}", 400),
		post("name taken, other case", sd, create("H4", "NATIONAL DATA DICTIONARY"), 409),
		// Content types.
		{name: "text/plain", method: "POST", path: api, token: sd, ctype: "text/plain", body: create("H4", "h"), want: 415},
		{name: "form encoded", method: "POST", path: api, token: sd, ctype: "application/x-www-form-urlencoded", body: "securityLabel=H4&communityName=h", want: 415},
		{name: "no content type", method: "POST", path: api, token: sd, ctype: "-", body: create("H4", "h"), want: 415},
		{name: "JSON look-alike type", method: "POST", path: api, token: sd, ctype: "application/json-patch+json", body: create("H4", "h"), want: 415},
		// Paths.
		// Path labels are held to the body's rule (once folded with
		// strings.ToLower: the Kelvin sign reached community "k...").
		get("encoded slash as label", api+"/%2F", sd, 400),
		get("encoded traversal", api+"/..%2F..%2Fadmin", sd, 400),
		get("Kelvin sign for K", api+"/%E2%84%AAELVIN", sd, 400),
		get("Kelvin sign for K, members", api+"/%E2%84%AAELVIN/members", sd, 400),
		{name: "Kelvin sign for K, delete", method: "DELETE", path: api + "/%E2%84%AAELVIN", token: sd, want: 400},
		// User references go to Keycloak's admin API with the service's
		// own credentials: only ids and usernames, escaped.
		{name: "user traversal", method: "PUT", path: api + "/NDD/consumer/..%2F..%2F" + realm, token: sd, want: 400},
		{name: "user traversal, remove", method: "DELETE", path: api + "/NDD/owner/..%2Fusers", token: sd, want: 400},
		{name: "user dot-dot", method: "PUT", path: api + "/NDD/consumer/..", token: sd, want: 400},
		{name: "user with a query", method: "PUT", path: api + "/NDD/consumer/x%3Fbriefrepresentation=true", token: sd, want: 400},
		{name: "user with a space", method: "PUT", path: api + "/NDD/author/a%20b", token: sd, want: 400},
		{name: "user id that is no user", method: "PUT", path: api + "/NDD/author/00000000-0000-4000-8000-000000000000", token: sd, want: 404},
		get("double slash", "//realms/{realm}/communities", sd, 404),
		get("trailing slash", api+"/", sd, 404),
		get("realm with a trailing dot", "/realms/{realm}./communities", sd, 404),
		get("label with a trailing dot", api+"/NDD.", sd, 400),
		get("encoded dot-dot realm", "/realms/%2e%2e/communities", sd, 404),
		get("realm not managed", "/realms/master/communities", sd, 404),
		get("negative first", api+"?first=-1", sd, 400),
		// A parameter given twice is refused: a proxy that reads the last
		// value would otherwise see another request than the service.
		get("first given twice", api+"?first=0&first=5", sd, 400),
		{name: "acceptLabelledResources given twice", method: "DELETE", path: api + "/NDD?acceptLabelledResources=false&acceptLabelledResources=true", token: sd, want: 400},
		{name: "DELETE with a name that does not match", method: "DELETE", path: api, token: sd, ctype: "application/json", body: create("NDD", "Something else"), want: 409},
		{name: "DELETE of an unknown label", method: "DELETE", path: api, token: sd, ctype: "application/json", body: create("NOPE", "x"), want: 404},
		{name: "PUT is not a method here", method: "PUT", path: api, token: sd, ctype: "application/json", body: create("H4", "h"), want: 405},
		// Headers.
		{name: "huge header", method: "GET", path: api, token: sd, headers: map[string]string{"X-Junk": strings.Repeat("j", 40<<10)}, want: 431},
		{name: "huge Authorization header", method: "GET", path: api, headers: map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 100<<10)}, want: 431},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d hostile cases", len(cases))
	}

	countRows := func() int64 {
		var n int64
		if err := f.svc.Store.DB().Raw("SELECT count(*) FROM communities WHERE realm = ?", realm).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	admin := f.realm.AdminToken(t)
	root, err := f.realm.GC.GetGroupByPath(ctx, admin, realm, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	countGroups := func() int {
		var children []gocloak.Group
		if _, err := f.realm.GC.GetRequestWithBearerAuth(ctx, admin).SetResult(&children).
			Get(f.env.KeycloakURL + "/admin/realms/" + realm + "/groups/" + *root.ID + "/children"); err != nil {
			t.Fatal(err)
		}
		return len(children)
	}
	rows, groups := countRows(), countGroups()
	for _, c := range cases {
		status := sendRaw(t, f.svc.URL, realm, c)
		if status != c.want {
			t.Errorf("%s: %d, want %d", c.name, status, c.want)
		}
		if r, g := countRows(), countGroups(); r != rows || g != groups {
			t.Fatalf("%s changed something: rows %d→%d, groups %d→%d", c.name, rows, r, groups, g)
		}
	}
	t.Logf("%d hostile cases, none changed anything", len(cases))
	if got := labels(f.list(t, sd)); strings.Join(got, ",") != "KELVIN,NDD,OTHER" {
		t.Errorf("communities after the hostile suite: %v", got)
	}
}

// sendRaw sends c over a plain TCP connection when its path must reach the
// server unnormalised, else with net/http.
func sendRaw(t *testing.T, base, realm string, c hostileCase) int {
	t.Helper()
	path := strings.ReplaceAll(c.path, "{realm}", realm)
	if strings.HasPrefix(path, "//") {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", c.method, path, c.token)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	req, err := http.NewRequest(c.method, base+path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.ctype != "" && c.ctype != "-" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.Header.Get("Content-Type") != "application/problem+json" &&
		resp.StatusCode >= 400 {
		t.Errorf("%s: error answered as %q, not problem+json", c.name, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode
}

// noRoleAccountToken makes a confidential client whose service account has
// no realm roles but does get the service's audience, and returns its token.
func noRoleAccountToken(t *testing.T, r *harness.Realm) string {
	t.Helper()
	ctx := context.Background()
	admin := r.AdminToken(t)
	_, err := r.GC.CreateClient(ctx, admin, r.Name, gocloak.Client{
		ClientID: gocloak.StringP("no-roles"), Secret: gocloak.StringP("no-roles-secret"),
		PublicClient: gocloak.BoolP(false), ServiceAccountsEnabled: gocloak.BoolP(true),
		StandardFlowEnabled: gocloak.BoolP(false), FullScopeAllowed: gocloak.BoolP(true),
		DefaultClientScopes: &[]string{"communities-audience", "roles", "basic"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := r.ClientToken(t, "no-roles", "no-roles-secret")
	if roles := claims(t, tok)["realm_access"]; roles != nil {
		for _, role := range roles.(map[string]any)["roles"].([]any) {
			if role == "service-desk" || role == "community-creator" {
				t.Fatalf("the no-roles account has %v", role)
			}
		}
	}
	return tok
}
