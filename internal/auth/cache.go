package auth

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// CachingVerifier remembers verified tokens until they expire, but for no
// longer than MaxCacheAge, in a bounded LRU, so that a decision point
// judging the same token many times verifies its signature once in that
// while. Refusals are not cached: a bad token costs a verification every
// time, which keeps the cache from being filled by garbage.
//
// MaxCacheAge bounds how long a token outlives the withdrawal of the key
// that signed it (Keycloak's answer to a leaked key), together with the key
// sets' refresh (KeyRefresh): a token with a long exp, forged with a leaked
// key, is not answered from the cache until the process restarts.
//
// The key is the realm and the token itself, compared in full: a hit is
// exactly the token that was verified. A digest as the key cost a SHA-256
// of the token on every request, most of a cached verification (989 ns
// against 86 now); keeping the token costs its size, about 2 KB, per entry.
type CachingVerifier struct {
	next  *Verifier
	cache *lru.Cache[tokenKey, cached]
	now   func() time.Time
}

// MaxCacheAge is the longest a verified token is answered from the cache.
const MaxCacheAge = 5 * time.Minute

type tokenKey struct{ realm, raw string }

// cached is a verified token's principal and when to verify it again.
type cached struct {
	p     *Principal
	until time.Time
}

// NewCachingVerifier wraps v with a cache of at most size tokens.
func NewCachingVerifier(v *Verifier, size int) *CachingVerifier {
	c, err := lru.New[tokenKey, cached](size)
	if err != nil {
		panic(err) // only for size <= 0, a programming error
	}
	return &CachingVerifier{next: v, cache: c, now: time.Now}
}

// Verify returns the cached principal of a token verified less than
// MaxCacheAge ago and not yet expired, else verifies it.
func (c *CachingVerifier) Verify(ctx context.Context, realm, raw string) (*Principal, error) {
	key := tokenKey{realm, raw}
	now := c.now()
	if e, ok := c.cache.Get(key); ok {
		if now.Before(e.until) {
			return e.p, nil
		}
		c.cache.Remove(key)
	}
	p, err := c.next.Verify(ctx, realm, raw)
	if err != nil {
		return nil, err
	}
	until := now.Add(MaxCacheAge)
	if p.Expires.Before(until) {
		until = p.Expires
	}
	c.cache.Add(key, cached{p, until})
	return p, nil
}
