package fhirproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/internal/problem"
	"github.com/nhs-terminology/communities/pkg/decision"
)

func TestRefusedParams(t *testing.T) {
	for _, q := range []string{"_elements=id", "_summary=true", "_summary:text=x", "_contained=true", "_containedType=contained",
		"_has:Provenance:target:agent=x", "_filter=name eq x", "_list=x", "_query=x", "subject.name=x", "target:CodeSystem.url=x",
		"_sort=Provenance:target.name", "_sort=-target:CodeSystem.name", "_sort=_id&_sort=target.name"} {
		v, _ := url.ParseQuery(q)
		if refusedParams(v) == "" {
			t.Errorf("%s passed", q)
		}
	}
	for _, q := range []string{"url=http://x", "_security=s|NDD.read", "_include=Provenance:target", "_revinclude:iterate=Provenance:target", "url:below=http://x", "_count=5", "_sort=-_lastUpdated"} {
		v, _ := url.ParseQuery(q)
		if why := refusedParams(v); why != "" {
			t.Errorf("%s refused: %s", q, why)
		}
	}
}

func entry(typ, id, mode string, labels []string, refs ...string) map[string]any {
	sec := []map[string]string{}
	for _, l := range labels {
		sec = append(sec, map[string]string{"system": decision.DefaultSystem, "code": l})
	}
	r := map[string]any{"resourceType": typ, "id": id, "meta": map[string]any{"security": sec}}
	var rs []map[string]string
	for _, ref := range refs {
		rs = append(rs, map[string]string{"reference": ref})
	}
	if rs != nil {
		r["target"] = rs
	}
	return map[string]any{"fullUrl": "http://up/fhir/" + typ + "/" + id, "resource": r, "search": map[string]string{"mode": mode}}
}

