// Package auth verifies bearer tokens issued by Keycloak for the realm a
// request names: signature against the realm's JWKS (cached, refreshed on an
// unknown key id, rate-limited), allow-listed algorithms, expiry, not-before,
// issued-at, issuer equal to the realm in the path, audience, and token type.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// ErrInvalidToken wraps every verification failure. Callers answer all of
// them with one opaque 401 and log the wrapped detail.
var ErrInvalidToken = fault.Sentinel(fault.Unauthenticated, "invalid bearer token")

// Options configures a Verifier.
type Options struct {
	// JWKSURL returns the JWKS endpoint of a realm.
	JWKSURL func(realm string) string
	// Issuer returns the iss a realm's tokens must carry.
	Issuer     func(realm string) string
	Audience   string
	Algorithms []string
	// HTTPClient fetches key sets; its timeout bounds each fetch.
	HTTPClient *http.Client
	// Leeway tolerates clock skew between Keycloak and this service.
	Leeway time.Duration
	// Logger gets failed key set fetches (default slog.Default()).
	Logger *slog.Logger
	// UnknownKeyRefetch is how often a token naming a key the set lacks
	// may make it be fetched again (default DefaultUnknownKeyRefetch).
	UnknownKeyRefetch time.Duration
	// MaxKeyAge is how long a key set that cannot be fetched is trusted
	// after the last fetch that confirmed it (default DefaultMaxKeyAge).
	MaxKeyAge time.Duration
}

// Principal is the verified caller.
type Principal struct {
	Subject  string
	ClientID string // azp
	Username string // preferred_username
	Roles    map[string]bool
	Scopes   []string
	Claims   jwt.MapClaims
	// Privileges are the claims as the decision rules read them, parsed
	// once with the token: a cached token is judged many times, by
	// concurrent requests, which only read them.
	Privileges *decision.Privileges
	Expires    time.Time
}

// HasRole reports whether the caller holds realm role r.
func (p *Principal) HasRole(r string) bool { return p.Roles[r] }

// Verifier verifies tokens of any realm it is asked about, keeping one key
// set per realm.
type Verifier struct {
	opts Options
	ctx  context.Context

	mu   sync.Mutex // guards keys, never held while fetching
	keys map[string]*realmKeys
}

// errKeyNotChecked: a token's key is not in the realm's key set, and the
// set could not be fetched from Keycloak, so nothing is known about the
// token. Verify calls that Unavailable, so that callers answer
// 503 and clients try again rather than throw a good token away; the
// token is refused all the same.
var errKeyNotChecked = errors.New("the token's key is not in the key set, which could not be fetched again")

// errKeysUnconfirmed: the realm's key set could not be fetched for longer
// than MaxKeyAge, so its keys are not trusted; Unavailable, as
// errKeyNotChecked.
var errKeysUnconfirmed = errors.New("the realm's key set could not be fetched again")

// KeyRefresh is how often each realm's key set is fetched again, so that a
// key Keycloak withdrew stops verifying tokens (with MaxCacheAge, within
// about 10 minutes while Keycloak answers; a set that cannot be fetched
// keeps the keys it holds for MaxKeyAge).
const KeyRefresh = 5 * time.Minute

// DefaultMaxKeyAge is how long a key set that cannot be fetched is
// trusted after the last fetch that confirmed it. Keycloak being away does
// not withdraw its keys, and tokens signed before it went live on for
// their lifespan (5 minutes in the demo realm), so the keys held are kept
// a while; but a key withdrawn meanwhile (a leaked one) would verify for
// as long as the service is kept from Keycloak, so every token of the
// realm is refused as "try again" (503) after this.
const DefaultMaxKeyAge = time.Hour

// DefaultUnknownKeyRefetch is how often a token naming a key the set lacks
// may make it be fetched again: forged kids cannot make us hammer
// Keycloak.
const DefaultUnknownKeyRefetch = 30 * time.Second

// NewVerifier returns a Verifier whose background key refreshes end with ctx.
func NewVerifier(ctx context.Context, o Options) *Verifier {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.UnknownKeyRefetch <= 0 {
		o.UnknownKeyRefetch = DefaultUnknownKeyRefetch
	}
	if o.MaxKeyAge <= 0 {
		o.MaxKeyAge = DefaultMaxKeyAge
	}
	return &Verifier{opts: o, ctx: ctx, keys: map[string]*realmKeys{}}
}

// realmKeys returns realm's key set, fetching it in the background the
// first time and waiting for that fetch while ctx lasts. Other realms
// never wait for it.
func (v *Verifier) realmKeys(ctx context.Context, realm string) (*realmKeys, error) {
	v.mu.Lock()
	k, ok := v.keys[realm]
	if !ok {
		var err error
		if k, err = newRealmKeys(v.ctx, v.opts.JWKSURL(realm), v.opts.HTTPClient, v.opts.Logger.With("realm", realm)); err != nil {
			v.mu.Unlock()
			return nil, fmt.Errorf("key set of realm %s: %w", realm, err)
		}
		v.keys[realm] = k
		go k.run(KeyRefresh)
	}
	v.mu.Unlock()
	select {
	case <-k.ready:
		return k, nil
	case <-ctx.Done():
		return nil, fault.New(fault.Unavailable, "the realm's signing keys are still being fetched from Keycloak", ctx.Err())
	}
}

