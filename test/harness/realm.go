package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/registry"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/server"
)

// Secrets of the demo realm's confidential clients (realm-export/README.md).
const (
	ServiceSecret     = "communities-service-secret"
	ServiceDeskSecret = "service-desk-secret"
)

// Realm is a fresh copy of the demo realm, deleted when the test ends.
type Realm struct {
	Name string
	env  *Env
	GC   *gocloak.GoCloak
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// NewRealm imports realm-export/terminology-realm.json under a unique name.
func (e *Env) NewRealm(t testing.TB) *Realm {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	short := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(short) > 30 {
		short = short[:30]
	}
	name := "t-" + strings.Trim(short, "-") + "-" + hex.EncodeToString(b[:])
	raw, err := os.ReadFile(filepath.Join(RepoDir(), "realm-export", "terminology-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("default-roles-terminology"), []byte("default-roles-"+name))
	// The admin console's client names its realm in its URLs.
	raw = bytes.ReplaceAll(raw, []byte("/admin/terminology/"), []byte("/admin/"+name+"/"))
	var rep map[string]any
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	rep["realm"] = name
	r := &Realm{Name: name, env: e, GC: gocloak.NewClient(e.KeycloakURL)}
	// A stuck server fails the test instead of hanging the suite.
	r.GC.RestyClient().SetTimeout(time.Minute)
	ctx := context.Background()
	tok := r.AdminToken(t)
	body, _ := json.Marshal(rep)
	resp, err := r.GC.GetRequestWithBearerAuth(ctx, tok).SetBody(body).Post(e.KeycloakURL + "/admin/realms")
	if err != nil || resp.StatusCode() != http.StatusCreated {
		t.Fatalf("import realm %s: %v %s", name, err, resp.String())
	}
	t.Cleanup(func() {
		if os.Getenv("KEEP_REALMS") != "" {
			return
		}
		if err := r.GC.DeleteRealm(context.Background(), r.AdminToken(t), name); err != nil {
			t.Logf("delete realm %s: %v", name, err)
		}
	})
	return r
}

// AdminToken is a master-realm admin token, for asserting on Keycloak
// directly (never given to the service).
func (r *Realm) AdminToken(t testing.TB) string {
	t.Helper()
	jwt, err := r.GC.LoginAdmin(context.Background(), r.env.AdminUser, r.env.AdminPassword, "master")
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	return jwt.AccessToken
}

// UserToken gets a demo user's access token by password grant through the
// FHIR-facing public client, as a person's client would.
func (r *Realm) UserToken(t testing.TB, username string) string {
	t.Helper()
	return r.PasswordToken(t, "terminology-client", username)
}

// PasswordToken gets username's access token through public client
// clientID (a demo password is <username>-pass).
func (r *Realm) PasswordToken(t testing.TB, clientID, username string) string {
	t.Helper()
	return r.token(t, url.Values{
		"grant_type": {"password"}, "client_id": {clientID},
		"username": {username}, "password": {username + "-pass"},
	})
}

// ClientToken gets an access token by client credentials, as the seed's
// first curl command does.
func (r *Realm) ClientToken(t testing.TB, clientID, secret string) string {
	t.Helper()
	return r.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}})
}

func (r *Realm) token(t testing.TB, form url.Values) string {
	t.Helper()
	tok, err := r.TryToken(form)
	if err != nil {
		t.Fatalf("token for %v: %v%s", form.Get("username")+form.Get("client_id"), err, r.whyRefused(form.Get("username")))
	}
	return tok
}

