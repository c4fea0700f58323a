package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nhs-terminology/communities/internal/fault"
)

type keys struct {
	rsa   *rsa.PrivateKey
	other *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
}

// jwksServer serves the public half of k.rsa (kid "k1") as a realm's JWKS.
func jwksServer(t *testing.T, k keys) *httptest.Server {
	t.Helper()
	n := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())
	body, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": n, "e": e},
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newKeys(t *testing.T) keys {
	t.Helper()
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := rsa.GenerateKey(rand.Reader, 2048)
	c, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return keys{rsa: a, other: b, ec: c}
}

func validClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": "http://kc/realms/r1", "aud": []string{"communities", "account"},
		"sub": "u1", "azp": "terminology-client", "typ": "Bearer", "preferred_username": "alice",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
		"realm_access": map[string]any{"roles": []string{"author", "FHIR_READ"}},
		"scope":        "profile grouping/NDD.read",
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	k := newKeys(t)
	srv := jwksServer(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v := NewVerifier(ctx, Options{
		JWKSURL:    func(string) string { return srv.URL },
		Issuer:     func(realm string) string { return "http://kc/realms/" + realm },
		Audience:   "communities",
		Algorithms: []string{"RS256", "PS256", "ES256"},
		Leeway:     5 * time.Second,
	})

	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	p, err := v.Verify(ctx, "r1", good)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if p.Subject != "u1" || p.ClientID != "terminology-client" || p.Username != "alice" || !p.HasRole("author") ||
		p.HasRole("service-desk") || len(p.Scopes) != 2 {
		t.Errorf("principal %+v", p)
	}

	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	bad := map[string]string{
		"alg none":                    noneTok,
		"HS256 keyed with public key": sign(t, jwt.SigningMethodHS256, pubPEM, "k1", validClaims()),
		"key not in JWKS":             sign(t, jwt.SigningMethodRS256, k.other, "k1", validClaims()),
		"unknown kid":                 sign(t, jwt.SigningMethodRS256, k.other, "k9", validClaims()),
		"ES256 with unknown key":      sign(t, jwt.SigningMethodES256, k.ec, "k1", validClaims()),
		"RS512 not allow-listed":      sign(t, jwt.SigningMethodRS512, k.rsa, "k1", validClaims()),
		"expired":                     sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })),
		"no exp":                      sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { delete(c, "exp") })),
		"not yet valid":               sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
		"issued in the future":        sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })),
		"other realm's issuer":        sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["iss"] = "http://kc/realms/r2" })),
		"other Keycloak's issuer":     sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["iss"] = "http://evil/realms/r1" })),
		"no audience":                 sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { delete(c, "aud") })),
		"wrong audience":              sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["aud"] = "account" })),
		"refresh token":               sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["typ"] = "Refresh" })),
		"ID token":                    sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["typ"] = "ID" })),
		"no typ":                      sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { delete(c, "typ") })),
		"typ not a string":            sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["typ"] = 1 })),
		"typ in another case":         sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["typ"] = "bearer" })),
		"no subject":                  sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { delete(c, "sub") })),
		"no kid":                      sign(t, jwt.SigningMethodRS256, k.rsa, "", validClaims()),
		"garbage":                     "a.b.c",
		"empty":                       "",
		"payload swapped":             swap(good, sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["sub"] = "admin" }))),
		// The same token spelt otherwise: each would be a cache entry.
		"line break in the signature": good[:len(good)-10] + "\r\n" + good[len(good)-10:],
		"unused bits set":             otherSpelling(good),
		"padded":                      good + "==",
		"spaces around a dot":         strings.Replace(good, ".", " . ", 1),
	}
	for name, tok := range bad {
		start := time.Now()
		if _, err := v.Verify(ctx, "r1", tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s: refusal took %s; forged kids must not stall requests", name, took)
		}
	}
	// A token for realm r1 is not accepted for realm r2, even with a
	// matching key set.
	if _, err := v.Verify(ctx, "r2", good); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("r1 token accepted for r2: %v", err)
	}
}

// with returns valid claims changed by change.
func with(change func(jwt.MapClaims)) jwt.MapClaims {
	c := validClaims()
	change(c)
	return c
}

func swap(a, b string) string {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	return pa[0] + "." + pb[1] + "." + pa[2]
}

