package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerReachable reports whether a Docker engine answers. This machine has
// only the Docker client, so here it is false and the scripts start the
// servers; developers with Docker get containers instead.
func dockerReachable(ctx context.Context) bool {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	defer p.Close()
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return p.Health(hctx) == nil
}

// startContainers starts PostgreSQL and Keycloak (the version pinned in
// deploy/versions.env) in containers.
func startContainers(ctx context.Context) (*Env, func(), error) {
	v := Versions()
	pg, err := testcontainers.Run(ctx, "postgres:"+v["POSTGRES_MAJOR"],
		testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": "postgres", "POSTGRES_DB": "communities"}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithOccurrence(2).WithStartupTimeout(2*time.Minute)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("start PostgreSQL container: %w", err)
	}
	// The demo realm's admin theme, built by the same script make run uses.
	theme, err := exec.Command(filepath.Join(RepoDir(), "deploy", "local", "admin-theme.sh"), "build").Output()
	if err != nil {
		_ = pg.Terminate(context.Background())
		return nil, nil, fmt.Errorf("build the admin console theme: %w", err)
	}
	kc, err := testcontainers.Run(ctx, "keycloak/keycloak:"+v["KEYCLOAK_VERSION"],
		testcontainers.WithFiles(testcontainers.ContainerFile{
			HostFilePath: strings.TrimSpace(string(theme)), ContainerFilePath: "/opt/keycloak/themes", FileMode: 0o755,
		}),
		testcontainers.WithEnv(map[string]string{
			"KC_BOOTSTRAP_ADMIN_USERNAME": "admin", "KC_BOOTSTRAP_ADMIN_PASSWORD": "admin", "KC_HEALTH_ENABLED": "true",
		}),
		testcontainers.WithCmd("start-dev"),
		testcontainers.WithExposedPorts("8080/tcp", "9000/tcp"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/health/ready").WithPort("9000/tcp").WithStartupTimeout(5*time.Minute)),
	)
	stop := func() {
		if kc != nil {
			_ = kc.Terminate(context.Background())
		}
		_ = pg.Terminate(context.Background())
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("start Keycloak container: %w", err)
	}
	pgHost, err := pg.PortEndpoint(ctx, "5432/tcp", "")
	if err != nil {
		stop()
		return nil, nil, err
	}
	kcURL, err := kc.PortEndpoint(ctx, "8080/tcp", "http")
	if err != nil {
		stop()
		return nil, nil, err
	}
	return &Env{
		KeycloakURL: kcURL, AdminUser: "admin", AdminPassword: "admin",
		DatabaseURL: "postgres://postgres:postgres@" + pgHost + "/communities?sslmode=disable",
	}, stop, nil
}
