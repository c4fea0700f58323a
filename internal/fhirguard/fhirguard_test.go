package fhirguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/pkg/decision"
)

func TestUsageNamesCountsPerType(t *testing.T) {
	u := Usage{ByType: map[string]int{"ValueSet": 2, "CodeSystem": 1}, Total: 3}
	if got := u.String(); got != "3 resources (CodeSystem: 1, ValueSet: 2)" {
		t.Errorf("got %q", got)
	}
	if got := (Usage{ByType: map[string]int{"ConceptMap": 1}, Total: 1}).String(); got != "1 resource (ConceptMap: 1)" {
		t.Errorf("got %q", got)
	}
}

func TestQueryAsksForBothLabels(t *testing.T) {
	g := New(Options{System: "http://s"})
	q, _ := url.ParseQuery(g.Query("NDD"))
	if got := q.Get("_security"); got != "http://s|NDD.read,http://s|NDD.write" {
		t.Errorf("got %q", got)
	}
	g = New(Options{System: "http://s", SystemlessLabels: true})
	q, _ = url.ParseQuery(g.Query("NDD"))
	if got := q.Get("_security"); got != "http://s|NDD.read,|NDD.read,http://s|NDD.write,|NDD.write" {
		t.Errorf("systemless: got %q", got)
	}
}

// TestCountFailsClosed: the count is the sum over every server and type,
// and anything but a Bundle with a total that can be a count, from any
// one of them, fails the whole count (the delete is refused, 503), as
// does a server that answers too late.
func TestCountFailsClosed(t *testing.T) {
	answers := map[string]struct {
		status int
		body   string
	}{}
	var mu sync.Mutex
	var queries []string
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query().Get("_security"))
		a, ok := answers[r.URL.Path]
		mu.Unlock()
		switch {
		case r.URL.Path == "/slow/ValueSet":
			<-r.Context().Done()
			return
		case !ok:
			a.status, a.body = http.StatusOK, `{"resourceType":"Bundle","total":0}`
		}
		w.WriteHeader(a.status)
		fmt.Fprint(w, a.body)
	}))
	defer fhir.Close()
	set := func(path string, status int, body string) {
		mu.Lock()
		defer mu.Unlock()
		answers[path] = struct {
			status int
			body   string
		}{status, body}
	}
	count := func(bases ...string) (Usage, error) {
		for i, b := range bases {
			bases[i] = fhir.URL + b
		}
		g := New(Options{BaseURLs: bases, Types: []string{"CodeSystem", "ValueSet"}, Timeout: 300 * time.Millisecond})
		return g.Count(context.Background(), "NDD")
	}

	set("/a/CodeSystem", 200, `{"resourceType":"Bundle","total":2}`)
	set("/b/CodeSystem", 200, `{"resourceType":"Bundle","total":1}`)
	set("/b/ValueSet", 200, `{"resourceType":"Bundle","total":4}`)
	u, err := count("/a", "/b")
	if err != nil || u.Total != 7 || u.ByType["CodeSystem"] != 3 || u.ByType["ValueSet"] != 4 {
		t.Errorf("two servers: %+v, %v; want 7 (CodeSystem 3, ValueSet 4)", u, err)
	}
	// No system configured is the decisions' system, never "no system".
	mu.Lock()
	for _, q := range queries {
		if !strings.HasPrefix(q, decision.DefaultSystem+"|NDD.read,") {
			t.Errorf("searched %q, want the default system's labels", q)
		}
	}
	mu.Unlock()

	for _, c := range []struct {
		why, body string
		status    int
	}{
		{"a server error", `{"resourceType":"OperationOutcome"}`, 500},
		{"a refusal", `{"resourceType":"OperationOutcome"}`, 401},
		{"not a Bundle", `{"resourceType":"OperationOutcome","total":0}`, 200},
		{"a Bundle without a total", `{"resourceType":"Bundle"}`, 200},
		{"a negative total", `{"resourceType":"Bundle","total":-7}`, 200},
		{"not JSON", `<html>`, 200},
	} {
		set("/c/ValueSet", c.status, c.body)
		if u, err := count("/a", "/c"); !errors.Is(err, ErrUnreachable) || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s from one server of two: %+v, %v; want ErrUnreachable", c.why, u, err)
		}
	}
	if u, err := count("/a", "/slow"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a server past the timeout: %+v, %v; want ErrUnreachable", u, err)
	}
}
