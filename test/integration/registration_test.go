package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

var registerForm = regexp.MustCompile(`<form[^>]*id="kc-register-form"[^>]*action="([^"]+)"|<form[^>]*action="([^"]+)"[^>]*id="kc-register-form"`)

// TestSelfRegistrationJoinsDefaultCommunities: seed 000, "Once registered
// ... you will automatically join the 'Restricted' and 'Open'
// communities". In the demo realm a newcomer registers on Keycloak's own
// registration page (its form, as a browser posts it), and the first token
// they get carries grouping/Open.read and grouping/Restricted.read.
func TestSelfRegistrationJoinsDefaultCommunities(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.DefaultCommunities = []string{"Open=Open", "Restricted=Restricted"}
	svc := env.StartService(t, cfg)
	f := &fixture{env: env, realm: realm, svc: svc, base: svc.URL + "/realms/" + realm.Name + "/communities"}
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Eventually(t, 60*time.Second, "Open and Restricted", func() bool {
		return slices.Equal(labels(f.list(t, sd)), []string{"Open", "Restricted"})
	})

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: time.Minute,
		// Stop at the redirect back to the client: it carries the code.
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), "http://localhost/cb") {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	const redirect = "http://localhost/cb"
	base := env.KeycloakURL + "/realms/" + realm.Name + "/protocol/openid-connect"
	// The client takes PKCE (S256) only: asked without it, Keycloak sends
	// the browser back with an error, not to the form.
	ask := url.Values{"client_id": {"terminology-client"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {redirect}}
	if refused, err := client.Get(base + "/registrations?" + ask.Encode()); err != nil {
		t.Fatal(err)
	} else if loc, _ := url.Parse(refused.Header.Get("Location")); refused.Body.Close() != nil || loc == nil || loc.Query().Get("error") == "" {
		t.Errorf("a registration without PKCE: %d %s, want sent back with an error", refused.StatusCode, refused.Header.Get("Location"))
	}
	verifier := rand.Text() + rand.Text()
	challenge := sha256.Sum256([]byte(verifier))
	ask.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	ask.Set("code_challenge_method", "S256")
	page, err := client.Get(base + "/registrations?" + ask.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := registerForm.FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no registration form (is registration allowed in the demo realm?): %d %.500s", page.StatusCode, body)
	}
	action := html.UnescapeString(m[1] + m[2])
	resp, err := client.PostForm(action, url.Values{
		"username": {"newcomer"}, "email": {"newcomer@example.org"}, "firstName": {"New"}, "lastName": {"Comer"},
		"password": {"Newcomer-pass-1"}, "password-confirm": {"Newcomer-pass-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("registration did not return to the client with a code: %d %s %.800s", resp.StatusCode, resp.Header.Get("Location"), body)
	}

	// The newcomer's first token.
	tok, err := realm.TryToken(url.Values{"grant_type": {"authorization_code"}, "client_id": {"terminology-client"},
		"code": {loc.Query().Get("code")}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	if got := claims(t, tok)["preferred_username"]; got != "newcomer" {
		t.Fatalf("token of %v", got)
	}
	mustContain(t, "newcomer's scopes", scopesOf(t, tok), "grouping/Open.read", "grouping/Restricted.read")
	mustLack(t, "newcomer's scopes", scopesOf(t, tok), "grouping/Open.write", "grouping/Restricted.write")
	// The realm's token form is scopes: each privilege once, not also as an authority.
	mustLack(t, "newcomer's authorities", authoritiesOf(t, tok), "PERM_Open_READ", "PERM_Restricted_READ")
	if !isMemberOf(t, realm, "newcomer", "/Communities/Open/consumer") || !isMemberOf(t, realm, "newcomer", "/Communities/Restricted/consumer") {
		t.Error("the newcomer is not a consumer of Open and Restricted")
	}
}
