package integration

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/server"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestGracefulShutdownDrainsInFlightRequests stops the service while a
// create is half-way through Keycloak: /readyz fails at once, requests
// are still served for --shutdown-delay (load balancers that have not yet
// seen the failed readiness would otherwise meet a closed port), then no
// new request is accepted, the create still completes, and the service
// stops. It also checks the request id reaches Keycloak.
func TestGracefulShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	proxy := newHoldingProxy(t, env.KeycloakURL)
	proxy.forward = true
	cfg := env.Config(realm.Name)
	cfg.KeycloakURL = proxy.URL
	cfg.IssuerBaseURL = env.KeycloakURL
	cfg.Listen = "127.0.0.1:0"
	cfg.ShutdownDelay = 3 * time.Second
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(harness.LogWriter(t), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, stop := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, func(a string) { addr <- a }) }()
	root := "http://" + <-addr
	base := root + "/realms/" + realm.Name + "/communities"
	harness.Do(t, "GET", root+"/readyz", "", nil).Expect(t, 200)
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)

	proxy.holdAt(3)
	answer := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", base, strings.NewReader(`{"securityLabel":"DRAIN","communityName":"Drain"}`))
		req.Header.Set("Authorization", "Bearer "+sd)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-ID", "drain-test-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight create failed: %v", err)
			close(answer)
			return
		}
		resp.Body.Close()
		answer <- resp
	}()
	select {
	case <-proxy.held:
	case <-time.After(30 * time.Second):
		t.Fatal("create never reached Keycloak")
	}
	stop() // as SIGTERM does
	harness.Eventually(t, time.Second, "/readyz failing once told to stop", func() bool {
		resp, err := http.Get(root + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// Within the delay, a request is still answered.
	harness.Do(t, "GET", base, sd, nil).Expect(t, 200)
	time.Sleep(cfg.ShutdownDelay + 300*time.Millisecond)
	if _, err := http.Get(base); err == nil {
		t.Error("a new request was accepted after the delay")
	}
	close(proxy.released)
	if resp := <-answer; resp == nil || resp.StatusCode != 201 {
		t.Fatalf("in-flight create answered %v, want 201", resp)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after draining")
	}
	proxy.mu.Lock()
	ids := proxy.requestIDs
	proxy.mu.Unlock()
	for _, id := range ids {
		if id != "drain-test-1" {
			t.Errorf("Keycloak call carried X-Request-ID %q, want the request's", id)
		}
	}
	if len(realm.Artefacts(t, "Communities", "DRAIN")) != 3 { // the group and two roles
		t.Errorf("drained create left %v", realm.Artefacts(t, "Communities", "DRAIN"))
	}
}
