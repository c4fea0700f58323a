// Package integration tests the service against a real Keycloak and a real
// PostgreSQL (see test/harness). Each test imports its own realm, so tests
// run in parallel without seeing each other's communities.
package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/nhs-terminology/communities/internal/community"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/Nerzal/gocloak/v13"
	"gorm.io/gorm"

	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// fixture is one test's realm and a service managing it.
type fixture struct {
	env   *harness.Env
	realm *harness.Realm
	svc   *harness.Service
	base  string // service URL of the realm's communities
}

// newFixture marks t parallel and sets up its fixture.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	t.Parallel()
	return setup(t)
}

// setup makes a fixture: a fresh realm and a service for it.
func setup(t *testing.T) *fixture {
	t.Helper()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	svc := env.StartService(t, env.Config(realm.Name))
	return &fixture{env: env, realm: realm, svc: svc, base: svc.URL + "/realms/" + realm.Name + "/communities"}
}

func (f *fixture) create(t *testing.T, token, label, name string) *harness.Response {
	t.Helper()
	return harness.Do(t, "POST", f.base, token, map[string]any{"securityLabel": label, "communityName": name})
}

func (f *fixture) list(t *testing.T, token string) []map[string]string {
	t.Helper()
	var out []map[string]string
	harness.Do(t, "GET", f.base, token, nil).Expect(t, 200).JSON(t, &out)
	return out
}

func labels(cs []map[string]string) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c["securityLabel"])
	}
	return out
}

// row reads the registry row of label in the fixture's realm, nil if none.
func (f *fixture) row(t *testing.T, label string) *community.Community {
	t.Helper()
	c, err := f.svc.Store.Get(context.Background(), f.realm.Name, strings.ToLower(label))
	if err == community.ErrNoRecord {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// claims decodes a JWT's payload without verifying it (the test only
// inspects what Keycloak put in).
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func scopesOf(t *testing.T, token string) []string {
	s, _ := claims(t, token)["scope"].(string)
	return strings.Fields(s)
}

func authoritiesOf(t *testing.T, token string) []string {
	var out []string
	for _, a := range claims(t, token)["authorities"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func realmRolesOf(t *testing.T, token string) []string {
	var out []string
	ra, _ := claims(t, token)["realm_access"].(map[string]any)
	for _, a := range ra["roles"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func mustContain(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: %v lacks %q", what, got, w)
		}
	}
}

func mustLack(t *testing.T, what string, got []string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if slices.Contains(got, w) {
			t.Errorf("%s: %v has %q", what, got, w)
		}
	}
}

func role(name string) gocloak.Role { return gocloak.Role{Name: gocloak.StringP(name)} }

func mustOpen(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := registry.Open(context.Background(), dsn, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}
