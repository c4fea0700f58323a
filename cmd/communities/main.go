// Command communities runs and administers the communities service: a
// companion to Keycloak that manages communities (security labels and the
// groups, roles and scopes that grant them) for a FHIR terminology server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/core"
	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "communities",
		Short: "Communities for a FHIR terminology server on Keycloak",
		Long: `communities manages communities: named collections of FHIR resources whose
security labels (<label>.read, <label>.write) grant read or write access to the
members of the community's owner, author and consumer groups in Keycloak.

Every flag can also be set by the environment variable shown in its help;
flags win over the environment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(stderr), newMigrate(stdout, stderr), newApply(stdout, stderr), newPlan(stdout, stderr),
		newExport(stdout, stderr), newReconcile(stdout, stderr), newProxy(stderr), newProbe(stdout), newVersion(stdout))
	return root
}

func newServe(stderr io.Writer) *cobra.Command {
	var cfg config.Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API",
		Long: `Run the communities HTTP API: communities, their members, decisions and
system accounts under /realms/{realm}/, also under the legacy prefix /auth,
plus /healthz, /readyz and /metrics. Every route is described by the served
/openapi.yaml (and docs/api.md). It migrates the registry at start-up (unless --auto-migrate=false)
and undoes operations abandoned by a crashed replica. SIGINT or SIGTERM stops it
after draining in-flight requests.`,
		Example: `  COMMUNITIES_ADMIN_CLIENT_SECRET=communities-service-secret \
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/communities?sslmode=disable \
  communities serve --keycloak-url http://localhost:8080 --realms terminology`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := settle(cmd, &cfg, stderr)
			if err != nil {
				return err
			}
			srv, err := server.New(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(cmd.Context(), nil)
		},
	}
	config.Bind(cmd.Flags(), &cfg)
	return cmd
}

func newMigrate(stdout, stderr io.Writer) *cobra.Command {
	var dsn string
	cmd := &cobra.Command{
		Use:   "migrate up|down|status",
		Short: "Apply, roll back or show registry schema migrations",
		Long: `Manage the registry's schema in PostgreSQL.

  up      apply every pending migration (serve also does this unless --auto-migrate=false)
  down    roll back the most recent migration
  status  list migrations and whether each is applied

Replicas and jobs running migrate together take turns on an advisory lock.`,
		Example:   `  DATABASE_URL=postgres://postgres@127.0.0.1:5432/communities?sslmode=disable communities migrate up`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"up", "down", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if dsn == "" {
				dsn = os.Getenv("DATABASE_URL")
			}
			if dsn == "" {
				return fmt.Errorf("--database-url (DATABASE_URL) is required")
			}
			db, err := registry.Open(cmd.Context(), dsn, false)
			if err != nil {
				return err
			}
			defer func() {
				if sqlDB, err := db.DB(); err == nil {
					_ = sqlDB.Close()
				}
			}()
			switch args[0] {
			case "up":
				if err := registry.Migrate(cmd.Context(), db); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "registry schema is up to date")
			case "down":
				if err := registry.MigrateDown(cmd.Context(), db); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "rolled back the last migration")
			case "status":
				st, err := registry.Status(cmd.Context(), db)
				if err != nil {
					return err
				}
				for _, s := range st {
					state := "pending"
					if s.Applied {
						state = "applied"
					}
					fmt.Fprintf(stdout, "%-30s %s\n", s.ID, state)
				}
			default:
				return fmt.Errorf("unknown migrate action %q: use up, down or status", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "database-url", "", "PostgreSQL URL of the registry [$DATABASE_URL]")
	return cmd
}

func newProbe(stdout io.Writer) *cobra.Command {
	var target string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Check a health endpoint (for container health checks)",
		Long: `Send GET to --url and exit 0 if it answers 2xx, 1 otherwise. The container
image has no shell or curl, so its HEALTHCHECK runs this. Without --url the
URL is $COMMUNITIES_PROBE_URL, else the service's /healthz on 8081: a
container running 'communities proxy' sets
COMMUNITIES_PROBE_URL=http://127.0.0.1:8082/healthz.`,
		Example: `  communities probe --url http://127.0.0.1:8081/readyz`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if env, ok := os.LookupEnv("COMMUNITIES_PROBE_URL"); ok && !cmd.Flags().Changed("url") {
				target = env
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("probe %s: %w", target, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("probe %s: HTTP %d", target, resp.StatusCode)
			}
			fmt.Fprintf(stdout, "%s: HTTP %d\n", target, resp.StatusCode)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", "http://127.0.0.1:8081/healthz", "URL to check [$COMMUNITIES_PROBE_URL]")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

func newVersion(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Long:    "Print the version of this build as JSON.",
		Example: `  communities version`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := version
			if v == "" {
				if bi, ok := debug.ReadBuildInfo(); ok {
					v = bi.Main.Version
				}
			}
			return json.NewEncoder(stdout).Encode(map[string]string{"version": v})
		},
	}
}

// settle applies the environment to cmd's unset flags (which are bound to
// cfg) and returns an adjusted copy of the result with a logger to stderr.
func settle(cmd *cobra.Command, cfg *config.Config, stderr io.Writer, adjust ...func(*config.Config)) (config.Config, *slog.Logger, error) {
	if err := config.ApplyEnv(cmd.Flags(), nil); err != nil {
		return config.Config{}, nil, err
	}
	c := *cfg
	for _, a := range adjust {
		a(&c)
	}
	log, err := newLogger(stderr, c.LogLevel)
	return c, log, err
}

// openCore builds the core (no HTTP, no token verifier, no metrics) for
// the command-line tools.
func openCore(cmd *cobra.Command, cfg *config.Config, stderr io.Writer, o core.Options, adjust ...func(*config.Config)) (*core.Core, error) {
	c, log, err := settle(cmd, cfg, stderr, adjust...)
	if err != nil {
		return nil, err
	}
	return core.Open(cmd.Context(), c, log, o)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