func TestBearerToken(t *testing.T) {
	cases := map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc"}
	for in, want := range cases {
		if got, ok := BearerToken(in); !ok || got != want {
			t.Errorf("BearerToken(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "Bearer", "Bearer ", "Basic abc", "abc"} {
		if _, ok := BearerToken(in); ok {
			t.Errorf("BearerToken(%q) accepted", in)
		}
	}
}

func benchVerifier(b *testing.B) (*Verifier, string) {
	k := newKeys(&testing.T{})
	n := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())
	body, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": n, "e": e}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	b.Cleanup(srv.Close)
	v := NewVerifier(b.Context(), Options{
		JWKSURL: func(string) string { return srv.URL }, Issuer: func(r string) string { return "http://kc/realms/" + r },
		Audience: "communities", Algorithms: []string{"RS256"},
	})
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, validClaims())
	tok.Header["kid"] = "k1"
	s, _ := tok.SignedString(k.rsa)
	if _, err := v.Verify(b.Context(), "r1", s); err != nil {
		b.Fatal(err)
	}
	return v, s
}

// BenchmarkVerifyRS256: full verification (signature, claims) of a token.
func BenchmarkVerifyRS256(b *testing.B) {
	v, tok := benchVerifier(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(b.Context(), "r1", tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached: the same token through the cache.
func BenchmarkVerifyCached(b *testing.B) {
	v, tok := benchVerifier(b)
	c := NewCachingVerifier(v, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(b.Context(), "r1", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCachingVerifierExpires(t *testing.T) {
	k := newKeys(t)
	srv := jwksServer(t, k)
	v := NewVerifier(t.Context(), Options{
		JWKSURL: func(string) string { return srv.URL }, Issuer: func(r string) string { return "http://kc/realms/" + r },
		Audience: "communities", Algorithms: []string{"RS256"},
	})
	c := NewCachingVerifier(v, 10)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	if _, err := c.Verify(t.Context(), "r1", tok); err != nil {
		t.Fatal(err)
	}
	if c.cache.Len() != 1 {
		t.Fatalf("cache holds %d after a verification", c.cache.Len())
	}
	// Another realm is another key: the r1 entry does not answer for r2.
	if _, err := c.Verify(t.Context(), "r2", tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("cached r1 token accepted for r2: %v", err)
	}
	// A token that has expired since it was cached is verified again, and
	// refused, not answered from the cache.
	short := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Second).Unix() }))
	if _, err := c.Verify(t.Context(), "r1", short); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.Unix(time.Now().Add(time.Second).Unix(), 0)) + 1100*time.Millisecond)
	if _, err := c.Verify(t.Context(), "r1", short); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an expired token was answered from the cache: %v", err)
	}
}

// TestCachingVerifierForgetsAfterMaxCacheAge: a token is answered from the
// cache for at most MaxCacheAge, however late its exp, then verified again
// (here refused, its issuer no longer trusted), so that a withdrawn key
// stops working.
func TestCachingVerifierForgetsAfterMaxCacheAge(t *testing.T) {
	k := newKeys(t)
	srv := jwksServer(t, k)
	trusted := "http://kc/realms/"
	v := NewVerifier(t.Context(), Options{
		JWKSURL: func(string) string { return srv.URL }, Issuer: func(r string) string { return trusted + r },
		Audience: "communities", Algorithms: []string{"RS256"},
	})
	c := NewCachingVerifier(v, 10)
	start := time.Now()
	clock := start
	c.now = func() time.Time { return clock }
	long := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(24 * time.Hour).Unix() }))
	if _, err := c.Verify(t.Context(), "r1", long); err != nil {
		t.Fatal(err)
	}
	trusted = "http://elsewhere/realms/"
	clock = start.Add(MaxCacheAge - time.Second)
	if _, err := c.Verify(t.Context(), "r1", long); err != nil {
		t.Errorf("within MaxCacheAge the cached token was verified again: %v", err)
	}
	clock = start.Add(MaxCacheAge)
	if _, err := c.Verify(t.Context(), "r1", long); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("after MaxCacheAge the token was still answered from the cache: %v", err)
	}
}

// flakyJWKS serves k.rsa's JWKS (kid "k1") like jwksServer, but answers
// 503 while down is set, status instead while it is set, body instead
// while it is set, and each answer after delay; it counts the fetches.
type flakyJWKS struct {
	srv     *httptest.Server
	down    atomic.Bool
	body    atomic.Pointer[string]
	status  atomic.Int32
	delay   atomic.Int64
	fetches atomic.Int32
}

