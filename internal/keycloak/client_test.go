package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"
	"github.com/go-resty/resty/v2"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// TestRetryable: calls safe to repeat are retried when Keycloak did not
// answer or answered 5xx or 429, and the extension's cleanup, which
// removes only what is there, is one of them; a create never is.
func TestRetryable(t *testing.T) {
	const base = "http://kc/admin/realms/r"
	answer := func(method, url string, status int) *resty.Response {
		return &resty.Response{Request: &resty.Request{Method: method, URL: url},
			RawResponse: &http.Response{StatusCode: status}}
	}
	for _, c := range []struct {
		why  string
		resp *resty.Response
		err  error
		want bool
	}{
		{"a read Keycloak failed", answer("GET", base+"/groups", 503), nil, true},
		{"a read Keycloak refused", answer("GET", base+"/groups", 400), nil, false},
		{"a delete unanswered", answer("DELETE", base+"/groups/x", 0), errors.New("reset"), true},
		{"the cleanup Keycloak failed", answer("POST", base+cleanupPath, 502), nil, true},
		{"the cleanup throttled", answer("POST", base+cleanupPath, 429), nil, true},
		{"the cleanup refused", answer("POST", base+cleanupPath, 403), nil, false},
		{"a create Keycloak failed", answer("POST", base+artefactsPath, 503), nil, false},
		{"a policy create Keycloak failed", answer("POST", base+"/clients/x/authz/resource-server/policy/group", 503), nil, false},
	} {
		if got := retryable(c.resp, c.err); got != c.want {
			t.Errorf("%s: retried %v, want %v", c.why, got, c.want)
		}
	}
}

// TestExtensionNotFound: a 404 for a path Keycloak does not serve names
// the extension; one the extension gave itself passes its message on
// and says nothing of installing it.
func TestExtensionNotFound(t *testing.T) {
	for _, c := range []struct{ body, want, not string }{
		{`{"error":"HTTP 404 Not Found"}`, "is the project's Keycloak extension", ""},
		{`{"error":"client fhir-gone not found"}`, "client fhir-gone not found", "installed"},
	} {
		kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token") {
				fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, c.body)
		}))
		cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
		_, err := cl.Cleanup(context.Background(), "r", "Communities", "NDD", "id1", []string{"fhir-gone"})
		kc.Close()
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), c.want) || (c.not != "" && strings.Contains(err.Error(), c.not)) {
			t.Errorf("Keycloak's 404 %s: got %v, want ErrNotFound saying %q", c.body, err, c.want)
		}
	}
}

// TestRefusedTokenIsDropped: an admin token Keycloak answers 401 (a
// restart with new keys, an ended session) is not used again: the next
// call logs in anew, where every call failed until the token's renewal.
func TestRefusedTokenIsDropped(t *testing.T) {
	var logins atomic.Int32
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token") {
			fmt.Fprintf(w, `{"access_token":"t%d","expires_in":300}`, logins.Add(1))
			return
		}
		if r.Header.Get("Authorization") == "Bearer t1" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"HTTP 401 Unauthorized"}`)
			return
		}
		fmt.Fprint(w, `[]`)
	}))
	defer kc.Close()
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	user := "6f1c2b9e-0000-4000-8000-000000000002"
	if _, err := cl.UserGroups(context.Background(), "r", user); err == nil {
		t.Fatal("a call with a refused token succeeded")
	}
	if _, err := cl.UserGroups(context.Background(), "r", user); err != nil || logins.Load() != 2 {
		t.Errorf("the call after a 401: %v, %d logins: want a new login and success", err, logins.Load())
	}
}

// TestRecreatedClientIsLookedUpAgain: a FHIR client made again under a new
// id is found again by the check of an unmapped scope, where its cached id
// failed every drift check of the realm until a restart.
func TestRecreatedClientIsLookedUpAgain(t *testing.T) {
	var lookups, removed atomic.Int32
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.URL.Path == "/admin/realms/r/clients" && r.URL.Query().Get("clientId") == "fhir":
			lookups.Add(1)
			fmt.Fprint(w, `[{"id":"new-id","clientId":"fhir"}]`)
		case r.URL.Path == "/admin/realms/r/clients/new-id/default-client-scopes" && r.Method == http.MethodGet:
			fmt.Fprint(w, `[{"id":"sc","name":"grouping/NDD.read"}]`)
		case r.URL.Path == "/admin/realms/r/clients/new-id/default-client-scopes/sc" && r.Method == http.MethodDelete:
			removed.Add(1)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"Could not find client"}`)
		}
	}))
	defer kc.Close()
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	cl.clients["r/fhir"] = "old-id" // looked up before the client was made again
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "NDD", FHIRClients: []string{"fhir"}}
	err := cl.detachUnmapped(context.Background(), "t", s, scopeRep{ID: "sc", Name: "grouping/NDD.read"}, func(string, string, bool) {})
	if err != nil || lookups.Load() != 1 || removed.Load() != 1 {
		t.Errorf("detach after the client was made again: %v, %d lookups, %d removed: want one lookup and the scope off", err, lookups.Load(), removed.Load())
	}
}

