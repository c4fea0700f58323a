package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestAnswersConformToOpenAPI sends each kind of request, good and bad,
// and checks every answer against internal/api/openapi.yaml.
func TestAnswersConformToOpenAPI(t *testing.T) {
	f := newFixture(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	consumer := f.realm.UserToken(t, "consumer")
	check := func(method, u, token string, body any) *harness.Response {
		t.Helper()
		resp := harness.Do(t, method, u, token, body)
		harness.ConformsToOpenAPI(t, method, u, resp)
		return resp
	}
	nddJSON := map[string]string{"securityLabel": "NDD", "communityName": "National data dictionary"}
	check("POST", f.base, sd, nddJSON).Expect(t, 201)
	check("POST", f.base, sd, nddJSON).Expect(t, 409)
	check("POST", f.base, consumer, map[string]string{"securityLabel": "C", "communityName": "C"}).Expect(t, 403)
	check("POST", f.base, sd, map[string]string{"securityLabel": "a.b", "communityName": "C"}).Expect(t, 400)
	check("POST", f.base, sd, `{"securityLabel":"`+strings.Repeat("x", 70000)+`"}`).Expect(t, 413)
	check("GET", f.base, consumer, nil).Expect(t, 200)
	check("GET", f.base+"?first=0&max=1", consumer, nil).Expect(t, 200)
	check("GET", f.base+"?max=0", consumer, nil).Expect(t, 400)
	check("GET", f.base, "", nil).Expect(t, 401)
	check("GET", f.base+"/NDD", consumer, nil).Expect(t, 200)
	check("GET", f.base+"/XYZ", consumer, nil).Expect(t, 404)
	check("GET", f.svc.URL+"/auth/realms/"+f.realm.Name+"/communities", consumer, nil).Expect(t, 200)
	check("DELETE", f.base, sd, map[string]string{"securityLabel": "NDD", "communityName": "x"}).Expect(t, 409)
	check("DELETE", f.base+"/NDD", consumer, nil).Expect(t, 403)
	check("DELETE", f.base, sd, nddJSON).Expect(t, 204)
	check("DELETE", f.base+"/NDD", sd, nil).Expect(t, 404)
	check("GET", f.svc.URL+"/healthz", "", nil).Expect(t, 200)
	check("GET", f.svc.URL+"/readyz", "", nil).Expect(t, 200)
	check("GET", f.svc.URL+"/openapi.yaml", "", nil).Expect(t, 200)
	metrics := check("GET", f.svc.URL+"/metrics", "", nil).Expect(t, 200)
	for _, want := range []string{
		`communities_http_requests_total{method="POST",route="/realms/:realm/communities",status="201"} 1`,
		`communities_http_requests_total{method="POST",route="/realms/:realm/communities",status="409"} 1`,
		"communities_keycloak_request_duration_seconds_bucket",
	} {
		if !strings.Contains(string(metrics.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Unknown paths and methods answer problems too.
	resp := harness.Do(t, "PATCH", f.base, sd, nil)
	if resp.Status != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("PATCH: %s", resp)
	}
	if resp := harness.Do(t, "GET", f.svc.URL+"/nowhere", "", nil); resp.Status != 404 {
		t.Errorf("unknown path: %s", resp)
	}
}

// TestReadinessFollowsKeycloak: /readyz fails while the service cannot log
// in to Keycloak (here: a wrong secret), /healthz does not.
func TestReadinessFollowsKeycloak(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.AdminClientSecret = "wrong"
	svc := env.StartService(t, cfg)
	harness.Do(t, "GET", svc.URL+"/healthz", "", nil).Expect(t, 200)
	resp := harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 503)
	harness.ConformsToOpenAPI(t, "GET", svc.URL+"/readyz", resp)
}
