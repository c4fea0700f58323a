package integration

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/pkg/decision"
	"github.com/nhs-terminology/communities/test/harness"
)

// proxyFixture: seed 003's communities NDD and XXX in a fresh realm, the
// demo users in them, the enforcing proxy in front of the test FHIR
// server, and resources whose ids are this test's own.
type proxyFixture struct {
	*fixture
	fhir, proxy string
	prefix      string // of every resource id, unique to the realm
	tokens      map[string]string
}

func newProxyFixture(t *testing.T) *proxyFixture {
	t.Helper()
	f := newFixture(t)
	pf := &proxyFixture{fixture: f, fhir: f.env.FHIR(t), proxy: f.env.StartProxy(t, f.realm.Name),
		prefix: f.realm.Name[len(f.realm.Name)-8:]}
	desk := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for _, c := range []struct{ label, name string }{{"NDD", "National data dictionary"}, {"XXX", "Another community"}} {
		harness.Do(t, "POST", f.base, desk, map[string]any{"securityLabel": c.label, "communityName": c.name, "owners": []string{"administrator"}}).Expect(t, 201)
	}
	// Who is in what (seed 003: authors read .read and write .write
	// resources, consumers read .read ones; community privileges never
	// raise API-level access).
	for _, m := range []struct{ label, role, user string }{
		{"NDD", "consumer", "consumer"},  // API read
		{"NDD", "author", "approver"},    // API read and write
		{"XXX", "author", "author"},      // API read and write
		{"XXX", "consumer", "applicant"}, // API read only ...
		{"NDD", "author", "applicant"},   // ... so NDD authorship writes nothing
	} {
		harness.Do(t, "PUT", f.base+"/"+m.label+"/"+m.role+"/"+m.user, desk, nil).Expect(t, 204)
	}
	pf.tokens = map[string]string{
		"service desk": desk,
		"in neither":   f.realm.UserToken(t, "creator"), // API read and write, no community
	}
	for _, u := range []string{"consumer", "approver", "author", "applicant"} {
		pf.tokens[u] = f.realm.UserToken(t, u)
	}
	return pf
}

// put stores a resource of this test directly on the FHIR server (set-up),
// and deletes it when the test ends so its labels do not outlive it.
func (pf *proxyFixture) put(t *testing.T, typ, id string, labels ...string) string {
	t.Helper()
	id = pf.prefix + "-" + id
	r := harness.Resource(typ, id, labels...)
	r["publisher"] = pf.realm.Name
	harness.PutFHIR(t, pf.fhir, r)
	t.Cleanup(func() { harness.DoFHIR(t, "DELETE", pf.fhir+"/"+typ+"/"+id, "", nil) })
	return id
}

// via sends a request through the proxy as who, and checks that nothing
// in the answer names the FHIR server behind it.
func (pf *proxyFixture) via(t *testing.T, who, method, path string, body any, header ...string) *harness.Response {
	t.Helper()
	h := http.Header{"Content-Type": {"application/fhir+json"}}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	tok := ""
	if who != "" {
		tok = pf.tokens[who]
	}
	resp := harness.DoWith(t, method, pf.proxy+path, tok, body, h)
	leak := string(resp.Body)
	for k, v := range resp.Header {
		leak += k + ": " + strings.Join(v, ",")
	}
	if strings.Contains(leak, pf.fhir) {
		t.Errorf("%s %s as %s: the answer names the FHIR server %s: %s", method, path, who, pf.fhir, resp)
	}
	if resp.Status >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") && resp.Status != 409 && resp.Status != 412 {
		t.Errorf("%s %s as %s: error %d is not a problem detail: %s", method, path, who, resp.Status, resp.Header.Get("Content-Type"))
	}
	return resp
}

type bundle struct {
	Total *int
	Link  []struct{ Relation, URL string }
	Entry []struct {
		FullURL  string
		Resource json.RawMessage
	}
}

func (b bundle) ids(t *testing.T) []string {
	var out []string
	for _, e := range b.Entry {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.ResourceType+"/"+r.ID)
	}
	return out
}

