package keycloak

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestASecretCallWithoutASecretFails: Keycloak's answer to a secret's
// rotation must hold the new secret; without it the old one is gone and
// no one has the new one, which must not answer as a success.
func TestASecretCallWithoutASecretFails(t *testing.T) {
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients":
			fmt.Fprintf(w, `[{"id":"u1","clientId":"sys-a","attributes":{%q:"true"}}]`, SystemAccountAttribute)
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r/clients/u1/client-secret":
			fmt.Fprint(w, `{"type":"secret"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	secret, err := c.RotateSystemClientSecret(context.Background(), "r", "sys-a")
	if err == nil || secret != "" {
		t.Errorf("rotation without a secret in the answer: %q, %v", secret, err)
	}
}
