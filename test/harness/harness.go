// Package harness gives integration tests a real Keycloak and PostgreSQL,
// started once per test run, and isolates tests from each other by giving
// each its own realm.
//
// Where the servers come from, in order:
//  1. KEYCLOAK_URL and DATABASE_URL in the environment (make test starts
//     both once with deploy/local/stack.sh and exports them to every test
//     package, with FHIR_URL, the test FHIR server);
//  2. a reachable Docker engine: testcontainers-go starts both, and the
//     FHIR server is started with deploy/local/fhir.sh;
//  3. otherwise the harness runs deploy/local/stack.sh itself.
package harness

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Env says where the servers are.
type Env struct {
	KeycloakURL   string
	AdminUser     string
	AdminPassword string
	DatabaseURL   string
	// FHIRURL is the base URL of the test FHIR server (test/fhirserver).
	FHIRURL string
}

var current *Env

// Current is the environment Main set up; tests call it after TestMain.
func Current(t testing.TB) *Env {
	t.Helper()
	if current == nil {
		t.Fatal("harness.Main did not run: call it from TestMain")
	}
	return current
}

// RepoDir is the repository's root directory.
func RepoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Main sets up the servers, runs the tests, and tears down what it started.
// Use it as: func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }.
func Main(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "harness: -short given; skipping integration tests")
		return 0
	}
	ctx := context.Background()
	env, stop, err := start(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	defer stop()
	current = env
	return m.Run()
}

func start(ctx context.Context) (*Env, func(), error) {
	if os.Getenv("KEYCLOAK_URL") != "" && os.Getenv("DATABASE_URL") != "" {
		return &Env{
			KeycloakURL:   strings.TrimRight(os.Getenv("KEYCLOAK_URL"), "/"),
			AdminUser:     getenv("KEYCLOAK_ADMIN_USER", "admin"),
			AdminPassword: getenv("KEYCLOAK_ADMIN_PASSWORD", "admin"),
			DatabaseURL:   os.Getenv("DATABASE_URL"),
			FHIRURL:       strings.TrimRight(os.Getenv("FHIR_URL"), "/"),
		}, func() {}, nil
	}
	if dockerReachable(ctx) {
		env, stop, err := startContainers(ctx)
		if err != nil {
			return nil, nil, err
		}
		if env.FHIRURL, err = startFHIR(stop); err != nil {
			return nil, nil, err
		}
		return env, stop, nil
	}
	return startScripts()
}

// startScripts runs the project's own stack script, the same one make run
// and make test use.
func startScripts() (*Env, func(), error) {
	envFile, err := os.CreateTemp("", "communities-harness-env-*")
	if err != nil {
		return nil, nil, err
	}
	_ = envFile.Close()
	script := filepath.Join(RepoDir(), "deploy", "local", "stack.sh")
	stop := func() {
		cmd := exec.Command(script, "down", envFile.Name())
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		_ = cmd.Run()
		_ = os.Remove(envFile.Name())
	}
	cmd := exec.Command(script, "up", envFile.Name())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		stop()
		return nil, nil, fmt.Errorf("%s up: %w", script, err)
	}
	vars, err := readEnvFile(envFile.Name())
	if err != nil {
		stop()
		return nil, nil, err
	}
	return &Env{
		KeycloakURL:   vars["KEYCLOAK_URL"],
		AdminUser:     vars["KEYCLOAK_ADMIN_USER"],
		AdminPassword: vars["KEYCLOAK_ADMIN_PASSWORD"],
		DatabaseURL:   vars["DATABASE_URL"],
		FHIRURL:       vars["FHIR_URL"],
	}, stop, nil
}

func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out, sc.Err()
}

// Versions reads deploy/versions.env, the one place versions are pinned.
func Versions() map[string]string {
	v, err := readEnvFile(filepath.Join(RepoDir(), "deploy", "versions.env"))
	if err != nil {
		panic(err)
	}
	return v
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
