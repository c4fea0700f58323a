package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestCORSFromConfiguredOriginsOnly: browsers on an origin listed in
// --cors-origins may call the API (for an admin console on another host
// than the service); every other origin gets no CORS answer, and by default
// none does.
func TestCORSFromConfiguredOriginsOnly(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	const allowed, other = "https://console.example.org", "https://elsewhere.example.org"
	cfg := env.Config(realm.Name)
	cfg.CORSOrigins = []string{allowed}
	withCORS := env.StartService(t, cfg)
	plain := env.StartService(t, env.Config(realm.Name))
	token := realm.UserToken(t, "creator")

	send := func(svc *harness.Service, method, origin, token string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, svc.URL+"/realms/"+realm.Name+"/communities", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// Another origin is refused as problem details, saying why (the
	// library's own refusal was a bare 403 with no body).
	refused := harness.DoWith(t, http.MethodGet, withCORS.URL+"/realms/"+realm.Name+"/communities", token, nil,
		http.Header{"Origin": {other}}).Expect(t, 403)
	if refused.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(refused.Body), "not in --cors-origins") {
		t.Errorf("another origin refused with %s %v", refused, refused.Header)
	}

	// The listed origin: preflight answered (without a token), the call too.
	pre := send(withCORS, http.MethodOptions, allowed, "")
	if pre.StatusCode/100 != 2 || pre.Header.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(strings.ToLower(pre.Header.Get("Access-Control-Allow-Headers")), "authorization") ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight from %s: %d %v", allowed, pre.StatusCode, pre.Header)
	}
	if resp := send(withCORS, http.MethodGet, allowed, token); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != allowed {
		t.Errorf("GET from %s: %d, Access-Control-Allow-Origin %q", allowed, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// Without a token the call is still refused: CORS opens no door.
	if resp := send(withCORS, http.MethodGet, allowed, ""); resp.StatusCode != 401 {
		t.Errorf("GET from %s without a token: %d", allowed, resp.StatusCode)
	}

	// Another origin, and the default configuration: no CORS answer at all.
	for name, c := range map[string]struct {
		svc    *harness.Service
		origin string
	}{"another origin": {withCORS, other}, "default configuration": {plain, allowed}} {
		for _, method := range []string{http.MethodOptions, http.MethodGet} {
			resp := send(c.svc, method, c.origin, token)
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("%s: %s answered Access-Control-Allow-Origin %q", name, method, v)
			}
			if method == http.MethodOptions && resp.StatusCode/100 == 2 {
				t.Errorf("%s: preflight answered %d", name, resp.StatusCode)
			}
		}
	}
}