// TestFilterBundle: denied entries go, includes stay only beside a match
// the caller sees, totals only for wildcard readers with nothing hidden.
func TestFilterBundle(t *testing.T) {
	p := New(Options{Upstream: "http://up/fhir"})
	b := map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 3, "entry": []map[string]any{
		entry("CodeSystem", "hidden", "match", []string{"NDD.read"}),
		entry("CodeSystem", "open", "match", nil),
		entry("CodeSystem", "xxx", "match", []string{"XXX.read"}),
		entry("Provenance", "p1", "include", nil, "CodeSystem/hidden"),
		entry("Provenance", "p2", "include", nil, "CodeSystem/open/_history/2"),
		entry("Provenance", "p3", "include", []string{"NDD.read"}, "CodeSystem/xxx"),
		// Beside the hidden match only: text naming the open one links
		// nothing, nor does a reference to a type whose name ends in it.
		{"resource": map[string]any{"resourceType": "Provenance", "id": "p4",
			"target": []map[string]string{{"reference": "CodeSystem/hidden"}, {"reference": "RelatedCodeSystem/open"}},
			"reason": []map[string]string{{"text": "see CodeSystem/open"}}}, "search": map[string]string{"mode": "include"}},
		entry("Provenance", "p5", "include", nil, "http://up/fhir/CodeSystem/open"),
	}}
	raw, _ := json.Marshal(b)
	ids := func(out []byte) ([]string, bool) {
		var got struct {
			Total *int
			Entry []struct {
				Resource struct{ ResourceType, ID string }
			}
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range got.Entry {
			s = append(s, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
		return s, got.Total != nil
	}
	for _, c := range []struct {
		scope       string
		authorities []string
		want        []string
		total       bool
	}{
		// p3 (NDD.read) is hidden from XXX readers.
		{"grouping/XXX.read", []string{"FHIR_READ"}, []string{"CodeSystem/open", "CodeSystem/xxx", "Provenance/p2", "Provenance/p5"}, false},
		// p1 is unlabelled, but beside the hidden match only: it goes for
		// XXX readers above, and stays here.
		{"grouping/NDD.read", []string{"FHIR_READ"}, []string{"CodeSystem/hidden", "CodeSystem/open", "Provenance/p1", "Provenance/p2",
			"Provenance/p4", "Provenance/p5"}, false},
		{"", []string{"FHIR_READ", "PERM_READ"}, []string{"CodeSystem/hidden", "CodeSystem/open", "CodeSystem/xxx", "Provenance/p1", "Provenance/p2",
			"Provenance/p3", "Provenance/p4", "Provenance/p5"}, true},
	} {
		out, err := p.filterBundle(&call{privs: decision.Parse(c.scope, c.authorities)}, raw, bundleSearch)
		if err != nil {
			t.Fatal(err)
		}
		got, total := ids(out)
		if !slices.Equal(got, c.want) || total != c.total {
			t.Errorf("%s %s: %v total=%v, want %v total=%v", c.scope, c.authorities, got, total, c.want, c.total)
		}
	}
}

// TestOversizedHeaders: headers over the limit are refused first, with a
// problem+json 431 naming the largest header, and counted; Go's server
// would say nothing (issue 14).
func TestOversizedHeaders(t *testing.T) {
	m := metrics.NewProxy()
	p := New(Options{Upstream: "http://up/fhir", MaxHeaderBytes: 8 << 10, Metrics: m})
	ask := func(header, value string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/elsewhere", nil)
		r.Header.Set(header, value)
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		return w
	}
	if w := ask("Authorization", "Bearer "+strings.Repeat("t", 7<<10)); w.Code != http.StatusNotFound {
		t.Errorf("under the limit: %d, want the 404 of a path outside the FHIR API", w.Code)
	}
	w := ask("Authorization", "Bearer "+strings.Repeat("t", 8<<10))
	var pd problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &pd); err != nil || w.Code != http.StatusRequestHeaderFieldsTooLarge ||
		w.Header().Get("Content-Type") != problem.ContentType || !strings.Contains(pd.Detail, "the largest is Authorization") {
		t.Errorf("over the limit: %d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	ask("X-Padding", strings.Repeat("p", 9<<10))
	for kind, want := range map[string]float64{"authorization": 1, "other": 1, "cookie": 0} {
		if got := testutil.ToFloat64(m.OversizedHeaders.WithLabelValues(kind)); got != want {
			t.Errorf("counted %v of %s, want %v", got, kind, want)
		}
	}
}

// TestHeadIsReadAsTheServerReadsIt: the labels judged are those a FHIR
// server reading names exactly stores from the same bytes, which the proxy
// sends on as they are (the review of 2026-11-24: "Meta", "System" and
// "ſystem" were read as "meta" and "system").
func TestHeadIsReadAsTheServerReadsIt(t *testing.T) {
	const s = decision.DefaultSystem
	labels := `[{"system":"` + s + `","code":"A.read"}]`
	for body, want := range map[string]string{
		`{"resourceType":"CodeSystem","meta":{"security":[]},"Meta":{"security":` + labels + `}}`:                            "",
		`{"resourceType":"CodeSystem","meta":{"security":[{"system":"http://other","System":"` + s + `","code":"A.read"}]}}`: "http://other|A.read",
		`{"resourceType":"CodeSystem","meta":{"security":[{"system":"http://other","ſystem":"` + s + `","code":"A.read"}]}}`: "http://other|A.read",
		`{"resourceType":"CodeSystem","meta":{"security":` + labels + `}}`:                                                   s + "|A.read",
	} {
		h, err := parseHead([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var got []string
		for _, l := range h.Meta.Security {
			got = append(got, l.System+"|"+l.Code)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s: labels %v, want %q", body, got, want)
		}
	}
	for _, body := range []string{
		`{"resourceType":"CodeSystem","meta":{"security":[]},"meta":{"security":` + labels + `}}`,
		`{"resourceType":"CodeSystem","meta":{"security":[{"system":"http://other","system":"` + s + `","code":"A.read"}]}}`,
		"{\"resourceType\":\"CodeSystem\",\"id\":\"\xff\"}",
	} {
		if _, err := parseHead([]byte(body)); err == nil {
			t.Errorf("%s: read, want refused", body)
		}
	}
}

func TestConditionalReference(t *testing.T) {
	for body, want := range map[string]string{
		`{"resourceType":"Provenance","target":[{"reference":"CodeSystem?name=secret"}]}`:                       "CodeSystem?name=secret",
		`{"resourceType":"Provenance","target":[{"display":"x","reference":"http://h/fhir/CodeSystem?url=x"}]}`: "http://h/fhir/CodeSystem?url=x",
		`{"resourceType":"Provenance","agent":[{"who":{"reference":"Practitioner?identifier=1"}}]}`:             "Practitioner?identifier=1",
		`{"resourceType":"Provenance","target":[{"reference":"CodeSystem/x"}],"reason":"why?"}`:                 "",
		`{"resourceType":"Provenance","reference":{"a":"b?"},"x":["reference","y?"]}`:                           "",
		`{"resourceType":"Provenance","text":{"div":"reference"},"note":"a?"}`:                                  "",
	} {
		got, err := conditionalReference([]byte(body))
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", body, got, err, want)
		}
	}
}

// TestWritesWithConditionalReferencesAreRefused: neither a create, an
// update nor a patch passes a conditional reference on.
func TestWritesWithConditionalReferencesAreRefused(t *testing.T) {
	sent := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			sent++
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Provenance","id":"p","meta":{"versionId":"1"},"target":[{"reference":"CodeSystem/x"}]}`))
	}))
	defer up.Close()
	p := New(Options{Upstream: up.URL + "/fhir", BasePath: "/fhir", Realm: "r",
		Verifier: verifierOf{decision.Parse("", []string{"FHIR_READ", "FHIR_WRITE"})}})
	cond := `{"resourceType":"Provenance","id":"p","target":[{"reference":"CodeSystem?name=secret"}]}`
	for _, c := range []struct{ method, path, contentType, body string }{
		{http.MethodPost, "/fhir/Provenance", "application/fhir+json", cond},
		{http.MethodPut, "/fhir/Provenance/p", "application/fhir+json", cond},
		{http.MethodPatch, "/fhir/Provenance/p", "application/json-patch+json", `[{"op":"replace","path":"/target/0/reference","value":"CodeSystem?name=secret"}]`},
	} {
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		r.Header.Set("Authorization", "Bearer t")
		r.Header.Set("Content-Type", c.contentType)
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), "CodeSystem?name=secret") {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	if sent != 0 {
		t.Errorf("%d writes reached the FHIR server", sent)
	}

	// A subscription would make the server send what it matches without
	// the proxy: no write of one is passed on, whoever asks.
	for _, c := range []struct{ method, path, contentType, body string }{
		{http.MethodPost, "/fhir/Subscription", "application/fhir+json", `{"resourceType":"Subscription","criteria":"CodeSystem?"}`},
		{http.MethodPut, "/fhir/Subscription/s", "application/fhir+json", `{"resourceType":"Subscription","id":"s","criteria":"CodeSystem?"}`},
		{http.MethodPatch, "/fhir/Subscription/s", "application/json-patch+json", `[]`},
		{http.MethodDelete, "/fhir/Subscription/s", "", ""},
	} {
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		r.Header.Set("Authorization", "Bearer t")
		if c.contentType != "" {
			r.Header.Set("Content-Type", c.contentType)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != http.StatusNotImplemented {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	if sent != 0 {
		t.Errorf("%d subscription writes reached the FHIR server", sent)
	}
}

// verifierOf accepts any token as a principal holding privs.
type verifierOf struct{ privs *decision.Privileges }

func (v verifierOf) Verify(context.Context, string, string) (*auth.Principal, error) {
	return &auth.Principal{Subject: "u", Privileges: v.privs}, nil
}

// verifierFailing refuses every token with err.
type verifierFailing struct{ err error }

func (v verifierFailing) Verify(context.Context, string, string) (*auth.Principal, error) {
	return nil, v.err
}

// TestTokenNotCheckedIsUnavailable: a token that could not be checked,
// because Keycloak's keys could not be fetched, is answered 503 (try
// again), not 401 (throw the token away); a bad token, or none, is 401.
func TestTokenNotCheckedIsUnavailable(t *testing.T) {
	ask := func(err error, header string) *httptest.ResponseRecorder {
		p := New(Options{Upstream: "http://up/fhir", BasePath: "/fhir", Realm: "r", Verifier: verifierFailing{err}, Metrics: metrics.NewProxy()})
		r := httptest.NewRequest(http.MethodGet, "/fhir/CodeSystem/x", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		return w
	}
	unavailable := fault.New(fault.Unavailable, "the realm's signing keys could not be fetched", errors.New("503 from Keycloak"))
	if w := ask(unavailable, "Bearer t"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != problem.ContentType ||
		w.Header().Get("WWW-Authenticate") != "" || w.Header().Get("Retry-After") != "5" {
		t.Errorf("keys unavailable: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := ask(fmt.Errorf("%w: bad signature", auth.ErrInvalidToken), "Bearer t"); w.Code != http.StatusUnauthorized {
		t.Errorf("invalid token: %d %s", w.Code, w.Body)
	}
	if w := ask(unavailable, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", w.Code, w.Body)
	}
	if w := ask(errors.New("something else"), "Bearer t"); w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "something") {
		t.Errorf("a failure of no known kind: %d %s", w.Code, w.Body)
	}
}
