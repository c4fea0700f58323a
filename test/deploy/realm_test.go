package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestDemoRealmIsSafeToCopy: the demo realm offers password login (two
// public clients with the password grant, open registration), so it
// locks out guessing and refuses short passwords, and its public clients
// with a browser flow take PKCE; the service accounts of the service and
// of the FHIR server hold no realm role (the default roles give
// consumer's FHIR_READ, so either secret alone would read through the
// proxy); whoever copies it inherits these.
func TestDemoRealmIsSafeToCopy(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(harness.RepoDir(), "realm-export", "terminology-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		BruteForceProtected bool   `json:"bruteForceProtected"`
		PermanentLockout    bool   `json:"permanentLockout"`
		FailureFactor       int    `json:"failureFactor"`
		PasswordPolicy      string `json:"passwordPolicy"`
		Clients             []struct {
			ClientID            string            `json:"clientId"`
			PublicClient        bool              `json:"publicClient"`
			StandardFlowEnabled *bool             `json:"standardFlowEnabled"`
			Attributes          map[string]string `json:"attributes"`
		} `json:"clients"`
		Users []struct {
			ServiceAccountClientID string   `json:"serviceAccountClientId"`
			RealmRoles             []string `json:"realmRoles"`
		} `json:"users"`
	}
	if err := json.Unmarshal(raw, &realm); err != nil {
		t.Fatal(err)
	}
	if !realm.BruteForceProtected || realm.PermanentLockout || realm.FailureFactor < 1 || realm.FailureFactor > 30 {
		t.Errorf("brute-force detection: on %v, permanent %v, after %d failures; want on, temporary, within 30",
			realm.BruteForceProtected, realm.PermanentLockout, realm.FailureFactor)
	}
	if !strings.Contains(realm.PasswordPolicy, "length(") || !strings.Contains(realm.PasswordPolicy, "notUsername") {
		t.Errorf("password policy %q: want a minimum length and not the username", realm.PasswordPolicy)
	}
	for _, c := range realm.Clients {
		// Keycloak's default for standardFlowEnabled is on.
		browser := c.StandardFlowEnabled == nil || *c.StandardFlowEnabled
		if c.PublicClient && browser && c.Attributes["pkce.code.challenge.method"] != "S256" {
			t.Errorf("public client %s has a browser flow without PKCE (S256)", c.ClientID)
		}
	}
	accounts := map[string]bool{}
	for _, u := range realm.Users {
		switch u.ServiceAccountClientID {
		case "fhir-server", "communities-service":
			accounts[u.ServiceAccountClientID] = true
			if len(u.RealmRoles) > 0 {
				t.Errorf("%s's service account holds realm roles %v; want none", u.ServiceAccountClientID, u.RealmRoles)
			}
		}
	}
	if len(accounts) != 2 {
		// Left out, Keycloak would make the account with the default roles.
		t.Errorf("service accounts listed: %v; want fhir-server's and communities-service's", accounts)
	}
}
