// Package keycloak makes and removes the Keycloak artefacts of communities
// (groups, realm roles, client scopes and their mappings) through gocloak,
// and answers the membership questions the API asks.
package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Nerzal/gocloak/v13"
	"github.com/go-resty/resty/v2"
	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// Options configures a Client.
type Options struct {
	// BaseURL is Keycloak's base URL, e.g. http://localhost:8080.
	BaseURL      string
	ClientID     string
	ClientSecret string
	// AdminRealm is the realm of ClientID; empty means each managed realm
	// holds its own client with the same id and secret.
	AdminRealm string
	Timeout    time.Duration
	// Transport carries every request; nil means http.DefaultTransport.
	// Tests put a fault-injecting transport here.
	Transport http.RoundTripper
	// Observe, when set, is told of every round trip (metrics).
	Observe func(method string, status int, took time.Duration)
	// ReadOnly refuses, before it leaves the process, every request that
	// could change Keycloak (anything but GET and HEAD, except logging in),
	// and makes checks report what they would otherwise create or detach:
	// plan and export are read-only by construction, not by care.
	ReadOnly bool
	// ServiceDeskRole is the realm role of --service-desk-role, which the
	// realm-wide admin permissions name: service desk manages every
	// community's membership in the admin console.
	ServiceDeskRole string
}

// Client is a Keycloak admin API client for the realms the service manages.
type Client struct {
	gc   *gocloak.GoCloak
	opts Options

	roundTrips atomic.Int64

	mu          sync.Mutex
	tokens      map[string]cachedToken
	roots       map[string]string    // realm + "/" + root group name → id
	owners      map[string]string    // realm → id of its OwnerRole
	clients     map[string]string    // realm + "/" + clientId → id
	fgap        map[string]fgapEntry // realm → admin permissions API path
	fgapChecked map[string]time.Time // realm → when its realm-wide permissions were last found as the service's

	// now is the clock of the caches that expire; tests move it.
	now func() time.Time
}

type cachedToken struct {
	token   string
	expires time.Time
}

// requestIDKey carries the request id into outgoing calls.
type requestIDKey struct{}

// WithRequestID returns ctx carrying id, which Keycloak calls send as
// X-Request-ID so that both sides' logs can be joined.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// New builds a Client; it does not contact Keycloak.
func New(o Options) *Client {
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := &Client{
		gc:          gocloak.NewClient(strings.TrimRight(o.BaseURL, "/")),
		opts:        o,
		tokens:      map[string]cachedToken{},
		roots:       map[string]string{},
		owners:      map[string]string{},
		clients:     map[string]string{},
		fgap:        map[string]fgapEntry{},
		fgapChecked: map[string]time.Time{},
		now:         time.Now,
	}
	if o.ReadOnly {
		base = readOnlyTransport{base: base}
	}
	rc := resty.New().SetTransport(&countingTransport{base: base, c: c}).SetTimeout(o.Timeout).
		SetRetryCount(2).SetRetryWaitTime(200 * time.Millisecond).SetRetryMaxWaitTime(2 * time.Second).
		AddRetryCondition(retryable).SetLogger(quietLogger{})
	c.gc.SetRestyClient(rc)
	return c
}

// quietLogger silences resty's own logging: every failure comes back as an
// error, wrapped with context, and the service logs it once, in JSON.
type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}

// retryable retries, with backoff, calls that are safe to repeat (GET, PUT,
// DELETE, the extension's cleanup, which removes only what is there, and
// its read of members) when Keycloak did not answer or answered 5xx or
// 429. Any other POST is never repeated: Keycloak may have done it before
// the answer was lost.
func retryable(r *resty.Response, err error) bool {
	if r == nil || r.Request == nil {
		return false
	}
	switch r.Request.Method {
	case http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead:
	case http.MethodPost:
		if u, perr := url.Parse(r.Request.URL); perr != nil || !strings.HasSuffix(u.Path, cleanupPath) && !strings.HasSuffix(u.Path, membersPath) {
			return false
		}
	default:
		return false
	}
	if errors.Is(err, ErrReadOnly) {
		return false
	}
	return err != nil || r.StatusCode() >= 500 || r.StatusCode() == http.StatusTooManyRequests
}

// RoundTrips is the number of HTTP requests sent to Keycloak so far.
func (c *Client) RoundTrips() int64 { return c.roundTrips.Load() }

type countingTransport struct {
	base http.RoundTripper
	c    *Client
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.roundTrips.Add(1)
	if id, ok := r.Context().Value(requestIDKey{}).(string); ok && id != "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Request-ID", id)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	if resp != nil && resp.StatusCode == http.StatusUnauthorized {
		// Keycloak no longer takes the admin token (restarted with new
		// keys, the session ended): the next call logs in again instead
		// of failing until the cached token's renewal.
		t.c.dropToken(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}
	if t.c.opts.Observe != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.c.opts.Observe(r.Method, status, time.Since(start))
	}
	return resp, err
}