func newFlakyJWKS(t *testing.T, k keys) *flakyJWKS {
	t.Helper()
	good := jwksServer(t, k)
	f := &flakyJWKS{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		time.Sleep(time.Duration(f.delay.Load()))
		switch {
		case f.down.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		case f.status.Load() != 0:
			http.Error(w, "no", int(f.status.Load()))
			return
		case f.body.Load() != nil:
			_, _ = io.WriteString(w, *f.body.Load())
			return
		}
		resp, err := http.Get(good.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// verifierOf verifies tokens of any realm against jwks, fetching it again
// for an unknown kid at most every refetch (0: the default).
func verifierOf(t *testing.T, jwks *flakyJWKS, refetch time.Duration) *Verifier {
	return NewVerifier(t.Context(), Options{
		JWKSURL: func(string) string { return jwks.srv.URL }, Issuer: func(r string) string { return "http://kc/realms/" + r },
		Audience: "communities", Algorithms: []string{"RS256"}, UnknownKeyRefetch: refetch,
	})
}

// TestUnreachableKeysAreUnavailable: a token whose key the service does
// not have, while Keycloak's key set cannot be fetched, is refused as
// Unavailable (503: try again), not as invalid (401: throw it away); once
// the set can be fetched the token is judged on its merits. A token whose
// key is held is judged without Keycloak.
func TestUnreachableKeysAreUnavailable(t *testing.T) {
	k := newKeys(t)
	jwks := newFlakyJWKS(t, k)
	jwks.down.Store(true)
	v := verifierOf(t, jwks, 50*time.Millisecond)
	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	forgedKid := sign(t, jwt.SigningMethodRS256, k.other, "k9", validClaims())
	forgedKey := sign(t, jwt.SigningMethodRS256, k.other, "k1", validClaims())
	noKid := sign(t, jwt.SigningMethodRS256, k.rsa, "", validClaims())
	unavailable := func(what, tok string) {
		t.Helper()
		_, err := v.Verify(t.Context(), "r1", tok)
		if fault.KindOf(err) != fault.Unavailable || errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want unavailable", what, err)
		}
	}
	invalid := func(what, tok string) {
		t.Helper()
		if _, err := v.Verify(t.Context(), "r1", tok); !errors.Is(err, ErrInvalidToken) || fault.KindOf(err) != fault.Unauthenticated {
			t.Errorf("%s: %v, want invalid", what, err)
		}
	}

	// Keycloak down from the first verification on.
	unavailable("good token, key set never fetched", good)
	time.Sleep(60 * time.Millisecond) // past the refetch budget: this one fetches again, and fails
	unavailable("good token, refetch failed", good)
	invalid("a token naming no key is bad whatever Keycloak says", noKid)

	// Keycloak back: the next refetch the budget allows succeeds.
	jwks.down.Store(false)
	time.Sleep(60 * time.Millisecond)
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Fatalf("good token once the key set could be fetched: %v", err)
	}

	// Keycloak down again: a held key needs no fetch, a missing one does.
	jwks.down.Store(true)
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Errorf("good token, key held, Keycloak down: %v", err)
	}
	invalid("wrong key under a held kid", forgedKey)
	time.Sleep(60 * time.Millisecond)
	unavailable("unknown kid, Keycloak down", forgedKid)

	// With Keycloak answering, an unknown kid is simply invalid.
	jwks.down.Store(false)
	time.Sleep(60 * time.Millisecond)
	invalid("unknown kid, Keycloak up", forgedKid)
}

