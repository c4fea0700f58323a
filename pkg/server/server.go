// Package server assembles the service from its configuration and runs it:
// HTTP API, periodic recovery of abandoned operations, graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/nhs-terminology/communities/pkg/api"
	"github.com/nhs-terminology/communities/pkg/auth"
	"github.com/nhs-terminology/communities/pkg/community"
	"github.com/nhs-terminology/communities/pkg/config"
	"github.com/nhs-terminology/communities/pkg/decision"
	"github.com/nhs-terminology/communities/pkg/fault"
	"github.com/nhs-terminology/communities/pkg/fhirguard"
	"github.com/nhs-terminology/communities/pkg/keycloak"
	"github.com/nhs-terminology/communities/pkg/metrics"
	"github.com/nhs-terminology/communities/pkg/registry"
	"github.com/nhs-terminology/communities/pkg/sysaccount"
)

// Option adjusts how a Server is built.
type Option func(*options)

type options struct {
	keycloakTransport http.RoundTripper
	readOnly          bool
	noMigrate         bool
}

// ReadOnly builds a server that cannot change anything: PostgreSQL
// sessions are read-only, the Keycloak client refuses every change before
// sending it, and the schema is never migrated (plan, export).
func ReadOnly() Option {
	return func(o *options) { o.readOnly, o.noMigrate = true, true }
}

// NoMigrate never migrates the schema, whatever --auto-migrate says, and
// refuses to build when a migration is pending (reconcile without repair).
func NoMigrate() Option {
	return func(o *options) { o.noMigrate = true }
}

// WithKeycloakTransport sends every Keycloak admin call through rt (tests
// inject faults with it).
func WithKeycloakTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.keycloakTransport = rt }
}

// Server is the assembled service.
type Server struct {
	cfg      config.Config
	defaults []community.Default
	log      *slog.Logger
	db       *gorm.DB
	store    *registry.Store
	kc       *keycloak.Client
	svc      *community.Service
	metrics  *metrics.Metrics
	handler  http.Handler
	cancel   context.CancelFunc
}

// New connects to PostgreSQL (migrating it if configured to) and builds the
// service. It does not need Keycloak to be up.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	defaults, err := community.ParseDefaults(cfg.DefaultCommunities)
	if err != nil {
		return nil, fmt.Errorf("--default-communities: %w", err)
	}
	required, err := auth.ParseRequiredClaims(cfg.RequiredClaims, cfg.Realms)
	if err != nil {
		return nil, fmt.Errorf("--required-claims: %w", err)
	}
	db, err := registry.Open(ctx, cfg.DatabaseURL, o.readOnly)
	if err != nil {
		return nil, err
	}
	switch {
	case o.noMigrate:
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
	m := metrics.New()
	kc := keycloak.New(keycloak.Options{
		BaseURL: cfg.KeycloakURL, ClientID: cfg.AdminClientID, ClientSecret: cfg.AdminClientSecret,
		AdminRealm: cfg.AdminRealm, Timeout: cfg.KeycloakTimeout, Transport: o.keycloakTransport,
		Observe: m.ObserveKeycloak, ReadOnly: o.readOnly,
	})
	store := registry.New(db)
	svcOpts := community.Options{
		RootGroup: cfg.RootGroup, FHIRClients: cfg.FHIRClients, CreatorRole: cfg.CreatorRole,
		Lease: cfg.OperationLease, Logger: log,
	}
	if len(cfg.GuardFHIRURLs) > 0 {
		svcOpts.Guard = fhirguard.New(fhirguard.Options{
			BaseURLs: cfg.GuardFHIRURLs, Types: cfg.GuardTypes, Timeout: cfg.GuardTimeout,
			System: cfg.PermissionsSystem, SystemlessLabels: cfg.SystemlessLabels,
		})
	}
	svc := community.New(store, kc, svcOpts)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	verifier := newVerifier(bg, cfg.KeycloakURL, cfg.Issuer, cfg.Audience, cfg.Algorithms, cfg.KeycloakTimeout, cfg.TokenCacheSize)
	s := &Server{cfg: cfg, defaults: defaults, log: log, db: db, store: store, kc: kc, svc: svc, metrics: m, cancel: cancel}
	s.handler = api.New(api.Options{
		Realms: cfg.Realms, CreatorRole: cfg.CreatorRole, ServiceDeskRole: cfg.ServiceDeskRole,
		Service: svc, Verifier: verifier, Ready: s.ready, Metrics: m, Logger: log,
		Decisions:       decision.Config{System: cfg.PermissionsSystem, SystemlessLabels: cfg.SystemlessLabels},
		DecisionClients: cfg.DecisionClients,
		ChangeClients:   cfg.ChangeClients,
		RequiredClaims:  required,
		Accounts:        sysaccount.New(kc, store, log),
		CORSOrigins:     cfg.CORSOrigins,
	})
	return s, nil
}