// Verify checks raw as a bearer token for realm and returns its caller.
func (v *Verifier) Verify(ctx context.Context, realm, raw string) (*Principal, error) {
	// One token has one spelling: the JWT library skips line breaks and
	// the unused bits of a segment's last character, so one token could be
	// written many ways, each a cache entry of its own (up to a body's
	// 64 KiB each, for a judged token) and each dodging a match on the
	// exact text.
	if !compact(raw) {
		return nil, fmt.Errorf("%w: not three base64url segments", ErrInvalidToken)
	}
	keys, err := v.realmKeys(ctx, realm)
	if err != nil {
		return nil, err
	}
	keyOf := keys.kf.KeyfuncCtx(ctx)
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		// Keycloak always names its key. Without a kid the key set would
		// be tried key by key, so a token is held to naming one.
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("token names no key (kid)")
		}
		// A token another issuer made, or one expired, is refused on what
		// it says, unverified: no key could make it good, so it neither
		// spends the refetch budget nor waits on Keycloak.
		if iss, _ := t.Claims.GetIssuer(); iss != v.opts.Issuer(realm) {
			return nil, fmt.Errorf("issuer %q is not the realm's", iss)
		}
		if exp, _ := t.Claims.GetExpirationTime(); exp == nil || time.Since(exp.Time) > v.opts.Leeway {
			return nil, errors.New("token expired, or without exp")
		}
		// Keys not confirmed for too long are not trusted. Keycloak may be
		// back between background retries, so a fetch is started (within
		// the refetch budget) for the requests after this one; this one
		// does not wait for it, as a Keycloak that does not answer would
		// hold every request for the whole timeout.
		if keys.unconfirmedFor(v.opts.MaxKeyAge) {
			keys.nudge(v.opts.UnknownKeyRefetch)
			return nil, fmt.Errorf("%w: none confirmed for over %s", errKeysUnconfirmed, v.opts.MaxKeyAge)
		}
		key, err := keyOf(t)
		if !errors.Is(err, jwkset.ErrKeyNotFound) {
			return key, err
		}
		// A key the set lacks: Keycloak may have rotated its keys, so the
		// set is fetched again, at most every UnknownKeyRefetch.
		if keys.refetch(ctx, v.opts.UnknownKeyRefetch) {
			if key, err = keyOf(t); !errors.Is(err, jwkset.ErrKeyNotFound) {
				return key, err
			}
		}
		// Not checked: Keycloak did not answer the last fetch.
		if !keys.reachable.Load() {
			return nil, fmt.Errorf("%w: %w", errKeyNotChecked, err)
		}
		return nil, err
	},
		jwt.WithValidMethods(v.opts.Algorithms),
		jwt.WithIssuer(v.opts.Issuer(realm)),
		jwt.WithAudience(v.opts.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.opts.Leeway),
		jwt.WithStrictDecoding(),
	)
	switch {
	case errors.Is(err, errKeyNotChecked):
		return nil, fault.New(fault.Unavailable, "the realm's signing keys could not be fetched from Keycloak to check the token", err)
	case errors.Is(err, errKeysUnconfirmed):
		return nil, fault.New(fault.Unavailable, "the realm's signing keys could not be confirmed with Keycloak for too long to check the token", err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	// Keycloak marks access tokens "Bearer"; refresh and ID tokens of the
	// same realm are signed by the same keys and must not pass for them,
	// nor may a token that does not say what it is.
	if typ, _ := claims["typ"].(string); typ != "Bearer" {
		return nil, fmt.Errorf("%w: token type %q is not an access token", ErrInvalidToken, typ)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	p := &Principal{Subject: sub, Roles: map[string]bool{}, Claims: claims}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		p.Expires = exp.Time
	}
	p.ClientID, _ = claims["azp"].(string)
	p.Username, _ = claims["preferred_username"].(string)
	if ra, ok := claims["realm_access"].(map[string]any); ok {
		if roles, ok := ra["roles"].([]any); ok {
			for _, r := range roles {
				if s, ok := r.(string); ok {
					p.Roles[s] = true
				}
			}
		}
	}
	if s, ok := claims["scope"].(string); ok {
		p.Scopes = decision.ScopeTokens(s)
	}
	p.Privileges = decision.ParseClaims(claims)
	return p, nil
}

// compact reports whether raw is a JWS in compact form: three segments of
// unpadded base64url characters, nothing else.
func compact(raw string) bool {
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch b := raw[i]; {
		case b == '.':
			dots++
		case 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// BearerToken extracts the token from an Authorization header value.
func BearerToken(header string) (string, bool) {
	const prefix = "bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(header[len(prefix):])
	return tok, tok != ""
}