// TestKeysUnconfirmedTooLongAreNotTrusted: a key set Keycloak cannot be
// asked for is kept, so held keys verify through an outage; but only for
// MaxKeyAge after the last fetch that confirmed it. After that every token
// of the realm is Unavailable (503), since a key withdrawn meanwhile would
// still verify; once Keycloak answers, tokens are judged again.
func TestKeysUnconfirmedTooLongAreNotTrusted(t *testing.T) {
	k := newKeys(t)
	jwks := newFlakyJWKS(t, k)
	v := NewVerifier(t.Context(), Options{
		JWKSURL: func(string) string { return jwks.srv.URL }, Issuer: func(r string) string { return "http://kc/realms/" + r },
		Audience: "communities", Algorithms: []string{"RS256"}, UnknownKeyRefetch: 50 * time.Millisecond, MaxKeyAge: time.Second,
	})
	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	forgedKid := sign(t, jwt.SigningMethodRS256, k.other, "k9", validClaims())
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Fatal(err)
	}
	confirmed := time.Now()
	jwks.down.Store(true)
	time.Sleep(60 * time.Millisecond)
	// An unknown kid makes the set be fetched, which fails.
	if _, err := v.Verify(t.Context(), "r1", forgedKid); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("unknown kid, Keycloak down: %v", err)
	}
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Errorf("held key within MaxKeyAge, Keycloak down: %v", err)
	}
	time.Sleep(time.Until(confirmed.Add(1100 * time.Millisecond)))
	for range 3 {
		if _, err := v.Verify(t.Context(), "r1", good); fault.KindOf(err) != fault.Unavailable || errors.Is(err, ErrInvalidToken) {
			t.Errorf("held key past MaxKeyAge, Keycloak down: %v, want unavailable", err)
		}
	}
	// No request waits for Keycloak to be asked: one that does not answer
	// does not hold them.
	jwks.delay.Store(int64(time.Second))
	time.Sleep(60 * time.Millisecond) // past the refetch budget
	start := time.Now()
	if _, err := v.Verify(t.Context(), "r1", good); fault.KindOf(err) != fault.Unavailable || time.Since(start) > 500*time.Millisecond {
		t.Errorf("past MaxKeyAge, Keycloak slow: %v after %s, want unavailable at once", err, time.Since(start))
	}
	jwks.delay.Store(0)
	jwks.down.Store(false)
	// The next fetch, started by a request or in the background, ends it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(60 * time.Millisecond)
		_, err := v.Verify(t.Context(), "r1", good)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Keycloak back: %v", err)
		}
	}
}

// TestKeySetFetchesAreAlonePerRealm: the first verifications of one realm
// wait for one fetch of its key set, and no other realm waits for it.
func TestKeySetFetchesAreAlonePerRealm(t *testing.T) {
	k := newKeys(t)
	fast := newFlakyJWKS(t, k)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		http.Error(w, "late", http.StatusServiceUnavailable)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	v := NewVerifier(t.Context(), Options{
		JWKSURL: func(realm string) string {
			if realm == "slow" {
				return slow.URL
			}
			return fast.srv.URL
		},
		Issuer: func(r string) string { return "http://kc/realms/" + r }, Audience: "communities", Algorithms: []string{"RS256"},
		HTTPClient: &http.Client{Timeout: time.Minute},
	})
	slowTok := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["iss"] = "http://kc/realms/slow" }))
	go func() { _, _ = v.Verify(context.Background(), "slow", slowTok) }()
	<-entered

	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := v.Verify(t.Context(), "r1", good)
			errs <- err
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("realm r1's verifications waited for realm slow's key set")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("r1: %v", err)
		}
	}
	if n := fast.fetches.Load(); n != 1 {
		t.Errorf("10 first verifications of r1 fetched its key set %d times, want 1", n)
	}
}

// TestKeySetAnswersAreReadForWhatTheyAre: a slow Keycloak is waited for,
// and a caller that gives up does not make it look unreachable; a 404 (no
// such realm) refuses tokens as invalid; an answer that is not a key set
// is no answer.
func TestKeySetAnswersAreReadForWhatTheyAre(t *testing.T) {
	k := newKeys(t)
	jwks := newFlakyJWKS(t, k)
	v := verifierOf(t, jwks, 50*time.Millisecond)
	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	forgedKid := sign(t, jwt.SigningMethodRS256, k.other, "k9", validClaims())
	verify := func(timeout time.Duration, tok string) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		_, err := v.Verify(ctx, "r1", tok)
		return err
	}

	// Slow, but answering: the first caller that cannot wait is told to
	// try again; the fetch goes on without it, and then serves everyone.
	jwks.delay.Store(int64(1500 * time.Millisecond))
	if err := verify(100*time.Millisecond, good); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("first caller out of time: %v, want unavailable", err)
	}
	if err := verify(time.Minute, good); err != nil {
		t.Fatalf("good token, Keycloak slow: %v", err)
	}
	// A forged kid whose sender hangs up during the refetch leaves the
	// set reachable: the next forged kid is invalid, not unavailable.
	time.Sleep(60 * time.Millisecond)
	if err := verify(100*time.Millisecond, forgedKid); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("forged kid, sender gone: %v, want invalid", err)
	}
	time.Sleep(1600 * time.Millisecond) // the abandoned refetch ends
	if !v.keys["r1"].reachable.Load() {
		t.Error("a refetch whose caller hung up marked the key set unreachable")
	}
	if err := verify(time.Minute, forgedKid); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("forged kid after an abandoned refetch: %v, want invalid", err)
	}
	jwks.delay.Store(0)

	// No such realm in Keycloak: no keys, and tokens are invalid.
	jwks.status.Store(http.StatusNotFound)
	time.Sleep(60 * time.Millisecond)
	if err := verify(time.Minute, forgedKid); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("forged kid, realm unknown to Keycloak: %v, want invalid", err)
	}
	time.Sleep(60 * time.Millisecond)
	if err := verify(time.Minute, sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["sub"] = "u2" }))); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a new token once Keycloak has no keys for the realm: %v, want invalid", err)
	}
	jwks.status.Store(0)

	// An answer that is not a key set (a login page) is no answer.
	login := "<html>login</html>"
	jwks.body.Store(&login)
	time.Sleep(60 * time.Millisecond)
	if err := verify(time.Minute, forgedKid); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("forged kid, answer not a key set: %v, want unavailable", err)
	}
}

