package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/server"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// startFHIR starts the test FHIR server with the project's script beside
// containers (HAPI has no image the project pins); stopOthers is called if
// it fails, and the returned URL's server stops with the run directory.
func startFHIR(stopOthers func()) (string, error) {
	dir, err := os.MkdirTemp("", "communities-fhir-*")
	if err != nil {
		stopOthers()
		return "", err
	}
	script := filepath.Join(RepoDir(), "deploy", "local", "fhir.sh")
	var out bytes.Buffer
	cmd := exec.Command(script, "start", dir)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		stopOthers()
		return "", fmt.Errorf("%s start: %w", script, err)
	}
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		if u, ok := bytes.CutPrefix(line, []byte("FHIR_URL=")); ok {
			return string(u), nil
		}
	}
	return "", fmt.Errorf("%s start printed no FHIR_URL", script)
}

// FHIR returns the test FHIR server's base URL.
func (e *Env) FHIR(t testing.TB) string {
	t.Helper()
	if e.FHIRURL == "" {
		t.Fatal("no test FHIR server: run under deploy/local/stack.sh (make test) or set FHIR_URL")
	}
	return e.FHIRURL
}

// Resource is a terminology resource to store on the FHIR server: its
// type, id (tests use ids unique to their realm; "" for none, to create)
// and labels.
func Resource(typ, id string, labels ...string) map[string]any {
	security := []map[string]string{}
	for _, l := range labels {
		security = append(security, map[string]string{"system": decision.DefaultSystem, "code": l})
	}
	r := map[string]any{"resourceType": typ, "url": "http://example.org/" + typ + "/" + id, "status": "active"}
	if id != "" {
		r["id"] = id
	}
	if len(labels) > 0 {
		r["meta"] = map[string]any{"security": security}
	}
	return r
}

// PutFHIR stores r on the FHIR server at base directly (no proxy), as the
// tests' set-up.
func PutFHIR(t testing.TB, base string, r map[string]any) {
	t.Helper()
	resp := DoFHIR(t, http.MethodPut, base+"/"+r["resourceType"].(string)+"/"+r["id"].(string), "", r)
	if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
		t.Fatalf("store %s/%s: %s", r["resourceType"], r["id"], resp)
	}
}

// DoFHIR sends one FHIR request (JSON body as application/fhir+json).
func DoFHIR(t testing.TB, method, u, token string, body any) *Response {
	t.Helper()
	return DoWith(t, method, u, token, body, http.Header{"Content-Type": {"application/fhir+json"}, "Accept": {"application/fhir+json"}})
}

// SecurityOf returns the labels of a FHIR resource in JSON.
func SecurityOf(t testing.TB, raw []byte) []string {
	t.Helper()
	var r struct {
		Meta struct {
			Security []decision.Coding `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	var out []string
	for _, c := range r.Meta.Security {
		out = append(out, c.Code)
	}
	return out
}

// StartProxy runs the enforcing FHIR proxy in-process in front of the test
// FHIR server for realm's tokens until the test ends; it returns the
// proxy's FHIR base URL.
func (e *Env) StartProxy(t testing.TB, realm string) string {
	t.Helper()
	cfg := config.DefaultProxy()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream = e.FHIR(t)
	cfg.Realm = realm
	cfg.KeycloakURL = e.KeycloakURL
	log := slog.New(slog.NewJSONHandler(LogWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := server.NewProxy(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, func(a string) { addr <- a }) }()
	var u string
	select {
	case a := <-addr:
		u = "http://" + a + cfg.BasePath
	case err := <-ran:
		t.Fatalf("proxy stopped: %v", err)
	}
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
	})
	return u
}
