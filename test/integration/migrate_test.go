package integration

import (
	"os"
	"os/exec"
	"strings"
	"testing"

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
	if out := run("status"); pending(out) != 4 {
		t.Fatalf("fresh database:\n%s", out)
	}
	run("up")
	if out := run("status"); pending(out) != 0 || !strings.Contains(out, "0004_retired_labels") {
		t.Fatalf("after up:\n%s", out)
	}
	run("down")
	if out := run("status"); pending(out) != 1 || !strings.Contains(out, "0004_retired_labels            pending") {
		t.Fatalf("after down:\n%s", out)
	}
	// Labels retired before retired_labels was made are found in the
	// audit trail: deletes that succeeded and those recovery finished,
	// not a failed delete or an undone create.
	db := mustOpen(t, dsn)
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