// readOnlyTransport lets through only requests that change nothing.
type readOnlyTransport struct{ base http.RoundTripper }

func (t readOnlyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// Logging in, and the extension's survey of a page of communities and
	// its read of many groups' members, which send their question as a body
	// because it is too long for a URL, are POSTs that change nothing.
	read := r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token") ||
		strings.HasSuffix(r.URL.Path, surveyPath) || strings.HasSuffix(r.URL.Path, membersPath))
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !read {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s %s", ErrReadOnly, r.Method, r.URL.Path)
	}
	return t.base.RoundTrip(r)
}

// Errors callers branch on.
var (
	// ErrReadOnly is a change refused by a read-only client, before it
	// left the process: a refusal, never retried, and no sign of an
	// outage (which would stop a drift pass).
	ErrReadOnly = fault.Sentinel(fault.Refused, "read-only: a change to Keycloak was refused")
	// ErrUnavailable wraps failures to reach Keycloak or 5xx answers.
	ErrUnavailable = fault.Sentinel(fault.Unavailable, "keycloak unavailable")
	// ErrNotFound is a 404 from Keycloak.
	ErrNotFound = fault.Sentinel(fault.NotFound, "not found in keycloak")
)

// ConflictError says an artefact a community needs already exists in
// Keycloak and is not this community's.
type ConflictError struct{ What string }

func (e *ConflictError) Error() string { return e.What + " already exists in Keycloak" }

// Is makes a clash a conflict in the service's vocabulary.
func (e *ConflictError) Is(target error) bool { return target == fault.Conflict }

// StatusError is an unexpected answer from Keycloak.
type StatusError struct {
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("keycloak: %s: HTTP %d %s", e.Op, e.Status, e.Body)
}

// Is makes a 4xx answer a refusal: Keycloak answered, and retrying the
// same request will not help.
func (e *StatusError) Is(target error) bool { return target == fault.Refused && e.Status < 500 }