// TestReadOnlyRefusalIsNoOutage: a change a read-only client refuses
// (plan, export) is a refusal, sent once and never retried, and no sign
// that Keycloak is down: counted as an outage, two in a row stopped a
// drift pass, and each was tried three times.
func TestReadOnlyRefusalIsNoOutage(t *testing.T) {
	var sent atomic.Int32
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token") {
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
			return
		}
		sent.Add(1)
		fmt.Fprint(w, `{}`)
	}))
	defer kc.Close()
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ReadOnly: true})
	ctx := context.Background()
	user, group := "6f1c2b9e-0000-4000-8000-000000000002", "6f1c2b9e-0000-4000-8000-000000000003"
	if _, err := cl.token(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func() error{
		"a gocloak PUT":          func() error { return cl.AddMember(ctx, "r", group, user) },
		"a gocloak PUT, no body": func() error { return cl.AddDefaultGroup(ctx, "r", group) },
		"a raw PUT":              func() error { _, err := cl.raw(ctx, "t", http.MethodPut, "r", map[string]any{}, nil); return err },
		"a raw DELETE":           func() error { _, err := cl.raw(ctx, "t", http.MethodDelete, "r/groups/"+group, nil, nil); return err },
		"a raw POST": func() error {
			_, err := cl.raw(ctx, "t", http.MethodPost, "r/groups", map[string]any{}, nil)
			return err
		},
	} {
		before := cl.RoundTrips()
		err := change()
		if !errors.Is(err, ErrReadOnly) || fault.KindOf(err) != fault.Refused || errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: %v (kind %v), want ErrReadOnly, a refusal, not unavailable", name, err, fault.KindOf(err))
		}
		if n := cl.RoundTrips() - before; n != 1 {
			t.Errorf("%s: tried %d times, want once", name, n)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("%d changes reached Keycloak", n)
	}
}

// TestUserOfTellsServiceAccountsByName: Keycloak's user representation
// does not name a service account's client, its username does.
func TestUserOfTellsServiceAccountsByName(t *testing.T) {
	if got := serviceAccountOf("service-account-"); got != "" {
		t.Errorf("the bare prefix names client %q", got)
	}
	for name, want := range map[string]string{
		"service-account-acme-syndication": "acme-syndication",
		"bob":                              "",
		"service-accountant":               "",
		"alice-service-account-x":          "",
	} {
		if got := userOf(&gocloak.User{ID: gocloak.StringP("id"), Username: gocloak.StringP(name)}); got.ServiceAccountOf != want || got.ID != "id" {
			t.Errorf("%s: %+v, want the service account of %q", name, got, want)
		}
	}
}
