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
	if out := run("status"); pending(out) != 3 {
		t.Fatalf("fresh database:\n%s", out)
	}
	run("up")
	if out := run("status"); pending(out) != 0 || !strings.Contains(out, "0003_undone_creates") {
		t.Fatalf("after up:\n%s", out)
	}
	run("down")
	if out := run("status"); pending(out) != 1 || !strings.Contains(out, "0003_undone_creates            pending") {
		t.Fatalf("after down:\n%s", out)
	}
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