func (b bundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// TestProxy is seed 003's table end to end through the enforcing proxy and
// the real FHIR server: resources labelled NDD.read, NDD.read + XXX.read,
// NDD.write, and none; consumers and authors of NDD and XXX, a caller in
// neither, a user with API-level read only, and service desk; reads,
// searches (a page mixing allowed and denied resources, _include of a
// denied one), writes that try to strip or plant labels, history, and
// every interaction the proxy refuses.
func TestProxy(t *testing.T) {
	pf := newProxyFixture(t)
	nddRead := pf.put(t, "CodeSystem", "nddread", "NDD.read")
	both := pf.put(t, "ValueSet", "both", "NDD.read", "XXX.read")
	nddWrite := pf.put(t, "ValueSet", "nddwrite", "NDD.write")
	open := pf.put(t, "ValueSet", "open")
	xxxOnly := pf.put(t, "ValueSet", "xxxonly", "XXX.read")

	t.Run("read", func(t *testing.T) {
		// who → which of the resources it reads (the rest answer 404, as
		// a missing one does).
		readable := map[string][]string{
			"consumer":     {"CodeSystem/" + nddRead, "ValueSet/" + both, "ValueSet/" + nddWrite, "ValueSet/" + open},
			"approver":     {"CodeSystem/" + nddRead, "ValueSet/" + both, "ValueSet/" + nddWrite, "ValueSet/" + open},
			"author":       {"ValueSet/" + both, "ValueSet/" + nddWrite, "ValueSet/" + open, "ValueSet/" + xxxOnly},
			"applicant":    {"CodeSystem/" + nddRead, "ValueSet/" + both, "ValueSet/" + nddWrite, "ValueSet/" + open, "ValueSet/" + xxxOnly},
			"in neither":   {"ValueSet/" + nddWrite, "ValueSet/" + open},
			"service desk": {"CodeSystem/" + nddRead, "ValueSet/" + both, "ValueSet/" + nddWrite, "ValueSet/" + open, "ValueSet/" + xxxOnly},
		}
		all := readable["service desk"]
		for who, want := range readable {
			for _, r := range all {
				resp := pf.via(t, who, "GET", "/"+r, nil)
				if slices.Contains(want, r) {
					if resp.Status != 200 || !strings.Contains(string(resp.Body), `"id":"`+strings.Split(r, "/")[1]+`"`) {
						t.Errorf("%s reading %s: %s", who, r, resp)
					}
				} else if resp.Status != 404 {
					t.Errorf("%s reading %s: %d, want 404", who, r, resp.Status)
				}
			}
		}
		// Denied and missing answer alike.
		var denied, missing struct{ Status int }
		pf.via(t, "in neither", "GET", "/CodeSystem/"+nddRead, nil).JSON(t, &denied)
		pf.via(t, "in neither", "GET", "/CodeSystem/"+pf.prefix+"-nosuch", nil).JSON(t, &missing)
		if denied != missing {
			t.Errorf("a denied read (%+v) differs from a missing one (%+v)", denied, missing)
		}
		// vread follows the labels, and a restricted instance hides its
		// past versions.
		pf.via(t, "consumer", "GET", "/CodeSystem/"+nddRead+"/_history/1", nil).Expect(t, 200)
		pf.via(t, "in neither", "GET", "/CodeSystem/"+nddRead+"/_history/1", nil).Expect(t, 404)
		pf.via(t, "in neither", "GET", "/CodeSystem/"+nddRead+"/_history", nil).Expect(t, 404)
		var h bundle
		pf.via(t, "consumer", "GET", "/CodeSystem/"+nddRead+"/_history", nil).Expect(t, 200).JSON(t, &h)
		if len(h.Entry) != 1 {
			t.Errorf("consumer's history of %s: %v", nddRead, h.ids(t))
		}
		pf.via(t, "", "GET", "/ValueSet/"+open, nil).Expect(t, 401)
		pf.via(t, "", "GET", "/ValueSet/"+open, nil, "Authorization", "Bearer "+pf.tokens["consumer"][:40]+"x").Expect(t, 401)
	})

	t.Run("search", func(t *testing.T) {
		q := "/ValueSet?publisher:exact=" + pf.realm.Name + "&_sort=_id"
		sees := map[string][]string{
			"consumer":     {both, nddWrite, open},
			"author":       {both, nddWrite, open, xxxOnly},
			"applicant":    {both, nddWrite, open, xxxOnly},
			"in neither":   {nddWrite, open},
			"service desk": {both, nddWrite, open, xxxOnly},
		}
		for who, want := range sees {
			var b bundle
			pf.via(t, who, "GET", q, nil).Expect(t, 200).JSON(t, &b)
			var w []string
			for _, id := range want {
				w = append(w, "ValueSet/"+id)
			}
			if !slices.Equal(b.ids(t), w) {
				t.Errorf("%s searching: %v, want %v", who, b.ids(t), w)
			}
			// Totals only where exact: a wildcard reader, from whom
			// nothing is hidden.
			if who == "service desk" {
				if b.Total == nil || *b.Total != 4 {
					t.Errorf("service desk's total %v, want 4", b.Total)
				}
			} else if b.Total != nil {
				t.Errorf("%s got a total (%d) although entries may be hidden", who, *b.Total)
			}
			for _, e := range b.Entry {
				if !strings.HasPrefix(e.FullURL, pf.proxy+"/ValueSet/") {
					t.Errorf("fullUrl %s is not the proxy's", e.FullURL)
				}
			}
		}
		// Pages of two, sorted by id (both, nddwrite | open, xxxonly): the
		// caller in neither gets a first page mixing allowed and denied,
		// and the link to the next page leads back through the proxy.
		var p1, p2 bundle
		pf.via(t, "in neither", "GET", q+"&_count=2", nil).Expect(t, 200).JSON(t, &p1)
		if !slices.Equal(p1.ids(t), []string{"ValueSet/" + nddWrite}) || !strings.HasPrefix(p1.next(), pf.proxy) {
			t.Fatalf("first page %v, next %q", p1.ids(t), p1.next())
		}
		pf.via(t, "in neither", "GET", strings.TrimPrefix(p1.next(), pf.proxy), nil).Expect(t, 200).JSON(t, &p2)
		if !slices.Equal(p2.ids(t), []string{"ValueSet/" + open}) {
			t.Errorf("second page %v", p2.ids(t))
		}
		// Someone else following the same page link is judged for
		// themselves.
		var p3 bundle
		pf.via(t, "author", "GET", strings.TrimPrefix(p1.next(), pf.proxy), nil).Expect(t, 200).JSON(t, &p3)
		if !slices.Equal(p3.ids(t), []string{"ValueSet/" + open, "ValueSet/" + xxxOnly}) {
			t.Errorf("author on the same second page %v", p3.ids(t))
		}

		// _include of a denied resource: the Provenance is unlabelled, its
		// target is NDD's alone.
		prov := pf.prefix + "-prov"
		harness.PutFHIR(t, pf.fhir, map[string]any{"resourceType": "Provenance", "id": prov, "recorded": "2026-01-01T00:00:00Z",
			"target": []map[string]string{{"reference": "CodeSystem/" + nddRead}}, "agent": []map[string]any{{"who": map[string]string{"display": "test"}}}})
		t.Cleanup(func() { harness.DoFHIR(t, "DELETE", pf.fhir+"/Provenance/"+prov, "", nil) })
		inc := "/Provenance?_id=" + prov + "&_include=Provenance:target"
		var b bundle
		pf.via(t, "in neither", "GET", inc, nil).Expect(t, 200).JSON(t, &b)
		if !slices.Equal(b.ids(t), []string{"Provenance/" + prov}) {
			t.Errorf("caller in neither, _include of NDD's CodeSystem: %v", b.ids(t))
		}
		var bc bundle
		pf.via(t, "consumer", "GET", inc, nil).Expect(t, 200).JSON(t, &bc)
		if !slices.Equal(bc.ids(t), []string{"Provenance/" + prov, "CodeSystem/" + nddRead}) {
			t.Errorf("NDD consumer, _include: %v", bc.ids(t))
		}
		// _revinclude: the Provenance is readable, but it is there only
		// because the hidden CodeSystem matched, so it is left out too.
		rev := "/CodeSystem?_id=" + nddRead + "&_revinclude=Provenance:target"
		var bn, br bundle
		pf.via(t, "in neither", "GET", rev, nil).Expect(t, 200).JSON(t, &bn)
		if len(bn.Entry) != 0 {
			t.Errorf("caller in neither, _revinclude from a denied CodeSystem: %v", bn.ids(t))
		}
		pf.via(t, "consumer", "GET", rev, nil).Expect(t, 200).JSON(t, &br)
		if !slices.Equal(br.ids(t), []string{"CodeSystem/" + nddRead, "Provenance/" + prov}) {
			t.Errorf("NDD consumer, _revinclude: %v", br.ids(t))
		}
	})

	t.Run("write", func(t *testing.T) {
		id := pf.put(t, "ValueSet", "authored", "NDD.read", "NDD.write")
		vs := func(labels ...string) map[string]any {
			r := harness.Resource("ValueSet", id, labels...)
			r["publisher"] = pf.realm.Name
			return r
		}
		stored := func() []string {
			return harness.SecurityOf(t, harness.DoFHIR(t, "GET", pf.fhir+"/ValueSet/"+id, "", nil).Expect(t, 200).Body)
		}
		rule := func(resp *harness.Response) string {
			var p struct{ Detail string }
			resp.JSON(t, &p)
			return p.Detail
		}
		// An author of NDD may neither strip NDD.read (publishing it to
		// everyone) nor plant XXX.write, by update or by patch.
		resp := pf.via(t, "approver", "PUT", "/ValueSet/"+id, vs("NDD.write")).Expect(t, 403)
		if !strings.Contains(rule(resp), "open") {
			t.Errorf("stripping NDD.read: %s", resp)
		}
		resp = pf.via(t, "approver", "PUT", "/ValueSet/"+id, vs("NDD.read", "NDD.write", "XXX.write")).Expect(t, 403)
		if !strings.Contains(rule(resp), "XXX.write") {
			t.Errorf("planting XXX.write: %s", resp)
		}
		// Nor by showing the proxy other labels than the FHIR server reads:
		// it reads "meta" exactly, and ignores "Meta".
		smuggled := vs()
		smuggled["Meta"] = vs("NDD.read", "NDD.write")["meta"]
		pf.via(t, "approver", "PUT", "/ValueSet/"+id, smuggled).Expect(t, 403)
		patch := func(who string, ops string) *harness.Response {
			return pf.via(t, who, "PATCH", "/ValueSet/"+id, ops, "Content-Type", "application/json-patch+json")
		}
		patch("approver", `[{"op":"remove","path":"/meta/security/0"}]`).Expect(t, 403)
		patch("approver", `[{"op":"add","path":"/meta/security/-","value":{"system":"`+decision.DefaultSystem+`","code":"XXX.write"}}]`).Expect(t, 403)
		if got := stored(); !slices.Equal(got, []string{"NDD.read", "NDD.write"}) {
			t.Fatalf("after denied writes the labels are %v", got)
		}
		// Seed 003: NDD authorship with API read only writes nothing; an
		// NDD consumer may read but not write; the caller in neither may
		// not even learn it is there.
		pf.via(t, "applicant", "PUT", "/ValueSet/"+id, vs("NDD.read", "NDD.write")).Expect(t, 403)
		pf.via(t, "consumer", "PUT", "/ValueSet/"+id, vs("NDD.read", "NDD.write")).Expect(t, 403)
		pf.via(t, "in neither", "PUT", "/ValueSet/"+id, vs("NDD.read", "NDD.write")).Expect(t, 404)
		pf.via(t, "in neither", "DELETE", "/ValueSet/"+id, nil).Expect(t, 404)
		pf.via(t, "author", "DELETE", "/ValueSet/"+id, nil).Expect(t, 404)
		// Writes that keep the labels go through, pinned to the version
		// judged.
		draft := vs("NDD.read", "NDD.write")
		draft["status"] = "draft"
		pf.via(t, "approver", "PUT", "/ValueSet/"+id, draft, "If-Match", `W/"1"`).Expect(t, 200)
		pf.via(t, "approver", "PUT", "/ValueSet/"+id, vs("NDD.read", "NDD.write"), "If-Match", `W/"1"`).Expect(t, 412)
		resp = patch("approver", `[{"op":"replace","path":"/status","value":"retired"}]`).Expect(t, 200)
		if !strings.Contains(string(resp.Body), `"retired"`) {
			t.Errorf("patch answer %s", resp)
		}
		pf.via(t, "approver", "PATCH", "/ValueSet/"+id, `[]`, "Content-Type", "application/fhir+json").Expect(t, 415)

		// Create: only labels of communities one writes.
		pf.via(t, "approver", "POST", "/ValueSet", harness.Resource("ValueSet", "", "XXX.write")).Expect(t, 403)
		pf.via(t, "applicant", "POST", "/ValueSet", harness.Resource("ValueSet", "")).Expect(t, 403)
		resp = pf.via(t, "approver", "POST", "/ValueSet", harness.Resource("ValueSet", "", "NDD.read", "NDD.write")).Expect(t, 201)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, pf.proxy+"/ValueSet/") {
			t.Fatalf("Location %q is not the proxy's", loc)
		}
		created := strings.Split(strings.TrimPrefix(loc, pf.proxy+"/ValueSet/"), "/")[0]
		t.Cleanup(func() { harness.DoFHIR(t, "DELETE", pf.fhir+"/ValueSet/"+created, "", nil) })
		pf.via(t, "consumer", "GET", "/ValueSet/"+created, nil).Expect(t, 200)
		pf.via(t, "in neither", "GET", "/ValueSet/"+created, nil).Expect(t, 404)

		// Delete: the NDD consumer may read it, so is told why not; its
		// author deletes it.
		pf.via(t, "consumer", "DELETE", "/ValueSet/"+id, nil).Expect(t, 403)
		resp = pf.via(t, "approver", "DELETE", "/ValueSet/"+id, nil)
		if resp.Status != 200 && resp.Status != 204 {
			t.Fatalf("author's delete: %s", resp)
		}
		pf.via(t, "approver", "GET", "/ValueSet/"+id, nil).Expect(t, 404)
	})

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			body         any
			status       int
			header       []string
		}{
			{"POST", "", map[string]any{"resourceType": "Bundle", "type": "transaction"}, 501, nil},
			{"POST", "", map[string]any{"resourceType": "Bundle", "type": "batch"}, 501, nil},
			{"GET", "/ValueSet/$expand?url=http://x", nil, 501, nil},
			{"GET", "/ValueSet/" + open + "/$validate", nil, 501, nil},
			{"POST", "/$graphql", `{"query":"{ValueSetList{id}}"}`, 501, nil},
			{"GET", "/$graphql?query={ValueSetList{id}}", nil, 501, nil},
			{"POST", "/ValueSet/_search", "publisher=x", 501, []string{"Content-Type", "application/x-www-form-urlencoded"}},
			{"GET", "/_history", nil, 501, nil},
			{"GET", "/ValueSet/_history", nil, 501, nil},
			{"GET", "?_type=ValueSet", nil, 501, nil},
			{"PUT", "/ValueSet?url=http://x", harness.Resource("ValueSet", "x"), 501, nil},
			{"DELETE", "/ValueSet?url=http://x", nil, 501, nil},
			{"POST", "/ValueSet", harness.Resource("ValueSet", ""), 501, []string{"If-None-Exist", "url=http://x"}},
			{"POST", "/Provenance", map[string]any{"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
				"target": []map[string]string{{"reference": "CodeSystem?_id=" + nddRead}}, "agent": []map[string]any{{"who": map[string]string{"display": "test"}}}}, 501, nil},
			{"GET", "/ValueSet?_elements=id", nil, 400, nil},
			{"GET", "/ValueSet/" + open + "?_summary=true", nil, 400, nil},
			{"GET", "/Provenance?target.publisher=x", nil, 400, nil},
			{"GET", "/CodeSystem?_has:Provenance:target:agent=x", nil, 400, nil},
			{"GET", "/ValueSet?_format=xml", nil, 406, nil},
		} {
			resp := pf.via(t, "service desk", c.method, c.path, c.body, c.header...)
			if resp.Status != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("%s %s: %s, want %d as a problem detail", c.method, c.path, resp, c.status)
			}
		}
		// The capability statement needs no token and names only the proxy.
		resp := pf.via(t, "", "GET", "/metadata", nil).Expect(t, 200)
		if !strings.Contains(string(resp.Body), "CapabilityStatement") {
			t.Errorf("metadata: %s", resp)
		}
	})

	// Seed 000: a community whose labels remain is not deleted until
	// service desk removes the offending labels, here through the proxy.
	t.Run("delete guard", func(t *testing.T) {
		cfg := pf.env.Config(pf.realm.Name)
		cfg.GuardFHIRURLs = []string{pf.fhir}
		guarded := pf.env.StartService(t, cfg)
		base := guarded.URL + "/realms/" + pf.realm.Name + "/communities"
		desk := pf.tokens["service desk"]
		harness.Do(t, "DELETE", base+"/XXX", desk, nil).Expect(t, 409)
		for id, labels := range map[string][]string{both: {"NDD.read"}, xxxOnly: nil} {
			r := harness.Resource("ValueSet", id, labels...)
			r["publisher"] = pf.realm.Name
			pf.via(t, "service desk", "PUT", "/ValueSet/"+id, r).Expect(t, 200)
		}
		harness.Do(t, "DELETE", base+"/XXX", desk, nil).Expect(t, 204)
	})
}

