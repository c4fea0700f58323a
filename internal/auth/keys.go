package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
)

// realmKeys is one realm's key set. It is fetched here rather than by
// keyfunc's own refresher, which cannot tell "Keycloak did not answer"
// from "no such key" and fetches on a request's context and its one
// second of rate-limit budget: a caller that hung up, or a Keycloak
// answering in over a second, would have made a good token look forged.
// keyfunc and jwkset still parse the keys and pick the token's key.
type realmKeys struct {
	ctx    context.Context // the verifier's: fetches end with it, not with a caller
	url    string
	client *http.Client
	log    *slog.Logger
	store  *jwkset.MemoryJWKSet
	kf     keyfunc.Keyfunc
	ready  chan struct{} // closed when the first fetch has ended

	// reachable: the last fetch ended with Keycloak's answer stored (a
	// key set, or none for a realm it does not know). While it is false
	// a token whose key is not held may be good.
	reachable atomic.Bool
	// confirmed is when a fetch last stored Keycloak's answer (Unix ns).
	confirmed atomic.Int64

	mu       sync.Mutex
	inflight chan struct{} // closed when the fetch under way ends
	// lastAsked is when a token naming a key the set lacks last made it
	// be fetched; the background fetches do not count.
	lastAsked time.Time
}

// keyRetry is how soon a key set that could not be fetched is tried again
// in the background.
const keyRetry = 5 * time.Second

// maxKeySetBytes bounds a key set's answer; Keycloak's is a few KB.
const maxKeySetBytes = 1 << 20

func newRealmKeys(ctx context.Context, url string, client *http.Client, log *slog.Logger) (*realmKeys, error) {
	store := jwkset.NewMemoryStorage()
	kf, err := keyfunc.New(keyfunc.Options{Storage: store})
	if err != nil {
		return nil, err
	}
	return &realmKeys{ctx: ctx, url: url, client: client, log: log, store: store, kf: kf, ready: make(chan struct{})}, nil
}

// run fetches the key set, then again every refresh while Keycloak
// answers and every keyRetry while it does not, until k.ctx ends.
func (k *realmKeys) run(refresh time.Duration) {
	k.refetch(k.ctx, 0)
	close(k.ready)
	for {
		wait := refresh
		if !k.reachable.Load() {
			wait = keyRetry
		}
		select {
		case <-k.ctx.Done():
			return
		case <-time.After(wait):
			k.refetch(k.ctx, 0)
		}
	}
}

// refetch fetches the key set, and waits for it (or for one under way)
// until ctx ends. With gap, it is a token's request, refused if another
// token's was made less than gap ago. The fetch runs on k.ctx, bounded by
// the HTTP client's timeout: a caller that goes away does not cut it
// short. It reports whether a fetch ended meanwhile.
func (k *realmKeys) refetch(ctx context.Context, gap time.Duration) bool {
	k.mu.Lock()
	done := k.inflight
	if done == nil {
		if gap > 0 {
			if time.Since(k.lastAsked) < gap {
				k.mu.Unlock()
				return false
			}
			k.lastAsked = time.Now()
		}
		done = make(chan struct{})
		k.inflight = done
		go func() {
			defer close(done)
			err := k.fetch(k.ctx)
			k.mu.Lock()
			k.inflight = nil
			k.mu.Unlock()
			if err != nil {
				k.log.WarnContext(k.ctx, "could not fetch a realm's key set; tokens whose key is not held get 503", "url", k.url, "error", err)
			}
		}()
	}
	k.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// fetch stores Keycloak's key set. A 404 is Keycloak saying the realm
// does not exist: that is stored as no keys, and tokens are refused as
// invalid. Anything else that is not a key set (no answer, another status,
// say a proxy's 403, a body without "keys") leaves the keys held as they
// were and marks the set unreachable.
func (k *realmKeys) fetch(ctx context.Context) error {
	keys, err := k.get(ctx)
	if err == nil {
		err = k.store.KeyReplaceAll(ctx, keys)
	}
	k.reachable.Store(err == nil)
	if err == nil {
		k.confirmed.Store(time.Now().UnixNano())
	}
	return err
}

// unconfirmedFor reports whether the set could not be fetched, and no
// fetch has confirmed it for longer than age. A set never fetched holds no
// keys to distrust: its tokens are not checked (errKeyNotChecked).
func (k *realmKeys) unconfirmedFor(age time.Duration) bool {
	c := k.confirmed.Load()
	return c != 0 && !k.reachable.Load() && time.Since(time.Unix(0, c)) > age
}

// nudge starts a fetch, unless one is under way or a token's was started
// less than gap ago, and does not wait for it.
func (k *realmKeys) nudge(gap time.Duration) {
	now, cancel := context.WithCancel(k.ctx)
	cancel()
	k.refetch(now, gap)
}

func (k *realmKeys) get(ctx context.Context) ([]jwkset.JWK, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		k.log.WarnContext(ctx, "Keycloak has no key set for the realm; its tokens are refused", "url", k.url)
		return []jwkset.JWK{}, nil
	default:
		return nil, fmt.Errorf("key set answered %s", resp.Status)
	}
	var set struct {
		Keys *[]jwkset.JWKMarshal `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxKeySetBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`key set: no "keys"`)
	}
	keys := make([]jwkset.JWK, 0, len(*set.Keys))
	for _, m := range *set.Keys {
		if m.KTY == jwkset.KtyOct {
			continue // a shared secret is no public key; HS* is refused anyway
		}
		if m.USE != "" && m.USE != jwkset.UseSig || len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
			continue // a key for encryption, or not for verifying, verifies nothing (RFC 7517, 4.2 and 4.3)
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		switch {
		case errors.Is(err, jwkset.ErrUnsupportedKey):
			continue // a kind of key jwkset cannot use signs nothing we accept
		case err != nil:
			return nil, fmt.Errorf("key set: key %q: %w", m.KID, err)
		}
		keys = append(keys, j)
	}
	return keys, nil
}
