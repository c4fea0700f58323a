package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FreePort returns a TCP port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartNginx runs the front door make run uses (deploy/local/frontdoor.sh:
// Debian's nginx with deploy/nginx's template) in front of the given service
// and Keycloak URLs, on port, forwarding Keycloak's endpoints of realm only.
// It stops when the test ends. It returns the front door's URL,
// http://localhost:port.
func StartNginx(t testing.TB, port int, serviceURL, keycloakURL, realm string) string {
	t.Helper()
	host := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	dir := t.TempDir()
	script := filepath.Join(RepoDir(), "deploy", "local", "frontdoor.sh")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "start", dir)
	cmd.Env = append(os.Environ(),
		"COMMUNITIES_UPSTREAM="+host(serviceURL), "KEYCLOAK_UPSTREAM="+host(keycloakURL), "KEYCLOAK_REALMS="+realm,
		fmt.Sprintf("FRONTDOOR_PORT=%d", port))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() {
		if err := exec.Command(script, "stop", dir).Run(); err != nil {
			t.Logf("stop the front door: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("frontdoor.sh start: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "FRONTDOOR_URL="); ok {
			return v
		}
	}
	t.Fatalf("frontdoor.sh printed no FRONTDOOR_URL: %s", out)
	return ""
}