// classify turns a gocloak or resty error into one of ours, with op as
// context.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var api *gocloak.APIError
	if errors.As(err, &api) {
		switch {
		// gocloak keeps only the text of what the transport refused.
		case api.Code == 0 && strings.Contains(api.Message, ErrReadOnly.Error()):
			return fmt.Errorf("%s: %w", op, ErrReadOnly)
		case api.Code == http.StatusNotFound:
			return fmt.Errorf("%s: %w", op, ErrNotFound)
		case api.Code == 0 || api.Code >= 500:
			return fmt.Errorf("%s: %w: %s", op, ErrUnavailable, api.Message)
		}
		return &StatusError{Op: op, Status: api.Code, Body: api.Message}
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

func statusOf(err error) int {
	var api *gocloak.APIError
	if errors.As(err, &api) {
		return api.Code
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// token returns a cached admin token valid for realm's admin API.
func (c *Client) token(ctx context.Context, realm string) (string, error) {
	authRealm := c.opts.AdminRealm
	if authRealm == "" {
		authRealm = realm
	}
	c.mu.Lock()
	t, ok := c.tokens[authRealm]
	c.mu.Unlock()
	if ok && time.Now().Before(t.expires) {
		return t.token, nil
	}
	jwt, err := c.gc.LoginClient(ctx, c.opts.ClientID, c.opts.ClientSecret, authRealm)
	switch {
	case err != nil && ctx.Err() != nil:
		// gocloak's error keeps the cause's text only: a caller that
		// went away (apply's pipeline cancelled) must be told apart from
		// Keycloak gone, and is answered as before.
		return "", fmt.Errorf("log in as %s to realm %s: %w: %w", c.opts.ClientID, authRealm, ErrUnavailable, ctx.Err())
	case err != nil:
		return "", classify("log in as "+c.opts.ClientID+" to realm "+authRealm, err)
	}
	// Renew well before expiry so a call never goes out on a token that
	// expires on its way. A read of many pages asks for the token before
	// each page: one token for all of them would expire half-way through
	// a large group's members or a realm's clients.
	life := time.Duration(jwt.ExpiresIn) * time.Second / 2
	c.mu.Lock()
	c.tokens[authRealm] = cachedToken{token: jwt.AccessToken, expires: time.Now().Add(life)}
	c.mu.Unlock()
	return jwt.AccessToken, nil
}

// dropToken forgets the cached admin token tok, if it is one.
func (c *Client) dropToken(tok string) {
	if tok == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for realm, t := range c.tokens {
		if t.token == tok {
			delete(c.tokens, realm)
		}
	}
}

// raw sends a request gocloak has no method for. out may be nil.
func (c *Client) raw(ctx context.Context, token, method, path string, body, out any) (*resty.Response, error) {
	req := c.gc.GetRequestWithBearerAuth(ctx, token)
	if body != nil {
		req.SetBody(body)
	}
	if out != nil {
		req.SetResult(out)
	}
	resp, err := req.Execute(method, strings.TrimRight(c.opts.BaseURL, "/")+"/admin/realms/"+path)
	switch {
	case errors.Is(err, ErrReadOnly):
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrReadOnly)
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w: %w", method, path, ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode() == http.StatusNotFound:
		return resp, fmt.Errorf("%s %s: %w", method, path, ErrNotFound)
	case resp.StatusCode() >= 500:
		return resp, fmt.Errorf("%s %s: %w: HTTP %d", method, path, ErrUnavailable, resp.StatusCode())
	case resp.IsError():
		return resp, &StatusError{Op: method + " " + path, Status: resp.StatusCode(), Body: truncate(resp.String(), 300)}
	}
	return resp, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func idFromLocation(resp *resty.Response) string {
	loc := resp.Header().Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

func pathEscape(realm string) string { return url.PathEscape(realm) }

// Ping checks that Keycloak answers for realm now, and that the service can
// log in to it (the admin token is cached, so the realm's public OpenID
// configuration is fetched as well).
func (c *Client) Ping(ctx context.Context, realm string) error {
	if _, err := c.token(ctx, realm); err != nil {
		return err
	}
	resp, err := c.gc.GetRequest(ctx).Get(strings.TrimRight(c.opts.BaseURL, "/") + "/realms/" + pathEscape(realm) + "/.well-known/openid-configuration")
	if err != nil {
		return fmt.Errorf("reach realm %s: %w: %w", realm, ErrUnavailable, err)
	}
	if resp.IsError() {
		return fmt.Errorf("reach realm %s: %w: HTTP %d", realm, ErrUnavailable, resp.StatusCode())
	}
	return nil
}

// ResolveUser finds a user of realm by id or, failing that, by exact
// username.
func (c *Client) ResolveUser(ctx context.Context, realm, ref string) (community.User, error) {
	tok, err := c.token(ctx, realm)
	if err != nil {
		return community.User{}, err
	}
	// Only a well-formed id goes into the admin URL's path; anything else
	// is looked up as a username, a query parameter the client encodes.
	if id, perr := uuid.Parse(ref); perr == nil && id.String() == strings.ToLower(ref) {
		u, err := c.gc.GetUserByID(ctx, tok, realm, id.String())
		if err == nil && u.ID != nil {
			return userOf(u), nil
		}
		if s := statusOf(err); err != nil && s != http.StatusNotFound {
			return community.User{}, classify("find user "+ref, err)
		}
	}
	exact := true
	users, err := c.gc.GetUsers(ctx, tok, realm, gocloak.GetUsersParams{Username: &ref, Exact: &exact})
	if err != nil {
		return community.User{}, classify("find user "+ref, err)
	}
	if len(users) != 1 || users[0].ID == nil {
		return community.User{}, fmt.Errorf("user %q: %w", ref, ErrNotFound)
	}
	return userOf(users[0]), nil
}

// serviceAccountOf returns the client whose service account username
// names, "" for any other name. Keycloak names a client's service account
// "service-account-" and the clientId (lower-cased, as every username),
// and keeps the name in step when the clientId changes
// (ClientManager.clientIdChanged). The user's representation does not say
// whose service account a user is (Keycloak 26.7 leaves
// serviceAccountClientId out), so the name tells: a person who registered
// such a name is taken for one too, which refuses a membership and never
// grants one.
func serviceAccountOf(username string) string {
	client, _ := strings.CutPrefix(username, "service-account-")
	if client == username {
		return ""
	}
	return client
}

// userOf converts at the edge.
func userOf(u *gocloak.User) community.User {
	return community.User{ID: *u.ID, ServiceAccountOf: serviceAccountOf(gocloak.PString(u.Username))}
}

// HeldRoles returns which of roles user userID holds now, directly or
// through a composite or a group: one call to the extension, whatever the
// number of communities (the admin API's effective role mappings test
// every realm role, two per community). A subject that is not a user id,
// or no user, holds nothing.
func (c *Client) HeldRoles(ctx context.Context, realm, userID string, roles []string) ([]string, error) {
	id, err := uuid.Parse(userID)
	if err != nil || id.String() != strings.ToLower(userID) || len(roles) == 0 {
		return nil, nil
	}
	var held []string
	if err := c.extensionGet(ctx, realm, heldPath, url.Values{"user": {id.String()}, "role": roles},
		"read the realm roles of user "+userID, &held); err != nil {
		return nil, err
	}
	// Only what was asked counts, whatever the answer holds.
	return slices.DeleteFunc(held, func(r string) bool { return !slices.Contains(roles, r) }), nil
}
