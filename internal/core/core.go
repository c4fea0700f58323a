// Package core builds the service's core from its configuration: the
// registry (PostgreSQL), the Keycloak client and the domain services. It
// has no HTTP: the server (internal/server) puts an API in front of it, and the
// command-line tools (plan, apply, export, reconcile) use it as it is.
package core

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"gorm.io/gorm"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/fhirguard"
	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/internal/sysaccount"
)

// Options adjust how the core is built.
type Options struct {
	// KeycloakTransport carries every Keycloak admin call (tests inject
	// faults with it); nil is the default transport.
	KeycloakTransport http.RoundTripper
	// ReadOnly builds a core that cannot change anything: PostgreSQL
	// sessions are read-only, the Keycloak client refuses every change
	// before sending it, and the schema is never migrated (plan, export).
	ReadOnly bool
	// NoMigrate never migrates the schema, whatever --auto-migrate says,
	// and refuses to build when a migration is pending.
	NoMigrate bool
	// ObserveKeycloak, when set, is told of every Keycloak round trip.
	ObserveKeycloak func(method string, status int, took time.Duration)
}

// Core is the assembled domain.
type Core struct {
	cfg      config.Config
	db       *gorm.DB
	store    *registry.Store
	kc       *keycloak.Client
	svc      *community.Service
	accounts *sysaccount.Service
}

// Open connects to PostgreSQL (migrating it if configured to) and builds
// the services. It does not need Keycloak to be up.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := registry.Open(ctx, cfg.DatabaseURL, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	switch {
	case o.ReadOnly || o.NoMigrate:
		current, err := registry.Current(ctx, db)
		if err == nil && !current {
			err = errors.New("database migrations are pending and this command does not migrate; run 'communities migrate up' first")
		}
		if err != nil {
			closeDB(db)
			return nil, err
		}
	case cfg.AutoMigrate:
		if err := registry.Migrate(ctx, db); err != nil {
			closeDB(db)
			return nil, err
		}
	}
	kc := keycloak.New(keycloak.Options{
		BaseURL: cfg.KeycloakURL, ClientID: cfg.AdminClientID, ClientSecret: cfg.AdminClientSecret,
		AdminRealm: cfg.AdminRealm, Timeout: cfg.KeycloakTimeout, Transport: o.KeycloakTransport,
		Observe: o.ObserveKeycloak, ReadOnly: o.ReadOnly, ServiceDeskRole: cfg.ServiceDeskRole,
	})
	store := registry.New(db)
	roles := community.Roles{ServiceDesk: cfg.ServiceDeskRole, Creator: cfg.CreatorRole}
	svcOpts := community.Options{
		RootGroup: cfg.RootGroup, FHIRClients: cfg.FHIRClients, Roles: roles,
		Lease: cfg.OperationLease, Logger: log,
	}
	if len(cfg.GuardFHIRURLs) > 0 {
		svcOpts.Guard = fhirguard.New(fhirguard.Options{
			BaseURLs: cfg.GuardFHIRURLs, Types: cfg.GuardTypes, Timeout: cfg.GuardTimeout,
			System: cfg.PermissionsSystem, SystemlessLabels: cfg.SystemlessLabels,
		})
	}
	return &Core{cfg: cfg, db: db, store: store, kc: kc,
		svc: community.New(store, kc, svcOpts), accounts: sysaccount.New(kc, roles, store, log)}, nil
}

// Service is the community service.
func (c *Core) Service() *community.Service { return c.svc }

// Accounts is the system-account service.
func (c *Core) Accounts() *sysaccount.Service { return c.accounts }

// Ready reports whether PostgreSQL answers with a current schema and the
// service can log in to Keycloak for every managed realm. A failure's
// public text says which check failed; its cause, which names hosts and
// drivers' errors, is for the log.
func (c *Core) Ready(ctx context.Context) error {
	notReady := func(public string, cause error) error {
		return fault.New(fault.Unavailable, public, cause)
	}
	if err := c.store.Ping(ctx); err != nil {
		return notReady("PostgreSQL cannot be reached", err)
	}
	ok, err := registry.Current(ctx, c.db)
	if err != nil {
		return notReady("PostgreSQL cannot be reached", err)
	}
	if !ok {
		return notReady("database migrations pending; run 'communities migrate up'", nil)
	}
	for _, realm := range c.cfg.Realms {
		if err := c.kc.Ping(ctx, realm); err != nil {
			return notReady("Keycloak cannot be reached for realm "+realm, err)
		}
	}
	return nil
}

// Close releases the database.
func (c *Core) Close() { closeDB(c.db) }

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
