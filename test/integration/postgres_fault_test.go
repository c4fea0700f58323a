package integration

import (
	"bufio"
	"bytes"
	"context"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

// privatePostgres starts a PostgreSQL of this test's own with the project's
// script, so the test can stop it without disturbing the others.
func privatePostgres(t *testing.T) (dsn string, pause, resume func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "communities-pgfault-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	script := filepath.Join(harness.RepoDir(), "deploy", "local", "postgres.sh")
	run := func(action string) []byte {
		cmd := exec.Command(script, action, dir)
		// Not the port of the suite's own PostgreSQL: a free one.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "POSTGRES_PORT=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Stderr = harness.LogWriter(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("postgres.sh %s: %v", action, err)
		}
		return out
	}
	out := run("start")
	t.Cleanup(func() {
		_ = exec.Command(script, "stop", dir).Run()
		_ = os.RemoveAll(dir)
	})
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "DATABASE_URL="); ok {
			dsn = v
		}
	}
	return dsn, func() { run("pause") }, func() { run("resume") }
}

// TestPostgresStopsMidCreate: PostgreSQL goes away while a create is in
// Keycloak. The caller gets 503; when PostgreSQL is back, recovery undoes
// the Keycloak side, leaving no orphan.
func TestPostgresStopsMidCreate(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	dsn, pause, resume := privatePostgres(t)
	proxy := newHoldingProxy(t, env.KeycloakURL)
	proxy.forward = true
	cfg := env.Config(realm.Name)
	cfg.DatabaseURL = dsn
	cfg.KeycloakURL = proxy.URL
	cfg.IssuerBaseURL = env.KeycloakURL
	cfg.OperationLease = 8 * time.Second
	cfg.RecoveryInterval = time.Second
	svc := env.StartService(t, cfg)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	proxy.holdAt(3)
	answer := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", base, strings.NewReader(`{"securityLabel":"PGDOWN","communityName":"PG down"}`))
		req.Header.Set("Authorization", "Bearer "+sd)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- 0
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	select {
	case <-proxy.held:
	case <-time.After(30 * time.Second):
		t.Fatal("create never reached Keycloak")
	}
	pause()
	close(proxy.released)
	if status := <-answer; status != http.StatusServiceUnavailable {
		t.Fatalf("create with PostgreSQL down answered %d, want 503", status)
	}
	made := realm.Artefacts(t, "Communities", "PGDOWN")
	t.Logf("PostgreSQL stopped mid-create; Keycloak holds %v", made)
	harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 503)
	resume()
	harness.Eventually(t, 60*time.Second, "recovery to undo the create", func() bool {
		_, err := svc.Store.Get(context.Background(), realm.Name, "pgdown")
		return err == community.ErrNoRecord && len(realm.Artefacts(t, "Communities", "PGDOWN")) == 0
	})
	harness.Do(t, "GET", svc.URL+"/readyz", "", nil).Expect(t, 200)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "PGDOWN", "communityName": "PG down"}).Expect(t, 201)
}