// newVerifier verifies tokens against Keycloak's JWKS of each realm, the
// same way for the service and the FHIR proxy.
func newVerifier(ctx context.Context, keycloakURL string, issuer func(string) string, audience string, algorithms []string,
	timeout time.Duration, cacheSize int) *auth.CachingVerifier {
	return auth.NewCachingVerifier(auth.NewVerifier(ctx, auth.Options{
		JWKSURL: func(realm string) string {
			return strings.TrimRight(keycloakURL, "/") + "/realms/" + realm + "/protocol/openid-connect/certs"
		},
		Issuer:     issuer,
		Audience:   audience,
		Algorithms: algorithms,
		HTTPClient: &http.Client{Timeout: timeout},
		Leeway:     10 * time.Second,
	}), cacheSize)
}

// Handler is the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Service is the community service (for tools and tests in-process).
func (s *Server) Service() *community.Service { return s.svc }

// Store is the registry.
func (s *Server) Store() *registry.Store { return s.store }

// KeycloakRoundTrips counts the requests sent to Keycloak so far.
func (s *Server) KeycloakRoundTrips() int64 { return s.kc.RoundTrips() }

func (s *Server) ready(ctx context.Context) error {
	// Public says which check failed, for anyone; Cause, which names
	// hosts and drivers' errors, is for the log.
	notReady := func(public string, cause error) error {
		return fault.New(fault.Unavailable, public, cause)
	}
	if err := s.store.Ping(ctx); err != nil {
		return notReady("PostgreSQL cannot be reached", err)
	}
	ok, err := registry.Current(ctx, s.db)
	if err != nil {
		return notReady("PostgreSQL cannot be reached", err)
	}
	if !ok {
		return notReady("database migrations pending; run 'communities migrate up'", nil)
	}
	for _, realm := range s.cfg.Realms {
		if err := s.kc.Ping(ctx, realm); err != nil {
			return notReady("Keycloak cannot be reached for realm "+realm, err)
		}
	}
	return nil
}

// RecoverOnce undoes abandoned operations whose lease has run out.
func (s *Server) RecoverOnce(ctx context.Context) {
	s.metrics.RecoveryRuns.Inc()
	n, err := s.svc.Recover(ctx, s.cfg.Realms)
	s.metrics.Recovered.Add(float64(n))
	if err != nil {
		s.metrics.RecoveryErrors.Inc()
		s.log.WarnContext(ctx, "recovery pass stopped; will retry", "recovered", n, "error", err)
	}
}

// Run serves on cfg.Listen until ctx ends, then drains in-flight requests
// for up to cfg.ShutdownTimeout. ready, if not nil, gets the bound address.
func (s *Server) Run(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * s.cfg.OperationLease,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	go s.recoveryLoop(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String(), "realms", s.cfg.Realms, "keycloak", s.cfg.KeycloakURL)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down; draining in-flight requests", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// ReconcileOnce checks for drift (without repairing) the realms no other
// replica is checking, and publishes what it found.
func (s *Server) ReconcileOnce(ctx context.Context) {
	reports, _, err := s.svc.Reconcile(ctx, s.cfg.Realms, false)
	if err != nil {
		s.log.WarnContext(ctx, "drift check stopped; will retry", "error", err)
		return
	}
	if len(reports) == 0 {
		return
	}
	s.metrics.ReconcileRuns.Inc()
	for _, r := range reports {
		s.metrics.DriftFound.WithLabelValues(r.Realm).Set(float64(r.DriftCount()))
	}
}

// EnsureDefaults makes the default communities of every managed realm
// that still lacks them; it reports whether all realms have them now.
func (s *Server) EnsureDefaults(ctx context.Context) bool {
	ok := true
	for _, realm := range s.cfg.Realms {
		if err := s.svc.EnsureDefaults(ctx, realm, s.defaults); err != nil {
			s.log.WarnContext(ctx, "default communities not made yet; will retry", "realm", realm, "error", err)
			ok = false
		}
	}
	return ok
}

func (s *Server) recoveryLoop(ctx context.Context) {
	s.RecoverOnce(ctx)
	defaultsDone := s.EnsureDefaults(ctx)
	recovery := time.NewTicker(s.cfg.RecoveryInterval)
	defer recovery.Stop()
	var reconcile <-chan time.Time
	if s.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(s.cfg.ReconcileInterval)
		defer t.Stop()
		reconcile = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-recovery.C:
			s.RecoverOnce(ctx)
			if !defaultsDone {
				defaultsDone = s.EnsureDefaults(ctx)
			}
		case <-reconcile:
			s.ReconcileOnce(ctx)
		}
	}
}

// Close releases the database and background work.
func (s *Server) Close() {
	s.cancel()
	closeDB(s.db)
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
