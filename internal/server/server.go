// Package server assembles the service from its configuration and runs it:
// HTTP API, periodic recovery of abandoned operations, graceful shutdown.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nhs-terminology/communities/internal/api"
	"github.com/nhs-terminology/communities/internal/auth"
	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/core"
	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/headerlimit"
	"github.com/nhs-terminology/communities/internal/metrics"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// Option adjusts how a Server is built.
type Option func(*options)

type options struct {
	keycloakTransport http.RoundTripper
}

// WithKeycloakTransport sends every Keycloak admin call through rt (tests
// inject faults and count round trips with it).
func WithKeycloakTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.keycloakTransport = rt }
}

// Server is the core (internal/core) behind the HTTP API, with its background
// work: recovery, drift checks, default communities.
type Server struct {
	cfg      config.Config
	defaults []community.Default
	log      *slog.Logger
	core     *core.Core
	metrics  *metrics.Metrics
	handler  http.Handler
	cancel   context.CancelFunc
	// draining is set once Run is told to stop: readiness fails.
	draining atomic.Bool
}

// New builds the core and the HTTP API in front of it. It does not need
// Keycloak to be up.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
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
	m := metrics.New()
	c, err := core.Open(ctx, cfg, log, core.Options{KeycloakTransport: o.keycloakTransport, ObserveKeycloak: m.ObserveKeycloak})
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	verifier := newVerifier(bg, log, cfg.KeycloakURL, cfg.Issuer, cfg.Audience, cfg.Algorithms, cfg.KeycloakTimeout, cfg.TokenCacheSize)
	s := &Server{cfg: cfg, defaults: defaults, log: log, core: c, metrics: m, cancel: cancel}
	// Every realm's series exist from the start, so that an alert on a
	// drift check that never finishes after a restart has one to read:
	// no error yet, and the last finished check "now".
	for _, realm := range cfg.Realms {
		m.DriftErrors.WithLabelValues(realm)
		m.DriftChecked.WithLabelValues(realm).SetToCurrentTime()
	}
	s.handler = api.New(api.Options{
		Realms: cfg.Realms, CreatorRole: cfg.CreatorRole, ServiceDeskRole: cfg.ServiceDeskRole,
		Service: c.Service(), Verifier: verifier, Ready: s.ready, Metrics: m, Logger: log,
		Decisions:       decision.Config{System: cfg.PermissionsSystem, SystemlessLabels: cfg.SystemlessLabels},
		DecisionClients: cfg.DecisionClients,
		ChangeClients:   cfg.ChangeClients,
		RequiredClaims:  required,
		Accounts:        c.Accounts(),
		CORSOrigins:     cfg.CORSOrigins,
		MaxHeaderBytes:  cfg.MaxHeaderKiB << 10,
	})
	return s, nil
}

// newVerifier verifies tokens against Keycloak's JWKS of each realm, the
// same way for the service and the FHIR proxy.
func newVerifier(ctx context.Context, log *slog.Logger, keycloakURL string, issuer func(string) string, audience string, algorithms []string,
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
		Logger:     log,
	}), cacheSize)
}

// Handler is the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Service is the community service (for tests in-process).
func (s *Server) Service() *community.Service { return s.core.Service() }

// RecoverOnce undoes abandoned operations whose lease has run out.
func (s *Server) RecoverOnce(ctx context.Context) {
	s.metrics.RecoveryRuns.Inc()
	n, err := s.core.Service().Recover(ctx, s.cfg.Realms)
	s.metrics.Recovered.Add(float64(n))
	if err != nil {
		s.metrics.RecoveryErrors.Inc()
		s.log.WarnContext(ctx, "recovery pass stopped; will retry", "recovered", n, "error", err)
	}
}

// ready is readiness: not once shutting down, else the core's.
func (s *Server) ready(ctx context.Context) error {
	if s.draining.Load() {
		return fault.New(fault.Unavailable, "shutting down", nil)
	}
	return s.core.Ready(ctx)
}

