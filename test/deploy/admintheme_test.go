package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// themeTree copies what deploy/local/admin-theme.sh reads into a fresh
// tree, with edit applied to one of its files, so the real script can be
// run on versions that disagree without touching the work tree.
func themeTree(t *testing.T, file, old, new string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"versions.env", "local/lib.sh", "local/admin-theme.sh",
		"admin-theme/package.json", "admin-theme/package-lock.json"} {
		raw, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == file {
			if !strings.Contains(string(raw), old) {
				t.Fatalf("%s has no %q to change", f, old)
			}
			raw = []byte(strings.Replace(string(raw), old, new, 1))
		}
		dst := filepath.Join(root, "deploy", f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, raw, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runThemeScript(t *testing.T, root, verb string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "deploy", "local", "admin-theme.sh"), verb)
	// A cache of its own: a refused build must not need or touch the real one.
	cmd.Env = append(os.Environ(), "COMMUNITIES_CACHE_DIR="+filepath.Join(root, "cache"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAdminThemeRefusesMismatchedVersions: the admin console theme is
// built from @keycloak/keycloak-admin-ui at exactly the pinned Keycloak
// version; the script refuses, naming both versions, when versions.env,
// package.json or package-lock.json disagree, and builds nothing.
func TestAdminThemeRefusesMismatchedVersions(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run deploy/local/deps.sh (make test does)")
	}
	v := harness.Versions()
	kc := v["KEYCLOAK_VERSION"]
	if v["KEYCLOAK_ADMIN_UI_VERSION"] != kc {
		t.Fatalf("deploy/versions.env pins the admin UI at %s and Keycloak at %s", v["KEYCLOAK_ADMIN_UI_VERSION"], kc)
	}
	// As committed, the versions agree.
	if out, err := runThemeScript(t, themeTree(t, "", "", ""), "check"); err != nil {
		t.Fatalf("check of the committed versions failed: %v\n%s", err, out)
	}
	cases := []struct {
		name, file, old, new, verb string
		says                       []string
	}{
		{"versions.env pins another admin UI", "versions.env", "KEYCLOAK_ADMIN_UI_VERSION=" + kc, "KEYCLOAK_ADMIN_UI_VERSION=26.0.0", "build",
			[]string{"26.0.0", "Keycloak is " + kc, "must be the same version"}},
		{"versions.env pins another Keycloak", "versions.env", "KEYCLOAK_VERSION=" + kc, "KEYCLOAK_VERSION=99.1.0", "check",
			[]string{kc, "99.1.0", "must be the same version"}},
		{"package.json asks for another version", "admin-theme/package.json", `"@keycloak/keycloak-admin-ui": "` + kc + `"`, `"@keycloak/keycloak-admin-ui": "^26.0.0"`, "build",
			[]string{"package.json", "@keycloak/keycloak-admin-ui", "^26.0.0", kc}},
		{"the lock holds another version", "admin-theme/package-lock.json", `"node_modules/@keycloak/keycloak-ui-shared": {
      "version": "` + kc + `"`, `"node_modules/@keycloak/keycloak-ui-shared": {
      "version": "26.1.0"`, "check",
			[]string{"package-lock.json", "@keycloak/keycloak-ui-shared", "26.1.0", kc}},
	}
	for _, c := range cases {
		root := themeTree(t, c.file, c.old, c.new)
		out, err := runThemeScript(t, root, c.verb)
		if err == nil {
			t.Errorf("%s: admin-theme.sh %s succeeded:\n%s", c.name, c.verb, out)
			continue
		}
		for _, s := range c.says {
			if !strings.Contains(out, s) {
				t.Errorf("%s: the refusal does not say %q:\n%s", c.name, s, out)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "cache", "admin-theme")); err == nil {
			t.Errorf("%s: a refused build left %s", c.name, filepath.Join(root, "cache", "admin-theme"))
		}
	}
}
