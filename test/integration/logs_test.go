package integration

import (
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestNoSecretsInLogs runs the service at debug level through successes,
// refusals and Keycloak errors, and checks its log holds no token, client
// secret or password.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	p := startProcess(t, map[string]string{
		"DATABASE_URL": env.DatabaseURL, "KEYCLOAK_URL": env.KeycloakURL,
		"COMMUNITIES_REALMS": realm.Name, "COMMUNITIES_ADMIN_CLIENT_SECRET": harness.ServiceSecret,
		"COMMUNITIES_LOG_LEVEL": "debug",
	})
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
	bad := startProcess(t, map[string]string{
		"DATABASE_URL": env.DatabaseURL, "KEYCLOAK_URL": env.KeycloakURL,
		"COMMUNITIES_REALMS": realm.Name, "COMMUNITIES_ADMIN_CLIENT_SECRET": "wrong-secret-value",
		"COMMUNITIES_LOG_LEVEL": "debug",
	})
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
