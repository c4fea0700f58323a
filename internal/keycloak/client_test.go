package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-resty/resty/v2"
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
