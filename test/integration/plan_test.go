package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/Nerzal/gocloak/v13"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// TestPlanChangesNothing: plan and export say they change nothing, and
// once could migrate the schema, switch the realm's admin permissions on
// and take a scope off a client. Keycloak's and PostgreSQL's state, exported
// before and after, must be the same byte for byte, in exactly the states
// that used to tempt them.
func TestPlanChangesNothing(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	dsn := ownDatabase(t, env)
	dir := t.TempDir()
	cli := func(args ...string) (string, int) {
		t.Helper()
		return runCLI(t, env, dsn, nil, args...)
	}
	file := filepath.Join(dir, "communities.yaml")
	if err := os.WriteFile(file, []byte("realm: "+realm.Name+`
communities:
  - label: PLANX
    name: Planned
    consumers: [consumer]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := cli("apply", "-f", file); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	plus := filepath.Join(dir, "plus.yaml")
	if err := os.WriteFile(plus, []byte("realm: "+realm.Name+`
communities:
  - label: PLANX
    name: Planned
    consumers: [consumer, author]
  - label: PLANY
    name: Not yet made
`), 0o644); err != nil {
		t.Fatal(err)
	}

	// The tempting states: admin permissions switched off, and a scope of a
	// community's name (as earlier versions made) left on the FHIR client
	// without its role (so in every token).
	ctx, admin := context.Background(), realm.AdminToken(t)
	harness.Do(t, "PUT", env.KeycloakURL+"/admin/realms/"+realm.Name, admin,
		map[string]any{"adminPermissionsEnabled": false}).Expect(t, 204)
	if err := realm.GC.DeleteRealmRole(ctx, admin, realm.Name, "PERM_PLANX_READ"); err != nil {
		t.Fatal(err)
	}
	scope := legacyScope(t, env, realm, "grouping/PLANX.read", "")
	clients, err := realm.GC.GetClients(ctx, admin, realm.Name, gocloak.GetClientsParams{ClientID: gocloak.StringP("terminology-client")})
	if err != nil {
		t.Fatal(err)
	}
	if err := realm.GC.AddDefaultScopeToClient(ctx, admin, realm.Name, *clients[0].ID, scope); err != nil {
		t.Fatal(err)
	}

	kcBefore, pgBefore := keycloakState(t, env, realm), databaseState(t, dsn)
	for _, args := range [][]string{{"plan", "-f", plus}, {"plan", "-f", plus, "--prune", "--output", "json"}} {
		out, code := cli(args...)
		if code != 2 || !strings.Contains(out, "PLANY") || !strings.Contains(out, "CRITICAL") || !strings.Contains(out, "not enabled") {
			t.Errorf("%v exited %d:\n%s", args, code, out)
		}
	}
	if out, code := cli("export", "--realm", realm.Name); code != 0 || !strings.Contains(out, "PLANX") {
		t.Errorf("export exited %d:\n%s", code, out)
	}
	if kcAfter := keycloakState(t, env, realm); !bytes.Equal(kcBefore, kcAfter) {
		t.Errorf("plan or export changed Keycloak:\n%s", firstDifference(kcBefore, kcAfter))
	}
	if pgAfter := databaseState(t, dsn); !bytes.Equal(pgBefore, pgAfter) {
		t.Errorf("plan or export changed PostgreSQL:\n%s", firstDifference(pgBefore, pgAfter))
	}

	// A pending migration: plan refuses rather than migrating.
	migrate := exec.Command(binary(t), "migrate", "down")
	migrate.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate down: %v\n%s", err, out)
	}
	pgBefore = databaseState(t, dsn)
	for _, args := range [][]string{{"plan", "-f", plus}, {"export", "--realm", realm.Name}, {"reconcile", "--realms", realm.Name}} {
		if out, code := cli(args...); code != 1 || !strings.Contains(out, "migrations are pending") {
			t.Errorf("%v on a schema with a pending migration exited %d:\n%s", args, code, out)
		}
	}
	if pgAfter := databaseState(t, dsn); !bytes.Equal(pgBefore, pgAfter) {
		t.Errorf("plan, export or reconcile migrated:\n%s", firstDifference(pgBefore, pgAfter))
	}
}

// ownDatabase makes an empty database for one test.
func ownDatabase(t *testing.T, env *harness.Env) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "own_" + hex.EncodeToString(b[:])
	db := mustOpen(t, env.DatabaseURL)
	if err := db.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	u, err := url.Parse(env.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// keycloakState is the realm as Keycloak exports it (groups, roles,
// clients, client scopes, admin permissions) plus its settings.
func keycloakState(t *testing.T, env *harness.Env, realm *harness.Realm) []byte {
	t.Helper()
	admin := realm.AdminToken(t)
	base := env.KeycloakURL + "/admin/realms/" + realm.Name
	export := harness.Do(t, "POST", base+"/partial-export?exportClients=true&exportGroupsAndRoles=true", admin, nil).Expect(t, 200)
	settings := harness.Do(t, "GET", base, admin, nil).Expect(t, 200)
	return append(append(canonical(t, export.Body), '\n'), canonical(t, settings.Body)...)
}

// canonical re-encodes JSON with every list sorted: Keycloak lists sets
// (a client's default scopes, say) in no fixed order, and order is not
// state.
func canonical(t *testing.T, data []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	var sortLists func(any) any
	sortLists = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				v[k] = sortLists(e)
			}
		case []any:
			type keyed struct {
				key string
				v   any
			}
			items := make([]keyed, len(v))
			for i, e := range v {
				e = sortLists(e)
				b, _ := json.Marshal(e)
				items[i] = keyed{string(b), e}
			}
			slices.SortFunc(items, func(x, y keyed) int { return strings.Compare(x.key, y.key) })
			for i := range items {
				v[i] = items[i].v
			}
		}
		return v
	}
	out, err := json.Marshal(sortLists(v)) // maps encode with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// databaseState is every table's schema and rows, in a stable order.
func databaseState(t *testing.T, dsn string) []byte {
	t.Helper()
	db := mustOpen(t, dsn)
	var tables []string
	if err := db.Raw(`SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' ORDER BY table_name`).Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, table := range tables {
		var columns, rows string
		if err := db.Raw(`SELECT coalesce(string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position), '')
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ?`, table).Scan(&columns).Error; err != nil {
			t.Fatal(err)
		}
		q := fmt.Sprintf(`SELECT coalesce(string_agg(r::text, E'\n' ORDER BY r::text), '') FROM %q r`, table)
		if err := db.Raw(q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s (%s)\n%s\n", table, columns, rows)
	}
	return out.Bytes()
}

// firstDifference shows where two states part, for the failure message.
func firstDifference(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("before: …%s…\nafter:  …%s…", a[from:min(len(a), i+200)], b[from:min(len(b), i+200)])
}
