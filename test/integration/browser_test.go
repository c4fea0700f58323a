package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestAdminConsoleJoinGroup: a community owner logs into the real admin
// console in headless Chromium (Playwright, test/browser), opens a user's
// Groups tab and joins them to the owner's community group; the membership
// is then visible through the admin API. Screenshots are kept in
// test/artifacts/browser.
func TestAdminConsoleJoinGroup(t *testing.T) {
	f := newFixture(t)
	script := filepath.Join(harness.RepoDir(), "test", "browser", "join-group.mjs")
	if _, err := os.Stat(filepath.Join(harness.RepoDir(), "test", "browser", "node_modules", "playwright-core")); err != nil {
		t.Fatal("playwright-core is not installed: run deploy/local/deps.sh (make test does)")
	}
	f.create(t, f.realm.UserToken(t, "author"), "A", "Community A").Expect(t, 201)
	f.create(t, f.realm.UserToken(t, "creator"), "B", "Community B").Expect(t, 201)
	shots := filepath.Join(harness.RepoDir(), "test", "artifacts", "browser")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script,
		"--keycloak", f.env.KeycloakURL, "--realm", f.realm.Name,
		"--username", "author", "--password", "author-pass",
		"--user", "consumer", "--group-path", "/Communities/A/consumer",
		"--screenshot-dir", shots)
	out, err := cmd.CombinedOutput()
	t.Logf("browser:\n%s", out)
	if err != nil {
		t.Fatalf("the owner could not join the user in the console: %v", err)
	}
	admin := f.realm.AdminToken(t)
	groups, err := f.realm.GC.GetUserGroups(context.Background(), admin, f.realm.Name, f.realm.UserID(t, "consumer"), gocloak.GetGroupsParams{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range groups {
		if g.Path != nil && *g.Path == "/Communities/A/consumer" {
			found = true
		}
	}
	if !found {
		t.Fatalf("after the console join, consumer's groups are %v", groups)
	}
	entries, _ := os.ReadDir(shots)
	if len(entries) == 0 {
		t.Error("no screenshot kept")
	}
}
