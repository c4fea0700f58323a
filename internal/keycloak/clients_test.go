package keycloak

import (
	"context"
	"encoding/json"
	"errors"
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

// TestUnfinishedSystemAccountIsNoAccount: an account is made "pending" and
// marked a system account only once it holds just its profile, so one whose
// create's answer was lost (its default roles and groups still on it) is
// never listed, found or rotated, only deleted; and a delete whose first
// try's answer was lost is done, not "not found", when its retry meets 404.
func TestUnfinishedSystemAccountIsNoAccount(t *testing.T) {
	var created, marked string
	deletes := 0
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r/clients":
			var c struct{ Attributes map[string]string }
			_ = json.NewDecoder(r.Body).Decode(&c)
			created = c.Attributes[SystemAccountAttribute]
			w.Header().Set("Location", "http://kc/admin/realms/r/clients/new")
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients/new/service-account-user":
			fmt.Fprint(w, `{"id":"sa"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients/new":
			fmt.Fprintf(w, `{"id":"new","clientId":"made","attributes":{%q:%q,"x":"y"}}`, SystemAccountAttribute, created)
		case r.Method == http.MethodPut && r.URL.Path == "/admin/realms/r/clients/new":
			var c struct{ Attributes map[string]string }
			_ = json.NewDecoder(r.Body).Decode(&c)
			if c.Attributes["x"] == "y" {
				marked = c.Attributes[SystemAccountAttribute]
			}
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients/new/client-secret":
			fmt.Fprint(w, `{"type":"secret","value":"s3cret"}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients":
			fmt.Fprintf(w, `[{"id":"u1","clientId":"half","attributes":{%q:"pending"}}]`, SystemAccountAttribute)
		case r.Method == http.MethodDelete && r.URL.Path == "/admin/realms/r/clients/u1":
			deletes++
			if deletes == 1 { // deleted, and the answer lost
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"Could not find client"}`)
		case r.Method == http.MethodGet:
			fmt.Fprint(w, `[]`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	ctx := context.Background()
	secret, err := c.CreateSystemClient(ctx, "r", SystemClient{ClientID: "made"})
	if err != nil || secret != "s3cret" || created != systemAccountPending || marked != systemAccountDone {
		t.Errorf("create: %q, %v; made %q, then marked %q (keeping its other attributes): want pending, then true", secret, err, created, marked)
	}
	if list, err := c.SystemClients(ctx, "r"); err != nil || len(list) != 0 {
		t.Errorf("list %+v, %v: an unfinished account is listed", list, err)
	}
	if _, err := c.SystemClient(ctx, "r", "half"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unfinished account is found: %v", err)
	}
	if _, err := c.RotateSystemClientSecret(ctx, "r", "half"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unfinished account's secret is rotated: %v", err)
	}
	if err := c.DeleteSystemClient(ctx, "r", "half"); err != nil || deletes != 2 {
		t.Errorf("delete of an unfinished account, its first answer lost: %v after %d tries", err, deletes)
	}
}
