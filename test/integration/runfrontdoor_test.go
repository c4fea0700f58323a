package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestSeedCurlThroughRunFrontDoor runs make run's own script
// (deploy/local/run.sh) on the suite's Keycloak and PostgreSQL, and then
// seed 000's three curl commands verbatim but for host and realm against
// the one host it prints: the token from …/auth/realms/<realm>/protocol/
// openid-connect/token, the list and the DELETE from …/auth/realms/<realm>/
// communities. The demo's default communities Open and Restricted are
// there, and Ctrl-C stops what the script started.
func TestSeedCurlThroughRunFrontDoor(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	frontPort, servicePort := harness.FreePort(t), harness.FreePort(t)
	front := fmt.Sprintf("http://localhost:%d", frontPort)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(harness.RepoDir(), "deploy", "local", "run.sh"))
	// The suite's FHIR server stays out of it: make run starts none by default.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "FHIR_URL=") }),
		"WITH_FHIR=0", "KEYCLOAK_URL="+env.KeycloakURL, "DATABASE_URL="+env.DatabaseURL,
		"KEYCLOAK_ADMIN_USER="+env.AdminUser, "KEYCLOAK_ADMIN_PASSWORD="+env.AdminPassword,
		"COMMUNITIES_REALMS="+realm.Name,
		fmt.Sprintf("COMMUNITIES_PORT=%d", servicePort), fmt.Sprintf("FRONTDOOR_PORT=%d", frontPort))
	// Its own process group, so that nothing it started outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	banner := make(chan string, 1)
	var logged strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logged.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				banner <- logged.String()
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	var printed string
	select {
	case printed = <-banner:
	case err := <-exited:
		t.Fatalf("run.sh exited before it was ready: %v\n%s", err, logged.String())
	case <-time.After(4 * time.Minute):
		t.Fatalf("run.sh printed no banner in 4 minutes:\n%s", logged.String())
	}
	for _, want := range []string{front + "/admin/" + realm.Name + "/console/", "click Communities in the bar on the left",
		front + "/auth/realms/" + realm.Name + "/protocol/openid-connect/token"} {
		if !strings.Contains(printed, want) {
			t.Errorf("the banner does not say %q:\n%s", want, printed)
		}
	}

	// The demo realm has seed 000's default communities.
	sdToken := func() string {
		return (&frontFixture{fixture: &fixture{realm: realm}, front: front}).token(t, map[string][]string{
			"grant_type": {"client_credentials"}, "client_id": {"service-desk"}, "client_secret": {harness.ServiceDeskSecret}})
	}
	api := front + "/auth/realms/" + realm.Name
	harness.Eventually(t, time.Minute, "Open and Restricted", func() bool {
		var cs []map[string]string
		r := harness.Do(t, "GET", api+"/communities", sdToken(), nil)
		return r.Status == 200 && json.Unmarshal(r.Body, &cs) == nil && strings.Join(labels(cs), ",") == "Open,Restricted"
	})

	db := mustOpen(t, env.DatabaseURL)
	seedCurlFlow(t, realm, registry.New(db), api, api, []map[string]string{
		{"securityLabel": "Open", "communityName": "Open"},
		{"securityLabel": "Restricted", "communityName": "Restricted"},
	})

	// Ctrl-C stops the service and the front door.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("run.sh did not stop within a minute of Ctrl-C:\n%s", logged.String())
	}
	for _, port := range []int{frontPort, servicePort} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still answers after Ctrl-C", port)
		}
	}
}
