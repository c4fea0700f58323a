package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestNoSecretsInLogs runs the service at debug level through successes,
// refusals and Keycloak errors, and checks its log holds no token, client
// secret or password.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	p := startProcess(t, serviceEnv(env, realm.Name, map[string]string{"COMMUNITIES_LOG_LEVEL": "debug"}))
	base := "http://" + p.addr + "/realms/" + realm.Name + "/communities"
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	// People change communities through the CLI client (--change-clients).
	author := realm.PasswordToken(t, "communities-cli", "author")
	consumer := realm.UserToken(t, "consumer")
	tokens := []string{sd, author, consumer}

	harness.Do(t, "POST", base, author, map[string]string{"securityLabel": "LOG", "communityName": "Logged"}).Expect(t, 201)
	harness.Do(t, "POST", base, consumer, map[string]string{"securityLabel": "LOG2", "communityName": "x"}).Expect(t, 403)
	harness.Do(t, "GET", base, sd, nil).Expect(t, 200)
	harness.Do(t, "GET", base, consumer[:len(consumer)-5]+"xxxxx", nil).Expect(t, 401)
	harness.Do(t, "GET", base, "garbage."+harness.ServiceDeskSecret, nil).Expect(t, 401)
	harness.Do(t, "POST", base, sd, `{"securityLabel":"`+harness.ServiceSecret+`","communityName":"x"}`).Expect(t, 400)
	harness.Do(t, "DELETE", base+"/LOG", sd, nil).Expect(t, 204)

	// A Keycloak error: the admin client's secret rejected.
	bad := startProcess(t, serviceEnv(env, realm.Name, map[string]string{
		"COMMUNITIES_ADMIN_CLIENT_SECRET": "wrong-secret-value", "COMMUNITIES_LOG_LEVEL": "debug"}))
	// Keycloak refuses the service's own credentials: 502, since trying
	// again cannot help (it was 503 before the error vocabulary, issue 13).
	harness.Do(t, "POST", "http://"+bad.addr+"/realms/"+realm.Name+"/communities", sd,
		map[string]string{"securityLabel": "LOG3", "communityName": "x"}).Expect(t, 502)
	harness.Do(t, "GET", "http://"+bad.addr+"/readyz", "", nil).Expect(t, 503)

	logs := p.Log() + bad.Log()
	if !strings.Contains(logs, `"status":201`) || !strings.Contains(logs, "token refused") {
		t.Fatalf("the log does not show the requests; is it captured?\n%s", logs)
	}
	secrets := map[string]string{
		"service desk secret": harness.ServiceDeskSecret,
		"admin secret":        harness.ServiceSecret,
		"wrong admin secret":  "wrong-secret-value",
		"password":            "author-pass",
	}
	for i, tok := range tokens {
		parts := strings.Split(tok, ".")
		secrets["token "+string(rune('A'+i))+" payload"] = parts[1][:40]
		secrets["token "+string(rune('A'+i))+" signature"] = parts[2][:40]
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains the %s", what)
		}
	}
}

