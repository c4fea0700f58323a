package harness

import (
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

// StartNginx runs Debian's nginx with deploy/nginx's front-door template,
// rendered as envsubst would, in front of the given service and Keycloak
// URLs, on port. It stops when the test ends.
func StartNginx(t testing.TB, port int, serviceURL, keycloakURL string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx is not installed: run deploy/local/deps.sh (make test does)")
		}
		bin = "/usr/sbin/nginx"
	}
	tmpl, err := os.ReadFile(filepath.Join(RepoDir(), "deploy", "nginx", "templates", "communities.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	host := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	conf := strings.NewReplacer(
		"${COMMUNITIES_UPSTREAM}", host(serviceURL),
		"${KEYCLOAK_UPSTREAM}", host(keycloakURL),
		"${NGINX_PORT}", fmt.Sprintf("127.0.0.1:%d", port),
	).Replace(string(tmpl))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "communities.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise switch to an account that cannot write
		// the temp directories below.
		user = "user root;"
	}
	main := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
%[2]s
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/communities.conf;
}
`, dir, user)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not listen within 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr
}