// TestProxyWritesWithoutRead: a caller who may write a resource but not
// read it (labelled NDD.read only; an XXX author) learns nothing of it by
// writing: a patch, which keeps what it does not change, is a write they
// may not make (404 as a missing resource; a patch adding their own read
// label made the content theirs to read); a wrong If-Match is 404 too,
// whether the write would have been allowed or not (it was 412 for an
// allowed one: a way to test guesses at the labels); a reader still gets
// 412. A deleted resource is brought back only by who may write every
// community's resources: its restricted past would show again. A chained
// _sort is refused.
func TestProxyWritesWithoutRead(t *testing.T) {
	pf := newProxyFixture(t)
	id := pf.put(t, "ValueSet", "write-only", "NDD.read")
	version := func(id string) string {
		t.Helper()
		var r struct{ Meta struct{ VersionID string } }
		harness.DoFHIR(t, "GET", pf.fhir+"/ValueSet/"+id, "", nil).Expect(t, 200).JSON(t, &r)
		return r.Meta.VersionID
	}
	before := version(id)
	patch := func(ops string, header ...string) *harness.Response {
		return pf.via(t, "author", "PATCH", "/ValueSet/"+id, ops, append([]string{"Content-Type", "application/json-patch+json"}, header...)...)
	}
	patch(`[{"op":"add","path":"/meta/security/-","value":{"system":"`+decision.DefaultSystem+`","code":"XXX.read"}}]`).Expect(t, 404)
	for _, guess := range []string{"active", "retired"} {
		patch(`[{"op":"test","path":"/status","value":"`+guess+`"}]`, "If-Match", `W/"999"`).Expect(t, 404)
	}
	for _, labels := range [][]string{{"XXX.read"}, {"NDD.read"}} {
		pf.via(t, "author", "PUT", "/ValueSet/"+id, harness.Resource("ValueSet", id, labels...), "If-Match", `W/"999"`).Expect(t, 404)
	}
	pf.via(t, "author", "GET", "/ValueSet/"+id, nil).Expect(t, 404)
	if got := version(id); got != before {
		t.Errorf("the FHIR server's version went from %s to %s", before, got)
	}
	pf.via(t, "approver", "PUT", "/ValueSet/"+id, harness.Resource("ValueSet", id, "NDD.read"), "If-Match", `W/"999"`).Expect(t, 412)
	// Allowed and pinned, the write itself goes through, and its answer
	// shows nothing the writer may not read.
	resp := pf.via(t, "author", "PUT", "/ValueSet/"+id, harness.Resource("ValueSet", id, "NDD.read"), "If-Match", `W/"`+before+`"`)
	if resp.Status != 200 || strings.Contains(string(resp.Body), `"url"`) {
		t.Errorf("an allowed update by a writer who may not read: %s", resp)
	}

	gone := pf.put(t, "ValueSet", "gone")
	restricted := harness.Resource("ValueSet", gone, "NDD.read", "NDD.write")
	restricted["name"] = "Restricted"
	harness.PutFHIR(t, pf.fhir, restricted)
	harness.DoFHIR(t, "DELETE", pf.fhir+"/ValueSet/"+gone, "", nil)
	if s := harness.DoFHIR(t, "GET", pf.fhir+"/ValueSet/"+gone, "", nil).Status; s != 410 {
		t.Fatalf("the FHIR server answers %d for a deleted resource, not 410: the test proves nothing", s)
	}
	pf.via(t, "author", "PUT", "/ValueSet/"+gone, harness.Resource("ValueSet", gone)).Expect(t, 409)
	pf.via(t, "in neither", "GET", "/ValueSet/"+gone+"/_history/1", nil).Expect(t, 404)
	if s := pf.via(t, "service desk", "PUT", "/ValueSet/"+gone, restricted).Status; s != 200 && s != 201 {
		t.Errorf("service desk bringing a deleted resource back: %d", s)
	}

	pf.via(t, "in neither", "GET", "/Provenance?_sort=target:ValueSet.name", nil).Expect(t, 400)
	// A subscription would make the server send what it matches past the
	// proxy: refused even to service desk.
	pf.via(t, "service desk", "POST", "/Subscription", map[string]any{"resourceType": "Subscription", "status": "requested",
		"reason": "all", "criteria": "ValueSet?", "channel": map[string]any{"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}).Expect(t, 501)
}

// TestProxyCommand runs 'communities proxy' as a process, configured only
// by the environment, in front of the test FHIR server.
func TestProxyCommand(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	fhir := env.FHIR(t)
	realm := env.NewRealm(t)
	port := freePort(t)
	cmd := exec.Command(binary(t), "proxy")
	cmd.Env = append(os.Environ(), "KEYCLOAK_URL="+env.KeycloakURL, "COMMUNITIES_PROXY_UPSTREAM="+fhir,
		"COMMUNITIES_PROXY_REALM="+realm.Name, "COMMUNITIES_PROXY_LISTEN=127.0.0.1:"+port, "COMMUNITIES_MAX_HEADER_KIB=16")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	base := "http://127.0.0.1:" + port + "/fhir"
	harness.Eventually(t, 30*time.Second, "the proxy to listen", func() bool {
		resp, err := http.Get(base + "/metadata")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	id := strings.ToLower(uniqueLabel("p"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-l", "NDD.read"))
	t.Cleanup(func() { harness.DoFHIR(t, "DELETE", fhir+"/ValueSet/"+id+"-l", "", nil) })
	consumer := realm.UserToken(t, "consumer")
	harness.DoFHIR(t, "GET", base+"/ValueSet/"+id, consumer, nil).Expect(t, 200)
	harness.DoFHIR(t, "GET", base+"/ValueSet/"+id+"-l", consumer, nil).Expect(t, 404)
	harness.DoFHIR(t, "GET", base+"/ValueSet/"+id, "", nil).Expect(t, 401)
	if !strings.Contains(log.String(), `"decision":"deny no-community-privilege"`) {
		t.Errorf("the proxy's log does not say why it denied:\n%s", log.String())
	}

	// A token over the limit (shared with serve's COMMUNITIES_MAX_HEADER_KIB)
	// is refused with a reason, logged and counted, where Go's server would
	// answer a bare 431 and say nothing (issue 14).
	big := consumer + strings.Repeat("x", 20<<10)
	resp := harness.DoFHIR(t, "GET", base+"/ValueSet/"+id, big, nil).Expect(t, 431)
	var pd map[string]any
	resp.JSON(t, &pd)
	if detail, _ := pd["detail"].(string); resp.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(detail, "the largest is Authorization") || !strings.Contains(detail, "too many roles or scopes") {
		t.Errorf("431 answer %s %s", resp.Header.Get("Content-Type"), resp.Body)
	}
	// The image's health check, set for a proxy container as
	// operations.md says.
	probe := exec.Command(binary(t), "probe")
	probe.Env = append(os.Environ(), "COMMUNITIES_PROBE_URL=http://127.0.0.1:"+port+"/healthz")
	if out, err := probe.CombinedOutput(); err != nil || !strings.Contains(string(out), "/healthz: HTTP 200") {
		t.Errorf("probe of the proxy's /healthz: %v\n%s", err, out)
	}
	metrics := string(harness.Do(t, "GET", "http://127.0.0.1:"+port+"/metrics", "", nil).Expect(t, 200).Body)
	if !strings.Contains(metrics, `communities_request_headers_too_large_total{largest="authorization"} 1`) {
		t.Errorf("the proxy's /metrics does not count the 431:\n%s", metrics)
	}
	harness.Eventually(t, 10*time.Second, "the proxy to log the 431", func() bool {
		return strings.Contains(log.String(), `"msg":"request headers too large"`)
	})
	if strings.Contains(log.String(), big[len(consumer):len(consumer)+64]) {
		t.Errorf("the proxy's log holds the oversized header:\n%s", log.String())
	}

	// Without an upstream it will not start.
	out, err := exec.Command(binary(t), "proxy", "--realm", realm.Name).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "COMMUNITIES_PROXY_UPSTREAM") {
		t.Errorf("proxy without --upstream: %v\n%s", err, out)
	}
}

// syncBuffer collects a process's output, which its copying goroutine
// writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// freePort is a port nothing listens on just now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