// TestKeySetIsKeptThroughAnswersThatAreNotOne: a proxy's 403 or a 200
// without "keys" keeps the keys held (their tokens verify) and makes
// missing ones unavailable; a shared-secret key in the set is skipped.
// Forged kids get one refetch per budget.
func TestKeySetIsKeptThroughAnswersThatAreNotOne(t *testing.T) {
	k := newKeys(t)
	jwks := newFlakyJWKS(t, k)
	v := verifierOf(t, jwks, time.Hour)
	good := sign(t, jwt.SigningMethodRS256, k.rsa, "k1", validClaims())
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Fatal(err)
	}
	old := func(kid string) string {
		return sign(t, jwt.SigningMethodRS256, k.other, kid, with(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Minute).Unix() }))
	}
	// The budget's one refetch, then none: a burst of forged kids fetches once.
	before := jwks.fetches.Load()
	for i := range 20 {
		if _, err := v.Verify(t.Context(), "r1", old(fmt.Sprint("forged", i))); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("forged kid %d: %v, want invalid", i, err)
		}
	}
	if n := jwks.fetches.Load() - before; n != 1 {
		t.Errorf("20 forged kids fetched the key set %d times, want 1", n)
	}

	for name, answer := range map[string]func(){
		"a proxy's 403":      func() { jwks.status.Store(http.StatusForbidden) },
		`a 200 without keys`: func() { empty := "{}"; jwks.body.Store(&empty) },
	} {
		answer()
		v := verifierOf(t, jwks, time.Hour)
		jwks.status.Store(0)
		jwks.body.Store(nil)
		if _, err := v.Verify(t.Context(), "r1", good); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		answer()
		v.keys["r1"].refetch(t.Context(), 0)
		if _, err := v.Verify(t.Context(), "r1", sign(t, jwt.SigningMethodRS256, k.rsa, "k1", with(func(c jwt.MapClaims) { c["sub"] = "u3" }))); err != nil {
			t.Errorf("%s: a held key stopped verifying: %v", name, err)
		}
		if _, err := v.Verify(t.Context(), "r1", old("k9")); fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s: a missing key: %v, want unavailable", name, err)
		}
		jwks.status.Store(0)
		jwks.body.Store(nil)
	}

	// A shared secret beside the realm's key does not spoil the set.
	n := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())
	withOct := fmt.Sprintf(`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"},{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":%q,"e":%q}]}`, n, e)
	jwks.body.Store(&withOct)
	v = verifierOf(t, jwks, 0)
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Errorf("a set with a shared secret: %v", err)
	}

	// Keys for encryption, or for anything but verifying, verify no
	// token, though jwkset would use them (it checks "use" only when told
	// to, and a key with no "alg" fits any).
	notForSigning := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"enc1","use":"enc","n":%[1]q,"e":%[2]q},
		{"kty":"RSA","kid":"ops1","key_ops":["encrypt"],"n":%[1]q,"e":%[2]q},
		{"kty":"RSA","kid":"k1","use":"sig","key_ops":["verify"],"n":%[1]q,"e":%[2]q}]}`, n, e)
	jwks.body.Store(&notForSigning)
	v = verifierOf(t, jwks, 0)
	for _, kid := range []string{"enc1", "ops1"} {
		if _, err := v.Verify(t.Context(), "r1", sign(t, jwt.SigningMethodRS256, k.rsa, kid, validClaims())); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a token naming key %s: %v, want invalid", kid, err)
		}
	}
	if _, err := v.Verify(t.Context(), "r1", good); err != nil {
		t.Errorf("the signing key beside them: %v", err)
	}
}

// otherSpelling sets an unused bit of the last character of tok's
// signature (an RS256 signature is 256 bytes: its last character carries 2
// bits and 4 unused), which a lenient decoder reads as the same bytes.
func otherSpelling(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[i^1])
}
