package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// fixedVerifier answers every token with one principal: the benchmarks
// below measure the handler's own path, the cached verification is
// measured in internal/auth (BenchmarkVerifyCached).
type fixedVerifier struct{ p *auth.Principal }

func (v fixedVerifier) Verify(context.Context, string, string) (*auth.Principal, error) {
	return v.p, nil
}

// benchHandler is the service's handler as the server builds it, logging
// JSON (to nowhere) at Info.
func benchHandler() http.Handler {
	claims := jwt.MapClaims{
		"sub": "u1", "azp": "fhir-server", "preferred_username": "approver",
		"scope":       "openid profile email system/*.read grouping/C1.read grouping/C2.read grouping/NDD.read",
		"authorities": []any{"FHIR_READ", "PERM_C1_READ", "PERM_C2_READ", "PERM_NDD_READ", "offline_access"},
	}
	p := &auth.Principal{Subject: "u1", ClientID: "fhir-server", Username: "approver", Claims: claims,
		Roles: map[string]bool{"FHIR_READ": true}, Privileges: decision.ParseClaims(claims), Expires: time.Now().Add(time.Hour)}
	return New(Options{
		Realms: []string{"terminology"}, Verifier: fixedVerifier{p}, Metrics: metrics.New(),
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		MaxHeaderBytes: 32 << 10,
	})
}

var decisionBody = []byte(`{"resourceType":"CodeSystem","interaction":"read","security":[{"system":"` +
	decision.DefaultSystem + `","code":"NDD.read"}]}`)

func serve(b *testing.B, h http.Handler, req func() *http.Request) {
	b.Helper()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req())
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkHealthz is the ceiling: the service's trivial handler through
// the same middleware.
func BenchmarkHealthz(b *testing.B) {
	h := benchHandler()
	serve(b, h, func() *http.Request { return httptest.NewRequest(http.MethodGet, "/healthz", nil) })
}

// BenchmarkDecision is one decision of a FHIR server about a read,
// verification aside.
func BenchmarkDecision(b *testing.B) {
	h := benchHandler()
	serve(b, h, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/realms/terminology/communities-authz/decision", bytes.NewReader(decisionBody))
		r.Header.Set("Authorization", "Bearer x.y.z")
		r.Header.Set("Content-Type", "application/json")
		return r
	})
}
