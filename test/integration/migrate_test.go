package integration

import (
	"maps"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/internal/label"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestMigrateCommand: up, status, down and up again on a database of the
// test's own (rolling back the shared one would break the other tests).
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	dsn := ownDatabase(t, env)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary(t), append([]string{"migrate"}, args...)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("migrate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pending := func(out string) int { return strings.Count(out, "pending") }
	// pendingOnly: exactly one migration, id, is pending.
	pendingOnly := func(out, id string) bool {
		return pending(out) == 1 && regexp.MustCompile(`(?m)^`+id+` +pending$`).MatchString(out)
	}
	if out := run("status"); pending(out) != 5 {
		t.Fatalf("fresh database:\n%s", out)
	}
	run("up")
	if out := run("status"); pending(out) != 0 || !strings.Contains(out, "0005_name_keys") {
		t.Fatalf("after up:\n%s", out)
	}
	run("down")
	if out := run("status"); !pendingOnly(out, "0005_name_keys") {
		t.Fatalf("after down:\n%s", out)
	}
	// Names keyed lower-cased before 0005 are keyed by label.NameKey after
	// it; of two that are now one name, the older keeps the key and the
	// younger is still found by it.
	db := mustOpen(t, dsn)
	if err := db.Exec(`INSERT INTO communities (id, realm, label, label_key, name, name_key, state, created_at, updated_at) VALUES
	('00000000-0000-0000-0000-000000000001', 'r', 'CafeA', 'cafea', 'Caf` + "\u00e9" + `', 'caf` + "\u00e9" + `', 'active', now() - interval '2 hours', now()),
	('00000000-0000-0000-0000-000000000002', 'r', 'CafeB', 'cafeb', 'Cafe` + "\u0301" + `', 'cafe` + "\u0301" + `', 'active', now() - interval '1 hour', now()),
	('00000000-0000-0000-0000-000000000003', 'r', 'Greek', 'greek', '` + "\u039f\u0394\u039f\u03a3" + `', '` + "\u03bf\u03b4\u03bf\u03c3" + `', 'active', now(), now()),
	('00000000-0000-0000-0000-000000000004', 'r', 'Spaced', 'spaced', 'Two  spaces', 'two  spaces', 'active', now(), now())`).Error; err != nil {
		t.Fatal(err)
	}
	keys := func() map[string]string {
		var rows []struct{ Label, NameKey string }
		if err := db.Raw(`SELECT label, name_key FROM communities WHERE realm = 'r'`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range rows {
			out[r.Label] = r.NameKey
		}
		return out
	}
	run("up")
	want := map[string]string{"CafeA": label.NameKey("Caf\u00e9"), "CafeB": label.NameKey("Caf\u00e9") + "\x01" + "00000000-0000-0000-0000-000000000002",
		"Greek": label.NameKey("\u03bf\u03b4\u03bf\u03c2"), "Spaced": "two spaces"}
	if got := keys(); !maps.Equal(got, want) {
		t.Errorf("name keys after 0005: %q, want %q", got, want)
	}
	run("down")
	if got := keys(); got["CafeB"] != "cafe\u0301" || got["Spaced"] != "two  spaces" {
		t.Errorf("name keys after rolling 0005 back: %q", got)
	}
	if err := db.Exec(`DELETE FROM communities WHERE realm = 'r'`).Error; err != nil {
		t.Fatal(err)
	}
	run("down")
	if out := run("status"); pending(out) != 2 || !strings.Contains(out, "0004_retired_labels            pending") {
		t.Fatalf("after down:\n%s", out)
	}
	// Labels retired before retired_labels was made are found in the
	// audit trail: deletes that succeeded and those recovery finished,
	// not a failed delete or an undone create.
	if err := db.Exec(`INSERT INTO audit_events (at, realm, action, label, name, outcome, detail) VALUES
	(now(), 'r', 'delete', 'Gone', 'Gone for good', 'success', ''),
	(now(), 'r', 'delete', 'Kept', 'Kept', 'failed', 'Keycloak unavailable'),
	(now(), 'r', 'recover', 'Finished', 'Finished', 'success', 'undid deleting operation: deleted [group]'),
	(now(), 'r', 'recover', 'Undone', 'Undone', 'success', 'undid creating operation: deleted [group]')`).Error; err != nil {
		t.Fatal(err)
	}
	run("up")
	var retired []string
	if err := db.Raw(`SELECT label_key FROM retired_labels WHERE realm = 'r' ORDER BY label_key`).Scan(&retired).Error; err != nil ||
		strings.Join(retired, ",") != "finished,gone" {
		t.Errorf("labels retired from the audit trail: %v, %v; want finished, gone", retired, err)
	}
	run("down")
	// A replica that does not migrate (the Kubernetes set-up) is not ready
	// while a migration is pending, and is once the job has run.
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.DatabaseURL = dsn
	cfg.AutoMigrate = false
	svc := env.StartService(t, cfg)
	resp := harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 503)
	if !strings.Contains(string(resp.Body), "migrations pending") {
		t.Errorf("readyz: %s", resp.Body)
	}
	run("up")
	if out := run("status"); pending(out) != 0 {
		t.Fatalf("after up again:\n%s", out)
	}
	harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 200)
}