// whyRefused gathers what Keycloak knows of a refused login that should
// have worked: its answer says "Invalid user credentials" whether the
// password was wrong, the user unknown or the user locked out, and a test
// that fails once in CI must say which.
func (r *Realm) whyRefused(username string) string {
	var out strings.Builder
	if path := os.Getenv("KEYCLOAK_LOG"); path != "" {
		if raw, err := os.ReadFile(path); err == nil {
			last := ""
			for _, line := range strings.Split(string(raw), "\n") {
				if strings.Contains(line, `realmName="`+r.Name+`"`) && strings.Contains(line, `_ERROR"`) {
					last = line
				}
			}
			fmt.Fprintf(&out, "\n\tKeycloak's last error event in the realm: %s", last)
		}
	}
	if username == "" {
		return out.String()
	}
	ctx := context.Background()
	admin, err := r.GC.LoginAdmin(ctx, r.env.AdminUser, r.env.AdminPassword, "master")
	if err != nil {
		return out.String()
	}
	exact := true
	users, err := r.GC.GetUsers(ctx, admin.AccessToken, r.Name, gocloak.GetUsersParams{Username: &username, Exact: &exact})
	if err != nil || len(users) != 1 {
		fmt.Fprintf(&out, "\n\tthe user: %v (%d found)", err, len(users))
		return out.String()
	}
	fmt.Fprintf(&out, "\n\tthe user: enabled %v, required actions %v", gocloak.PBool(users[0].Enabled), gocloak.PStringSlice(users[0].RequiredActions))
	resp, err := r.GC.GetRequestWithBearerAuth(ctx, admin.AccessToken).
		Get(r.env.KeycloakURL + "/admin/realms/" + r.Name + "/attack-detection/brute-force/users/" + *users[0].ID)
	if err == nil {
		fmt.Fprintf(&out, "\n\tbrute-force detection: %s", resp.String())
	}
	return out.String()
}

// TryToken asks the realm's token endpoint for an access token with form,
// for tests that expect a refusal.
func (r *Realm) TryToken(form url.Values) (string, error) {
	resp, err := httpClient.PostForm(r.TokenURL(), form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", err
	}
	if out.AccessToken == "" {
		return "", fmt.Errorf("no token: %s", out.Error)
	}
	return out.AccessToken, nil
}

// TokenURL is the realm's token endpoint.
func (r *Realm) TokenURL() string {
	return r.env.KeycloakURL + "/realms/" + r.Name + "/protocol/openid-connect/token"
}

// UserID returns the id of a user of the realm.
func (r *Realm) UserID(t testing.TB, username string) string {
	t.Helper()
	exact := true
	users, err := r.GC.GetUsers(context.Background(), r.AdminToken(t), r.Name, gocloak.GetUsersParams{Username: &username, Exact: &exact})
	if err != nil || len(users) != 1 {
		t.Fatalf("find user %s: %v (%d found)", username, err, len(users))
	}
	return *users[0].ID
}

// ImportUsers makes users, each in groups (by path), in one call to
// Keycloak's partial import: many members without a call each.
func (r *Realm) ImportUsers(t testing.TB, groups []string, usernames ...string) {
	t.Helper()
	users := make([]map[string]any, 0, len(usernames))
	for _, u := range usernames {
		users = append(users, map[string]any{"username": u, "enabled": true, "groups": groups})
	}
	body, _ := json.Marshal(map[string]any{"ifResourceExists": "FAIL", "users": users})
	resp, err := r.GC.GetRequestWithBearerAuth(context.Background(), r.AdminToken(t)).SetBody(body).
		Post(r.env.KeycloakURL + "/admin/realms/" + r.Name + "/partialImport")
	if err != nil || resp.StatusCode() != http.StatusOK {
		t.Fatalf("import %d users into %s: %v %s", len(usernames), r.Name, err, resp.String())
	}
}

// httpClient bounds every request a test makes, so a stuck server fails the
// test instead of hanging the suite.
var httpClient = &http.Client{Timeout: time.Minute}

// Service is the communities service running in-process on a test server.
type Service struct {
	URL    string
	Server *server.Server
	Config config.Config
	// Store is the registry the service uses, opened for the test.
	Store *registry.Store
	trips *countingTransport
}

// KeycloakRoundTrips counts the requests the service sent to Keycloak.
func (s *Service) KeycloakRoundTrips() int64 { return s.trips.n.Load() }

