package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/metrics"
)

// requestIDIn is the request id of a log line, "" without one.
func requestIDIn(line map[string]any) string {
	s, _ := line["request_id"].(string)
	return s
}

// panicVerifier panics on every token: a bug the recoverer must answer.
type panicVerifier struct{}

func (panicVerifier) Verify(context.Context, string, string) (*auth.Principal, error) {
	panic("verifier bug")
}

// TestFailureIsOneLogLine: a request that fails on the server's side (a
// 503 of a server it depends on, a 500 of a panic) is one error line, the
// request's, carrying the cause the caller is not shown; it was two, so
// alerts on error lines counted each failure twice.
func TestFailureIsOneLogLine(t *testing.T) {
	unchecked := fault.New(fault.Unavailable, "the realm's signing keys could not be fetched", errors.New("keycloak said 503"))
	for _, c := range []struct {
		name     string
		verifier Verifier
		status   int
		cause    string
	}{
		{"unavailable", verifierByToken{"t": unchecked}, 503, "keycloak said 503"},
		{"panic", panicVerifier{}, 500, "panic: verifier bug"},
	} {
		var logs bytes.Buffer
		h := New(Options{
			Realms: []string{"r"}, Metrics: metrics.New(), MaxHeaderBytes: 32 << 10,
			Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Verifier: c.verifier,
		})
		r := httptest.NewRequest("GET", "/realms/r/communities", nil)
		r.Header.Set("Authorization", "Bearer t")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.status || strings.Contains(w.Body.String(), c.cause) {
			t.Errorf("%s: %d %s; want %d without the cause", c.name, w.Code, w.Body, c.status)
		}
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("%s: log line %q: %v", c.name, l, err)
			}
			lines = append(lines, m)
		}
		if len(lines) != 1 {
			t.Fatalf("%s: %d log lines, want one: %s", c.name, len(lines), logs.String())
		}
		l := lines[0]
		if l["level"] != "ERROR" || l["msg"] != "request" || l["status"] != float64(c.status) ||
			!strings.Contains(fmt.Sprint(l["error"]), c.cause) || requestIDIn(l) == "" {
			t.Errorf("%s: log line %v; want the request's, at ERROR, with its cause", c.name, l)
		}
	}
}

// TestMethodsNeverMakeSeries: Go's server takes any token as a method;
// each one a label would be a series kept for good, so any method that is
// not HTTP's is counted, logged and answered as "other".
func TestMethodsNeverMakeSeries(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New()
	h := New(Options{Realms: []string{"r"}, Metrics: m, MaxHeaderBytes: 32 << 10, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	for i := range 50 {
		method := fmt.Sprintf("M%04d%s", i, strings.Repeat("X", 500))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/healthz", nil))
		if w.Code != 405 || strings.Contains(w.Body.String(), "XXXX") {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	if n := testutil.CollectAndCount(m.Requests); n != 2 {
		t.Errorf("%d series of requests, want 2 (GET and other)", n)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("unmatched", "other", "405")); got != 50 {
		t.Errorf("other: %v", got)
	}
	if strings.Contains(logs.String(), "XXXX") {
		t.Error("a caller's method reached the log")
	}
}