// TestOversizedHeadersAreExplained: a request whose headers exceed
// --max-header-kib (a token of someone in too many communities, say) gets
// a problem+json 431 naming the largest header, is logged and counted,
// where Go's server would answer a bare 431 and say nothing (issue 14).
func TestOversizedHeadersAreExplained(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	p := startProcess(t, serviceEnv(env, realm.Name, map[string]string{"COMMUNITIES_MAX_HEADER_KIB": "16"}))
	base := "http://" + p.addr + "/realms/" + realm.Name + "/communities"
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	harness.Do(t, "GET", base, sd, nil).Expect(t, 200)

	big := sd + strings.Repeat("x", 20<<10)
	resp := harness.Do(t, "GET", base, big, nil).Expect(t, 431)
	var pd map[string]any
	resp.JSON(t, &pd)
	detail, _ := pd["detail"].(string)
	if resp.Header.Get("Content-Type") != "application/problem+json" || pd["status"] != float64(431) ||
		!strings.Contains(detail, "the largest is Authorization") || !strings.Contains(detail, "too many roles or scopes") {
		t.Errorf("431 answer %s %s", resp.Header.Get("Content-Type"), resp.Body)
	}
	// Any other header is named too, and counted apart from tokens.
	resp = harness.DoWith(t, "GET", base, sd, nil, http.Header{"X-Padding": {strings.Repeat("p", 17<<10)}}).Expect(t, 431)
	if !strings.Contains(string(resp.Body), "the largest is X-Padding") {
		t.Errorf("431 answer %s", resp.Body)
	}
	metrics := string(harness.Do(t, "GET", "http://"+p.addr+"/metrics", "", nil).Expect(t, 200).Body)
	for _, want := range []string{
		`communities_request_headers_too_large_total{largest="authorization"} 1`,
		`communities_request_headers_too_large_total{largest="other"} 1`,
		`status="431"} 2`, // communities_http_requests_total
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if log := p.Log(); strings.Count(log, "request headers too large") != 2 || strings.Contains(log, big[len(sd):len(sd)+64]) {
		t.Errorf("the log should record both refusals, without the headers:\n%s", log)
	}
}

// TestQuietRoutesLogOnlyWhatGoesWrong: at the default level the decision
// point, labels and the probes, which machines call at a high rate, log
// only their refusals and errors; their successes are still counted. The
// API people use logs every request.
func TestQuietRoutesLogOnlyWhatGoesWrong(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	p := startProcess(t, serviceEnv(env, realm.Name, nil))
	svc := "http://" + p.addr
	authz := svc + "/realms/" + realm.Name + "/communities-authz"
	fhir := realm.ClientToken(t, "fhir-server", "fhir-server-secret")
	read := map[string]any{"resourceType": "CodeSystem", "interaction": "read"}
	harness.Do(t, "GET", svc+"/healthz", "", nil).Expect(t, 200)
	harness.Do(t, "POST", authz+"/decision", fhir, read).Expect(t, 200)
	harness.Do(t, "GET", authz+"/labels", fhir, nil).Expect(t, 200)
	harness.Do(t, "POST", authz+"/decision", "", read).Expect(t, 401)
	harness.Do(t, "POST", authz+"/decision", fhir, map[string]any{"interaction": "read"}).Expect(t, 400)
	harness.Do(t, "GET", svc+"/realms/"+realm.Name+"/communities", fhir, nil).Expect(t, 200)

	var log string
	logged := func(route string, status int) bool {
		return strings.Contains(log, fmt.Sprintf(`"route":%q,"status":%d`, route, status))
	}
	// A request is logged just after its answer is sent: wait for the
	// last one's line, and with it every line before.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if log = p.Log(); logged("/realms/:realm/communities", 200) || time.Now().After(deadline) {
			break
		}
	}
	const decision = "/realms/:realm/communities-authz/decision"
	for _, c := range []struct {
		route  string
		status int
		want   bool
	}{
		{"/healthz", 200, false},
		{decision, 200, false},
		{"/realms/:realm/communities-authz/labels", 200, false},
		{decision, 401, true},
		{decision, 400, true},
		{"/realms/:realm/communities", 200, true},
	} {
		if got := logged(c.route, c.status); got != c.want {
			t.Errorf("%s answering %d logged: %v, want %v", c.route, c.status, got, c.want)
		}
	}
	metrics := harness.Do(t, "GET", svc+"/metrics", "", nil).Expect(t, 200).Body
	if want := `communities_http_requests_total{method="POST",route="` + decision + `",status="200"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// serviceEnv is the environment of a service process for realm against
// the harness's servers, with extra settings on top.
func serviceEnv(env *harness.Env, realm string, extra map[string]string) map[string]string {
	out := map[string]string{
		"DATABASE_URL": env.DatabaseURL, "KEYCLOAK_URL": env.KeycloakURL,
		"COMMUNITIES_REALMS": realm, "COMMUNITIES_ADMIN_CLIENT_SECRET": harness.ServiceSecret,
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}
