package integration

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/pkg/decision"
	"github.com/nhs-terminology/communities/test/harness"
)

// uniqueLabel is a community label no other test uses, for tests that
// count labels on the FHIR server all tests share.
func uniqueLabel(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToUpper(hex.EncodeToString(b[:]))
}

// TestFHIRServer holds the test FHIR server to the facts the proxy and the
// delete guard rely on (issue 15): an update replaces meta.security
// (INLINE label mode, not HAPI's default merge), _security=system|code
// works with an unencoded "|", and a count is current right after a
// change (no 60-second search cache).
func TestFHIRServer(t *testing.T) {
	t.Parallel()
	base := harness.Current(t).FHIR(t)
	l := uniqueLabel("F")
	id := strings.ToLower(l)
	harness.PutFHIR(t, base, harness.Resource("CodeSystem", id, l+".read", l+".write"))
	count := func() int {
		t.Helper()
		// Raw "|" on purpose: Tomcat refuses it unless told to relax.
		resp := harness.DoFHIR(t, "GET", base+"/CodeSystem?_security="+url.QueryEscape(decision.DefaultSystem)+"|"+l+".read&_summary=count", "", nil).Expect(t, 200)
		var b struct{ Total *int }
		resp.JSON(t, &b)
		if b.Total == nil {
			t.Fatalf("no total in %s", resp.Body)
		}
		return *b.Total
	}
	if n := count(); n != 1 {
		t.Fatalf("labelled CodeSystem counted %d times", n)
	}
	harness.PutFHIR(t, base, harness.Resource("CodeSystem", id, l+".write"))
	got := harness.SecurityOf(t, harness.DoFHIR(t, "GET", base+"/CodeSystem/"+id, "", nil).Expect(t, 200).Body)
	if strings.Join(got, ",") != l+".write" {
		t.Errorf("after an update with %s.write only, the stored labels are %v: labels merged, not replaced", l, got)
	}
	if n := count(); n != 0 {
		t.Errorf("a count right after removing %s.read says %d: stale search cache", l, n)
	}
}

// TestDeleteGuard: with --guard-fhir-urls, deleting a community whose
// labels remain on resources is refused with the counts per type (seed
// 000: "Before deleting a community, you should therefore remove the
// security label for the community from all resources"), service desk
// alone may accept the consequence, plan and apply --prune report it, an
// unreachable FHIR server refuses (fail closed), and once the labels are
// gone the delete goes through.
func TestDeleteGuard(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	fhir := env.FHIR(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.GuardFHIRURLs = []string{fhir}
	svc := env.StartService(t, cfg)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	author := realm.UserToken(t, "author")
	desk := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	l := uniqueLabel("G")
	id := strings.ToLower(l)
	harness.Do(t, "POST", base, author, map[string]string{"securityLabel": l, "communityName": "Guarded " + l}).Expect(t, 201)
	harness.PutFHIR(t, fhir, harness.Resource("CodeSystem", id+"-a", l+".read", l+".write"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-b", l+".read"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-c", l+".write", "OTHER.read"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-d"))

	resp := harness.Do(t, "DELETE", base+"/"+l, author, nil).Expect(t, 409)
	harness.ConformsToOpenAPI(t, "DELETE", base+"/"+l, resp)
	var p struct{ Detail string }
	resp.JSON(t, &p)
	if !strings.Contains(p.Detail, "3 resources (CodeSystem: 1, ValueSet: 2)") || !strings.Contains(p.Detail, "acceptLabelledResources=true") {
		t.Errorf("refusal does not name the counts per type and the way out: %q", p.Detail)
	}
	if strings.Contains(p.Detail, fhir) {
		t.Errorf("refusal names the FHIR server's address: %q", p.Detail)
	}
	harness.Do(t, "GET", base+"/"+l, author, nil).Expect(t, 200)
	// The owner may not accept the consequence; service desk may.
	harness.Do(t, "DELETE", base+"/"+l+"?acceptLabelledResources=true", author, nil).Expect(t, 403)
	harness.Do(t, "DELETE", base+"/"+l+"?acceptLabelledResources=yes", desk, nil).Expect(t, 400)
	harness.Do(t, "DELETE", base, author, map[string]string{"securityLabel": l, "communityName": "Guarded " + l}).Expect(t, 409)

	// plan and apply --prune report the same, and apply refuses without
	// --accept-labelled-resources.
	dir := t.TempDir()
	file := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(file, []byte("realm: "+realm.Name+"\ncommunities: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, int) {
		t.Helper()
		return runCLI(t, env, env.DatabaseURL, []string{"COMMUNITIES_GUARD_FHIR_URLS=" + fhir}, args...)
	}
	out, code := cli("plan", "--prune", "-f", file)
	if code != 2 || !strings.Contains(out, "delete "+l+": Guarded "+l+"; its labels remain on 3 resources (CodeSystem: 1, ValueSet: 2), so the delete will be refused without --accept-labelled-resources") {
		t.Errorf("plan --prune exited %d:\n%s", code, out)
	}
	out, code = cli("apply", "--prune", "-f", file)
	if code != 1 || !strings.Contains(out, "FAILED delete "+l) || !strings.Contains(out, "still labels 3 resources") {
		t.Errorf("apply --prune exited %d:\n%s", code, out)
	}
	harness.Do(t, "GET", base+"/"+l, author, nil).Expect(t, 200)

	// A FHIR server that cannot be asked refuses the delete: fail closed.
	down := env.Config(realm.Name)
	down.GuardFHIRURLs = []string{"http://127.0.0.1:1/fhir"}
	downSvc := env.StartService(t, down)
	resp = harness.Do(t, "DELETE", downSvc.URL+"/realms/"+realm.Name+"/communities/"+l, author, nil).Expect(t, 503)
	resp.JSON(t, &p)
	if strings.Contains(p.Detail, "127.0.0.1:1") {
		t.Errorf("503 names the FHIR server's address: %q", p.Detail)
	}
	harness.Do(t, "GET", base+"/"+l, author, nil).Expect(t, 200)

	// Labels removed (other systems' labels and other communities' stay):
	// the owner's delete goes through.
	harness.PutFHIR(t, fhir, harness.Resource("CodeSystem", id+"-a"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-b"))
	harness.PutFHIR(t, fhir, harness.Resource("ValueSet", id+"-c", "OTHER.read"))
	harness.Do(t, "DELETE", base+"/"+l, author, nil).Expect(t, 204)
	harness.Do(t, "GET", base+"/"+l, author, nil).Expect(t, 404)

	// Service desk accepts the consequence for another community.
	m := uniqueLabel("H")
	harness.Do(t, "POST", base, desk, map[string]string{"securityLabel": m, "communityName": "Accepted " + m}).Expect(t, 201)
	harness.PutFHIR(t, fhir, harness.Resource("ConceptMap", strings.ToLower(m), m+".write"))
	out, code = cli("apply", "--prune", "--accept-labelled-resources", "-f", file)
	if code != 0 || !strings.Contains(out, "done   delete "+m) {
		t.Errorf("apply --prune --accept-labelled-resources exited %d:\n%s", code, out)
	}
	harness.Do(t, "GET", base+"/"+m, desk, nil).Expect(t, 404)
}
