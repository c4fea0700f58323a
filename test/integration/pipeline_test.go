package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/internal/provision"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestPipelineProvisioning follows a CI pipeline from a freshly imported
// realm: plan, apply, apply again (no change), drift repaired, export round
// trip, prune, and failures named.
func TestPipelineProvisioning(t *testing.T) {
	f := newFixture(t) // imports realm-export/ under a fresh name: the pipeline's first step
	realm := f.realm.Name
	dir := t.TempDir()
	cli := func(args ...string) (string, int) {
		t.Helper()
		return runCLI(t, f.env, f.env.DatabaseURL, nil, args...)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("communities.yaml", `realm: `+realm+`
communities:
  - label: NDD
    name: National data dictionary
    owners: [author]
    authors: [approver]
    consumers: [consumer]
  - label: SNOMED
    name: SNOMED CT
    consumers: [consumer, creator]
`)

	out, code := cli("plan", "-f", file)
	if code != 2 || !strings.Contains(out, "create NDD: National data dictionary") || !strings.Contains(out, "add-member SNOMED consumer creator") {
		t.Fatalf("plan on an empty realm exited %d:\n%s", code, out)
	}
	if f.row(t, "NDD") != nil {
		t.Fatal("plan changed something")
	}
	out, code = cli("apply", "-f", file)
	if code != 0 || !strings.Contains(out, "done   create NDD") || !strings.Contains(out, "6 change(s) applied, 0 failed") {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	var m members
	harness.Do(t, "GET", f.base+"/NDD/members", sd, nil).Expect(t, 200).JSON(t, &m)
	if !slices.Equal(m.usernames("owner"), []string{"author"}) || !slices.Equal(m.usernames("author"), []string{"approver"}) ||
		!slices.Equal(m.usernames("consumer"), []string{"consumer"}) {
		t.Errorf("NDD members %v", m)
	}
	harness.Do(t, "GET", f.base+"/SNOMED/members", sd, nil).Expect(t, 200).JSON(t, &m)
	if len(m["owner"]) != 0 || !slices.Equal(m.usernames("consumer"), []string{"consumer", "creator"}) {
		t.Errorf("SNOMED members %v", m)
	}
	mustContain(t, "consumer's scopes", scopesOf(t, f.realm.UserToken(t, "consumer")), "grouping/NDD.read", "grouping/SNOMED.read")

	// Idempotent.
	out, code = cli("apply", "-f", file)
	if code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("second apply exited %d:\n%s", code, out)
	}
	if out, code = cli("plan", "-f", file); code != 0 {
		t.Fatalf("plan after apply exited %d:\n%s", code, out)
	}

	// Drift: a role deleted by hand is planned as a repair and repaired.
	if err := f.realm.GC.DeleteRealmRole(t.Context(), f.realm.AdminToken(t), realm, "PERM_NDD_WRITE"); err != nil {
		t.Fatal(err)
	}
	out, code = cli("plan", "-f", file, "--output", "json")
	var jplan struct {
		Changes []provision.Action `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &jplan); err != nil || code != 2 || len(jplan.Changes) != 1 || jplan.Changes[0].Kind != "repair" {
		t.Fatalf("plan after drift exited %d: %s", code, out)
	}
	if out, code = cli("apply", "-f", file); code != 0 {
		t.Fatalf("repairing apply exited %d:\n%s", code, out)
	}
	// The repair is apply's, and the audit trail says so.
	var actors []string
	if err := f.svc.Store.DB().Raw("SELECT actor_client FROM audit_events WHERE realm = ? AND action = 'repair'", realm).
		Scan(&actors).Error; err != nil || !slices.Equal(actors, []string{"communities-cli"}) {
		t.Errorf("repair audited as %v (%v), want communities-cli", actors, err)
	}
	if out, code = cli("plan", "-f", file); code != 0 {
		t.Fatalf("plan after repair exited %d:\n%s", code, out)
	}
	mustContain(t, "approver's scopes", scopesOf(t, f.realm.UserToken(t, "approver")), "grouping/NDD.write")

	// Export round trip.
	exported, code := cli("export", "--realm", realm)
	if code != 0 || !strings.Contains(exported, "label: NDD") {
		t.Fatalf("export exited %d:\n%s", code, exported)
	}
	if out, code = cli("plan", "-f", write("exported.yaml", exported)); code != 0 {
		t.Fatalf("plan on the export exited %d:\n%s\nexport:\n%s", code, out, exported)
	}

	// Extra communities stay unless --prune.
	f.create(t, sd, "EXTRA", "Made by hand").Expect(t, 201)
	if out, code = cli("apply", "-f", file); code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("apply without --prune touched EXTRA (%d):\n%s", code, out)
	}
	out, code = cli("plan", "-f", file, "--prune")
	if code != 2 || !strings.Contains(out, "delete EXTRA") {
		t.Fatalf("plan --prune exited %d:\n%s", code, out)
	}
	if out, code = cli("apply", "-f", file, "--prune"); code != 0 {
		t.Fatalf("apply --prune exited %d:\n%s", code, out)
	}
	harness.Do(t, "GET", f.base+"/EXTRA", sd, nil).Expect(t, 404)

	// Failures are named and exit non-zero; the rest is still applied.
	bad := write("bad.yaml", `realm: `+realm+`
communities:
  - label: BAD
    name: Bad owner
    owners: [nobody-by-that-name]
  - label: GOOD
    name: Good
`)
	out, code = cli("apply", "-f", bad)
	if code != 1 || !strings.Contains(out, "FAILED create BAD") || !strings.Contains(out, "done   create GOOD") ||
		!strings.Contains(out, "1 change(s) applied, 1 failed") {
		t.Fatalf("apply with a bad item exited %d:\n%s", code, out)
	}
	if out, code = cli("plan", "-f", write("typo.yaml", "realm: "+realm+"\ncommunitees: []\n")); code != 1 || !strings.Contains(out, "communitees") {
		t.Fatalf("a typo in the file: exit %d:\n%s", code, out)
	}

	// What can be checked without the realm is, before anything changes: a
	// bad name in the second community leaves the first uncreated.
	out, code = cli("apply", "-f", write("badname.yaml", `realm: `+realm+`
communities:
  - {label: FIRST, name: First}
  - {label: SECOND, name: "Bell\a"}
`))
	if code != 1 || !strings.Contains(out, "communityName") || f.row(t, "FIRST") != nil {
		t.Fatalf("apply of a file with a bad name exited %d (FIRST made: %v):\n%s", code, f.row(t, "FIRST") != nil, out)
	}

	// A name another community of the realm has is a conflict in the plan,
	// not a create that apply finds refused.
	clash := write("clash.yaml", "realm: "+realm+"\ncommunities:\n  - {label: CLASH, name: national DATA dictionary}\n")
	out, code = cli("plan", "-f", clash)
	if code != 1 || !strings.Contains(out, `conflict CLASH: the realm's community "NDD" is named "National data dictionary"`) ||
		!strings.Contains(out, "1 change(s) pending, of which 1 conflict(s) apply will refuse") {
		t.Fatalf("plan of a name NDD has exited %d:\n%s", code, out)
	}
	if out, code = cli("apply", "-f", clash); code != 1 || !strings.Contains(out, "FAILED conflict CLASH") ||
		!strings.Contains(out, "0 change(s) applied, 1 failed") || f.row(t, "CLASH") != nil {
		t.Fatalf("apply of a name NDD has exited %d:\n%s", code, out)
	}

	// A member named by id, or by a username in another case, is the member
	// Keycloak lists: apply again changes nothing, and --prune removes no one.
	loose := write("loose.yaml", `realm: `+realm+`
communities:
  - label: LOOSE
    name: "Named loosely "
    owners: [`+f.realm.UserID(t, "author")+`]
    consumers: [Consumer]
`)
	if out, code = cli("apply", "-f", loose); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	if out, code = cli("apply", "-f", loose); code != 0 || !strings.Contains(out, "no changes") {
		t.Fatalf("second apply of members named loosely exited %d:\n%s", code, out)
	}
	if out, _ = cli("plan", "-f", loose, "--prune"); strings.Contains(out, "remove-member LOOSE") {
		t.Errorf("plan --prune would remove members the file names:\n%s", out)
	}
	var lm members
	harness.Do(t, "GET", f.base+"/LOOSE/members", sd, nil).Expect(t, 200).JSON(t, &lm)
	if !slices.Equal(lm.usernames("owner"), []string{"author"}) || !slices.Equal(lm.usernames("consumer"), []string{"consumer"}) {
		t.Errorf("LOOSE members %v", lm)
	}
}
