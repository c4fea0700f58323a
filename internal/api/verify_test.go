package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// verifierByToken answers each token as its map says: a principal, or an
// error.
type verifierByToken map[string]any

func (v verifierByToken) Verify(_ context.Context, _, raw string) (*auth.Principal, error) {
	switch a := v[raw].(type) {
	case *auth.Principal:
		return a, nil
	case error:
		return nil, a
	}
	return nil, auth.ErrInvalidToken
}

// TestTokenNotCheckedIsTryAgain: a token that could not be checked (its
// realm's keys could not be fetched) gets 503 with Retry-After, whether it
// is the caller's or the one a FHIR server sends to be judged; a bad one
// gets 401 (the caller's) or 422 (the judged one).
func TestTokenNotCheckedIsTryAgain(t *testing.T) {
	claims := jwt.MapClaims{"sub": "f", "azp": "fhir-server", "scope": "system/*.read"}
	fhir := &auth.Principal{Subject: "f", ClientID: "fhir-server", Claims: claims, Roles: map[string]bool{}, Privileges: decision.ParseClaims(claims)}
	unchecked := fault.New(fault.Unavailable, "the realm's signing keys could not be fetched from Keycloak to check the token", errors.New("503"))
	h := New(Options{
		Realms: []string{"r"}, Metrics: metrics.New(), MaxHeaderBytes: 32 << 10, DecisionClients: []string{"fhir-server"},
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Verifier: verifierByToken{"fhir": fhir, "unchecked": unchecked},
	})
	ask := func(method, path, token, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const decide, labels = "/realms/r/communities-authz/decision", "/realms/r/communities-authz/labels"
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"caller's token unchecked", http.MethodPost, decide, "unchecked", `{"resourceType":"CodeSystem","interaction":"read"}`, 503},
		{"caller's token bad", http.MethodPost, decide, "bad", `{"resourceType":"CodeSystem","interaction":"read"}`, 401},
		{"judged token unchecked", http.MethodPost, decide, "fhir", `{"resourceType":"CodeSystem","interaction":"read","token":"unchecked"}`, 503},
		{"judged token bad", http.MethodPost, decide, "fhir", `{"resourceType":"CodeSystem","interaction":"read","token":"bad"}`, 422},
		{"labels of a judged token unchecked", http.MethodPost, labels, "fhir", `{"token":"unchecked"}`, 503},
		{"labels of a judged token bad", http.MethodPost, labels, "fhir", `{"token":"bad"}`, 422},
	}
	for _, c := range cases {
		w := ask(c.method, c.path, c.token, c.body)
		if w.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body, c.want)
			continue
		}
		if c.want == 503 && (w.Header().Get("Retry-After") == "" || !bytes.Contains(w.Body.Bytes(), []byte("signing keys"))) {
			t.Errorf("%s: %v %s", c.name, w.Header(), w.Body)
		}
	}
}
