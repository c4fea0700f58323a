package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/test/harness"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// runCLI runs the binary against the harness's Keycloak and the database
// dsn, with extra settings (KEY=value) added, and returns its standard
// output followed by its standard error, and its exit status.
func runCLI(t *testing.T, env *harness.Env, dsn string, extra []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+dsn, "KEYCLOAK_URL="+env.KeycloakURL,
		"COMMUNITIES_ADMIN_CLIENT_SECRET="+harness.ServiceSecret, "COMMUNITIES_LOG_LEVEL=error"), extra...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String() + errOut.String(), code
}

// binary builds cmd/communities once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "communities-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "communities")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/communities")
		cmd.Dir = harness.RepoDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// process is the service running as its own OS process.
type process struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}

	mu  sync.Mutex
	log strings.Builder
}

// Log returns what the process has written to stderr so far.
func (p *process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startProcess runs `communities serve` with env and waits until it listens.
func startProcess(t *testing.T, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--listen", "127.0.0.1:0")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			t.Log("service: " + line)
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatal("service exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("service did not listen within 30 s")
	}
	return p
}

// holdingProxy forwards to Keycloak, but holds the nth mutating admin call
// until released, so a test can kill the service at that exact step.
type holdingProxy struct {
	*httptest.Server
	mu       sync.Mutex
	n, seen  int
	held     chan struct{}
	released chan struct{}
	// forward makes a released call go on to Keycloak instead of failing.
	forward    bool
	requestIDs []string
}

func newHoldingProxy(t *testing.T, target string) *holdingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	hp := &holdingProxy{}
	hp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/admin/realms/") {
			hp.mu.Lock()
			hp.seen++
			hp.requestIDs = append(hp.requestIDs, r.Header.Get("X-Request-ID"))
			hold := hp.n > 0 && hp.seen == hp.n
			held, released, forward := hp.held, hp.released, hp.forward
			hp.mu.Unlock()
			if hold {
				close(held)
				<-released
				if !forward {
					http.Error(w, "the caller is gone", http.StatusBadGateway)
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hp.Close)
	return hp
}

// holdAt arms the proxy to hold the nth mutating call from now on.
func (hp *holdingProxy) holdAt(n int) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.n, hp.seen = n, 0
	hp.held, hp.released = make(chan struct{}), make(chan struct{})
}

// TestKillMidOperationIsRecoveredOnRestart kills the service with SIGKILL
// in the middle of a create and in the middle of a delete; a fresh process
// undoes the create and finishes the delete.
func TestKillMidOperationIsRecoveredOnRestart(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	proxy := newHoldingProxy(t, env.KeycloakURL)
	procEnv := func(keycloak string) map[string]string {
		return map[string]string{
			"DATABASE_URL": env.DatabaseURL, "KEYCLOAK_URL": keycloak,
			"COMMUNITIES_ISSUER_BASE_URL":     env.KeycloakURL,
			"COMMUNITIES_REALMS":              realm.Name,
			"COMMUNITIES_ADMIN_CLIENT_SECRET": harness.ServiceSecret,
			// Short enough that recovery comes within the test's wait, long
			// enough (an operation may run for half of it) for a first
			// create in a realm on two busy cores.
			"COMMUNITIES_OPERATION_LEASE":   "20s",
			"COMMUNITIES_KEYCLOAK_TIMEOUT":  "2s",
			"COMMUNITIES_RECOVERY_INTERVAL": "1s",
		}
	}
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	store := registry.New(mustOpen(t, env.DatabaseURL))
	gone := func(label string) func() bool {
		return func() bool {
			_, err := store.Get(context.Background(), realm.Name, strings.ToLower(label))
			return err == community.ErrNoRecord && len(realm.Artefacts(t, "Communities", label)) == 0
		}
	}

	// Kill mid-create: the roles and the community group exist, the rest
	// does not.
	victim := startProcess(t, procEnv(proxy.URL))
	base := "http://" + victim.addr + "/realms/" + realm.Name + "/communities"
	proxy.holdAt(4)
	go fire("POST", base, sd, `{"securityLabel":"KILLED","communityName":"Killed"}`)
	select {
	case <-proxy.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the create never reached the held step")
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	close(proxy.released)
	half := realm.Artefacts(t, "Communities", "KILLED")
	row, err := store.Get(context.Background(), realm.Name, "killed")
	if len(half) == 0 || err != nil || row.State != community.StateCreating {
		t.Fatalf("after the kill: artefacts %v, row %+v %v; want a half-made create", half, row, err)
	}
	t.Logf("killed mid-create with %v made", half)

	survivor := startProcess(t, procEnv(env.KeycloakURL))
	harness.Eventually(t, 45*time.Second, "the restarted service to undo the create", gone("KILLED"))

	// Kill mid-delete: the row is leaving the active state and the
	// extension's cleanup, the delete's one mutating call, is under way;
	// held, it never reaches Keycloak, so everything is left.
	sbase := "http://" + survivor.addr + "/realms/" + realm.Name + "/communities"
	harness.Do(t, "POST", sbase, sd, map[string]string{"securityLabel": "HALF", "communityName": "Half"}).Expect(t, 201)
	victim = startProcess(t, procEnv(proxy.URL))
	proxy.holdAt(1)
	go fire("DELETE", "http://"+victim.addr+"/realms/"+realm.Name+"/communities/HALF", sd, "")
	select {
	case <-proxy.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the delete never reached the held step")
	}
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	close(proxy.released)
	t.Logf("killed mid-delete with %v left", realm.Artefacts(t, "Communities", "HALF"))
	harness.Eventually(t, 45*time.Second, "the running service to finish the delete", gone("HALF"))

	// SIGTERM stops the survivor cleanly.
	_ = survivor.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-survivor.done:
		if code := survivor.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("service did not stop on SIGTERM")
	}
}

// fire sends a request whose answer the test does not wait for: the
// service is killed while handling it.
func fire(method, u, token, body string) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