// Run serves on cfg.Listen until ctx ends. Then /readyz fails at once, and
// requests are still served for cfg.ShutdownDelay, so that load balancers
// stop sending new ones before the port closes; in-flight ones are then
// drained for up to cfg.ShutdownTimeout, and Run returns once the
// background loop's pass in flight, cut short by ctx, has ended too.
// ready, if not nil, gets the bound address.
func (s *Server) Run(ctx context.Context, ready func(addr string)) error {
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		s.recoveryLoop(ctx)
	}()
	defer func() { <-loop }()
	return serve(ctx, s.log, s.cfg.Listen, &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * s.cfg.OperationLease,
		IdleTimeout:       2 * time.Minute,
		// Well above --max-header-kib, so that the API's own check, which
		// answers 431 with a reason, logs and counts it, is what callers meet.
		MaxHeaderBytes: headerlimit.ServerLimit(s.cfg.MaxHeaderKiB << 10),
	}, stopping{draining: func() { s.draining.Store(true) }, delay: s.cfg.ShutdownDelay, drain: s.cfg.ShutdownTimeout}, func(addr string) {
		s.log.Info("listening", "addr", addr, "realms", s.cfg.Realms, "keycloak", s.cfg.KeycloakURL)
		if ready != nil {
			ready(addr)
		}
	})
}

// ReconcileOnce checks for drift (without repairing) the realms no other
// replica is checking, and publishes what it found. Each realm is checked
// on its own, so that one whose check fails neither stops the others nor
// leaves its own failure unseen: it is counted, and the time of its last
// finished check stays where it was.
func (s *Server) ReconcileOnce(ctx context.Context) {
	ran := false
	for _, realm := range s.cfg.Realms {
		reports, _, err := s.core.Service().Reconcile(ctx, []string{realm}, false)
		for _, r := range reports {
			ran = true
			// An unfinished check's count is what it found before it
			// stopped: published when it found something (a community
			// that keeps failing must not hide the others' drift), never
			// as a 0 that would clear an alert on what it did not check.
			if !r.Incomplete || r.DriftCount() > 0 {
				s.metrics.DriftFound.WithLabelValues(r.Realm).Set(float64(r.DriftCount()))
			}
			if !r.Incomplete {
				s.metrics.DriftChecked.WithLabelValues(r.Realm).SetToCurrentTime()
			}
		}
		if err != nil {
			s.metrics.DriftErrors.WithLabelValues(realm).Inc()
			s.log.WarnContext(ctx, "drift check incomplete; will retry", "realm", realm, "error", err)
		}
	}
	if ran {
		s.metrics.ReconcileRuns.Inc()
	}
}

// EnsureDefaults makes the default communities of every managed realm
// that still lacks them; it reports whether all realms have them now.
func (s *Server) EnsureDefaults(ctx context.Context) bool {
	ok := true
	for _, realm := range s.cfg.Realms {
		if err := s.core.Service().EnsureDefaults(ctx, realm, s.defaults); err != nil {
			s.log.WarnContext(ctx, "default communities not made yet; will retry", "realm", realm, "error", err)
			ok = false
		}
	}
	return ok
}

func (s *Server) recoveryLoop(ctx context.Context) {
	s.guard(ctx, "recovery", s.RecoverOnce)
	defaultsDone := false
	ensureDefaults := func(ctx context.Context) { defaultsDone = s.EnsureDefaults(ctx) }
	s.guard(ctx, "default communities", ensureDefaults)
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
			s.guard(ctx, "recovery", s.RecoverOnce)
			if !defaultsDone {
				s.guard(ctx, "default communities", ensureDefaults)
			}
		case <-reconcile:
			s.guard(ctx, "drift check", s.ReconcileOnce)
		}
	}
}

// guard runs one background pass. A panic in it is logged with its stack
// and counted, and the loop goes on: unrecovered, it would end the process
// (and the API with it) on every pass that meets whatever caused it. The
// pass's deferred calls have run by then, releasing its locks and
// transactions.
func (s *Server) guard(ctx context.Context, pass string, run func(context.Context)) {
	guard(ctx, s.log, s.metrics.BackgroundPanics, pass, run)
}

func guard(ctx context.Context, log *slog.Logger, panics prometheus.Counter, pass string, run func(context.Context)) {
	defer func() {
		if p := recover(); p != nil {
			panics.Inc()
			log.ErrorContext(ctx, "background pass panicked; it runs again at its next interval", "pass", pass,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	run(ctx)
}

// Close releases the database and background work.
func (s *Server) Close() {
	s.cancel()
	s.core.Close()
}