// AuditTrail is the audit trail of label in realm, oldest first.
func (s *Service) AuditTrail(t testing.TB, realm, label string) []community.AuditEvent {
	t.Helper()
	var rows []struct {
		At                                     time.Time
		Realm, Action, Label, Name             string
		ActorSub, ActorClient, ActorUsername   string
		Outcome, Detail, RequestID, ClaimsJSON string
	}
	if err := s.Store.DB().Raw(`SELECT at, realm, action, label, name, actor_sub, actor_client, actor_username,
		outcome, detail, request_id, claims::text AS claims_json FROM audit_events
		WHERE realm = ? AND lower(label) = lower(?) ORDER BY id`, realm, label).Scan(&rows).Error; err != nil {
		t.Fatalf("audit trail of %s: %v", label, err)
	}
	out := make([]community.AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = community.AuditEvent{At: r.At, Realm: r.Realm, Action: r.Action, Label: r.Label, Name: r.Name,
			ActorSub: r.ActorSub, ActorClient: r.ActorClient, ActorUsername: r.ActorUsername, Outcome: r.Outcome,
			Detail: r.Detail, RequestID: r.RequestID}
		if err := json.Unmarshal([]byte(r.ClaimsJSON), &out[i].Claims); err != nil {
			t.Fatalf("audit claims %q: %v", r.ClaimsJSON, err)
		}
	}
	return out
}

// countingTransport counts round trips on their way to base.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Config returns a service configuration for realms against the harness's
// servers, with a short lease so recovery tests need not wait minutes.
func (e *Env) Config(realms ...string) config.Config {
	cfg := config.Default()
	cfg.DatabaseURL = e.DatabaseURL
	cfg.KeycloakURL = e.KeycloakURL
	cfg.Realms = realms
	cfg.AdminClientSecret = ServiceSecret
	cfg.OperationLease = 20 * time.Second
	cfg.KeycloakTimeout = 5 * time.Second
	// No load balancer to wait for (TestGracefulShutdownDrainsInFlightRequests
	// sets one).
	cfg.ShutdownDelay = 0
	// Tests that want the default communities ask for them.
	cfg.DefaultCommunities = nil
	// Tests act as people through the FHIR-facing client, which the
	// default --change-clients leaves read-only (TestChangeClients).
	cfg.ChangeClients = append(cfg.ChangeClients, "terminology-client")
	return cfg
}

// StartService runs the service for cfg until the test ends.
func (e *Env) StartService(t testing.TB, cfg config.Config) *Service {
	t.Helper()
	return e.StartServiceVia(t, cfg, nil)
}

// StartServiceVia runs the service for cfg with its Keycloak admin calls
// sent through rt (nil: directly), until the test ends.
func (e *Env) StartServiceVia(t testing.TB, cfg config.Config, rt http.RoundTripper) *Service {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(LogWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Listen = "127.0.0.1:0"
	trips := &countingTransport{base: rt}
	srv, err := server.New(context.Background(), cfg, log, server.WithKeycloakTransport(trips))
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	db, err := registry.Open(context.Background(), cfg.DatabaseURL, false)
	if err != nil {
		t.Fatalf("open the service's registry: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	// Run, not httptest: the real server's limits and timeouts apply.
	ctx, stop := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, func(a string) { addr <- a }) }()
	var u string
	select {
	case a := <-addr:
		u = "http://" + a
	case err := <-ran:
		t.Fatalf("service stopped: %v", err)
	}
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("service shutdown: %v", err)
		}
		srv.Close()
	})
	return &Service{URL: u, Server: srv, Config: cfg, Store: registry.New(db), trips: trips}
}

// LogWriter sends a service's log lines to the test's log.
func LogWriter(t testing.TB) io.Writer { return testWriter{t} }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Do sends one request. body may be nil, a string (sent as is) or any
// value (sent as JSON).
func Do(t testing.TB, method, u, token string, body any) *Response {
	t.Helper()
	return DoWith(t, method, u, token, body, nil)
}

// DoWith is Do with headers of its own (they win over Do's).
func DoWith(t testing.TB, method, u, token string, body any, header http.Header) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// Expect fails the test unless r has status want.
func (r *Response) Expect(t testing.TB, want int) *Response {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body: %s", r.Status, want, r.Body)
	}
	return r
}

// String is for failure messages.
func (r *Response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// AdminPermissions is the admin API path of the realm's admin permissions
// (its admin-permissions client's resource server), read with admin.
func (r *Realm) AdminPermissions(t testing.TB, admin string) string {
	t.Helper()
	realmURL := r.env.KeycloakURL + "/admin/realms/" + r.Name
	var realm struct {
		Client struct {
			ID string `json:"id"`
		} `json:"adminPermissionsClient"`
	}
	Do(t, "GET", realmURL, admin, nil).Expect(t, 200).JSON(t, &realm)
	return realmURL + "/clients/" + realm.Client.ID + "/authz/resource-server"
}
