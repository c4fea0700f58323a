package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/test/harness"
)

// frontFixture is a realm and a service behind the front door make run
// uses, so that the admin console and the service share one origin and
// tokens name the front door as their issuer.
type frontFixture struct {
	*fixture
	front string // http://localhost:port
}

func newFrontFixture(t *testing.T, edit func(*config.Config)) *frontFixture {
	t.Helper()
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	port := harness.FreePort(t)
	front := fmt.Sprintf("http://localhost:%d", port)
	cfg := env.Config(realm.Name)
	cfg.IssuerBaseURL = front
	if edit != nil {
		edit(&cfg)
	}
	svc := env.StartService(t, cfg)
	harness.StartNginx(t, port, svc.URL, env.KeycloakURL, realm.Name)
	f := &fixture{env: env, realm: realm, svc: svc, base: front + "/realms/" + realm.Name + "/communities"}
	return &frontFixture{fixture: f, front: front}
}

// token gets a token through the front door, as the console and the seed's
// curl do.
func (f *frontFixture) token(t *testing.T, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(f.front+"/realms/"+f.realm.Name+"/protocol/openid-connect/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		t.Fatalf("token through the front door for %v: %v", form.Get("username")+form.Get("client_id"), err)
	}
	return out.AccessToken
}

func (f *frontFixture) userToken(t *testing.T, username string) string {
	return f.token(t, url.Values{"grant_type": {"password"}, "client_id": {"terminology-client"},
		"username": {username}, "password": {username + "-pass"}})
}

// browser runs one scenario of test/browser/communities.mjs against the
// front door and returns its JSON summary. Screenshots go to
// test/artifacts/browser/<test>/<scenario>-<user>/.
func (f *frontFixture) browser(t *testing.T, scenario, user string, extra ...string) map[string]any {
	t.Helper()
	dir := filepath.Join(harness.RepoDir(), "test", "browser")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatal("playwright-core is not installed: run deploy/local/deps.sh (make test does)")
	}
	shots := filepath.Join(harness.RepoDir(), "test", "artifacts", "browser", t.Name(), scenario+"-"+user)
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := append([]string{filepath.Join(dir, "communities.mjs"), "--scenario", scenario,
		"--keycloak", f.front, "--realm", f.realm.Name, "--username", user, "--password", user + "-pass",
		"--screenshot-dir", shots}, extra...)
	cmd := exec.CommandContext(ctx, "node", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("browser %s as %s:\n%s", scenario, user, stderr.String())
	if err != nil {
		t.Fatalf("browser scenario %s as %s failed: %v", scenario, user, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var summary map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil {
		t.Fatalf("browser summary %q: %v", out, err)
	}
	return summary
}

func serviceCalls(summary map[string]any) []string {
	var out []string
	for _, c := range summary["serviceCalls"].([]any) {
		out = append(out, c.(string))
	}
	return out
}

// isMemberOf reports whether username is a direct member of the group at path.
func isMemberOf(t *testing.T, r *harness.Realm, username, path string) bool {
	t.Helper()
	groups, err := r.GC.GetUserGroups(context.Background(), r.AdminToken(t), r.Name, r.UserID(t, username), gocloak.GetGroupsParams{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(groups, func(g *gocloak.Group) bool { return g.Path != nil && *g.Path == path })
}

// TestAdminConsoleCommunitiesPage: seed 000's "Log in to the Administration
// console. Click on Communities in the bar on the left. Enter your community
// name and security label. Click Save - you will get a success message pop
// up", in Debian's Chromium, through the front door, as the demo user
// creator (a community creator, not a realm administrator); then the
// page's own refusal, the owner and service desk parts of the page, each
// checked in Keycloak and the registry outside the browser, service desk
// appointing the owner of a community that has none, and an owner removing
// a member and then themselves through the page's confirmation.
func TestAdminConsoleCommunitiesPage(t *testing.T) {
	// Open, a default community, is made without owners (dormant).
	f := newFrontFixture(t, func(c *config.Config) { c.DefaultCommunities = []string{"Open=Open"} })
	sd := f.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"service-desk"}, "client_secret": {harness.ServiceDeskSecret}})
	harness.Eventually(t, time.Minute, "the default community Open", func() bool { return slices.Contains(labels(f.list(t, sd)), "Open") })
	// A community that exists already, made by author over REST.
	f.create(t, f.userToken(t, "author"), "TAKEN", "Taken already").Expect(t, 201)
	takenBefore := f.realm.Artefacts(t, "Communities", "TAKEN")

	// Creator: create PAGE on the page, then try the taken label.
	got := f.browser(t, "create", "creator", "--label", "PAGE", "--name", "Made on the page",
		"--taken-label", "TAKEN", "--taken-name", "Another name")
	if !strings.Contains(got["alert"].(string), "Community created") {
		t.Errorf("success alert %q", got["alert"])
	}
	if alert := got["takenAlert"].(string); !strings.Contains(alert, `a community labelled "TAKEN" already exists`) || !strings.Contains(alert, "(request id ") {
		t.Errorf("the taken label's alert does not carry the service's problem detail and request id: %q", alert)
	}
	calls := serviceCalls(got)
	if n := len(slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.Contains(c, "/communities-authz/access") })); n != 1 {
		t.Errorf("the page asked what the caller may do %d times, want once: %v", n, calls)
	}
	// Outside the browser: the community is whole in Keycloak, creator owns it.
	if art := f.realm.Artefacts(t, "Communities", "PAGE"); len(art) != 3 {
		t.Errorf("Keycloak holds %v for PAGE, want 2 roles and the group", art)
	}
	if !isMemberOf(t, f.realm, "creator", "/Communities/PAGE/owner") {
		t.Error("creator is not in PAGE's owner group")
	}
	if row := f.row(t, "PAGE"); row == nil || row.Name != "Made on the page" || row.CreatedByUsername != "creator" {
		t.Errorf("registry row of PAGE: %+v", row)
	}
	// The taken label changed nothing.
	if row := f.row(t, "TAKEN"); row == nil || row.Name != "Taken already" {
		t.Errorf("registry row of TAKEN after the refused create: %+v", row)
	}
	if after := f.realm.Artefacts(t, "Communities", "TAKEN"); !slices.Equal(after, takenBefore) {
		t.Errorf("TAKEN's artefacts changed: %v, were %v", after, takenBefore)
	}
	if isMemberOf(t, f.realm, "creator", "/Communities/TAKEN/owner") {
		t.Error("the refused create made creator an owner of TAKEN")
	}
	if l := labels(f.list(t, sd)); !slices.Equal(l, []string{"Open", "PAGE", "TAKEN"}) {
		t.Errorf("communities after the page: %v", l)
	}

	// Applicant (granted community-creator, which lets them into
	// Keycloak's console, but without API-level author access, so the
	// service gives them no Communities pages): no entry, and the page's
	// URL typed by hand explains, with no data and no form. (A user without
	// any admin role, consumer, is refused by Keycloak's console before the
	// page is drawn, which would test none of the page's own refusal.)
	got = f.browser(t, "no-access", "applicant")
	for _, k := range []string{"navEntry", "table", "form", "inputs"} {
		if got[k].(float64) != 0 {
			t.Errorf("applicant sees %s: %v", k, got[k])
		}
	}
	if got["explained"].(float64) != 1 || got["accessAnswered"].(float64) < 1 {
		t.Errorf("applicant's page: explained %v, access answered %v times; want the service asked and its refusal explained", got["explained"], got["accessAnswered"])
	}
	if len(got["listCalls"].([]any)) != 0 {
		t.Errorf("the page listed communities for applicant: %v", got["listCalls"])
	}
	if body := got["bodyText"].(string); strings.Contains(body, "PAGE") || strings.Contains(body, "TAKEN") {
		t.Errorf("applicant's page shows community data: %q", body)
	}

	// The owner (creator) adds consumer as author on the page, then opens
	// it by a URL typed in lower case (labels match ignoring case; the
	// page once said "not managed" there). The page's first question to
	// the service is refused with 401 in the browser, as for a token
	// revoked under it: the page asks again with a fresh token and goes on.
	got = f.browser(t, "add-member", "creator", "--label", "PAGE", "--typed-label", "page", "--user", "consumer", "--role", "author", "--mine", "--refuse-first-access")
	if !isMemberOf(t, f.realm, "consumer", "/Communities/PAGE/author") {
		t.Errorf("after the page said %q, consumer is not in PAGE's author group", got["alert"])
	}
	calls = serviceCalls(got)
	// Twice at least (a page opened a minute after the answer asks again).
	if n := len(slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.Contains(c, "/communities-authz/access") })); n < 2 || got["accessAnswered"].(float64) != float64(n-1) || got["retriedWithNewToken"] != true {
		t.Errorf("after a refused access call the page asked %d times (%v answered; with a new token: %v), want again with a new token: %v", n, got["accessAnswered"], got["retriedWithNewToken"], calls)
	}

	// Service desk deletes PAGE on the page: its artefacts and row are gone.
	f.browser(t, "delete", "servicedesk", "--label", "PAGE")
	if left := f.realm.Artefacts(t, "Communities", "PAGE"); len(left) != 0 {
		t.Errorf("after the delete Keycloak still holds %v", left)
	}
	if f.row(t, "PAGE") != nil {
		t.Error("after the delete the registry still holds PAGE")
	}
	if l := labels(f.list(t, sd)); !slices.Equal(l, []string{"Open", "TAKEN"}) {
		t.Errorf("communities after the delete: %v", l)
	}

	// Service desk creates a community on the page: it is dormant, and the
	// page does not call service desk its owner.
	f.browser(t, "create", "servicedesk", "--label", "DESKPAGE", "--name", "Made by service desk", "--caller-role", "none", "--dormant")
	if isMemberOf(t, f.realm, "servicedesk", "/Communities/DESKPAGE/owner") {
		t.Error("service desk became owner of what it made on the page")
	}

	// Service desk appoints an owner of the dormant Open on the page (the
	// page says it is dormant and offers owner first).
	f.browser(t, "add-member", "servicedesk", "--label", "Open", "--user", "author", "--role", "owner", "--dormant")
	if !isMemberOf(t, f.realm, "author", "/Communities/Open/owner") {
		t.Error("service desk's appointment did not make author an owner of Open")
	}

	// The new owner removes an author, then themselves (creator stays
	// owner: only service desk may remove the last one), each through a
	// confirmation (the second warns them), each with one call.
	harness.Do(t, "PUT", f.base+"/Open/author/consumer", sd, nil).Expect(t, 204)
	harness.Do(t, "PUT", f.base+"/Open/owner/creator", sd, nil).Expect(t, 204)
	got = f.browser(t, "remove-member", "author", "--label", "Open", "--user", "consumer", "--role", "author", "--and-self")
	if isMemberOf(t, f.realm, "consumer", "/Communities/Open/author") {
		t.Errorf("after the page said %q, consumer is still in Open's author group", got["alert"])
	}
	if isMemberOf(t, f.realm, "author", "/Communities/Open/owner") {
		t.Errorf("after the page said %q, author is still in Open's owner group", got["selfAlert"])
	}

	// Open's consumers run past a page (a national realm's users all are
	// one): the page lists the first 50 of each role, and the owner shows
	// more to find one, and removes them.
	var many []string
	for i := range 60 {
		many = append(many, fmt.Sprintf("page%03d", i))
	}
	f.realm.ImportUsers(t, []string{"/Communities/Open/consumer"}, many...)
	got = f.browser(t, "remove-member", "creator", "--label", "Open", "--user", "page059", "--role", "consumer", "--show-more")
	if isMemberOf(t, f.realm, "page059", "/Communities/Open/consumer") {
		t.Errorf("after the page said %q, page059 is still in Open's consumer group", got["alert"])
	}
	var pages []string
	for _, c := range serviceCalls(got) {
		if strings.Contains(c, "/Open/members") {
			pages = append(pages, c)
		}
	}
	// One more than it shows is asked for, to tell that there are more.
	if len(pages) < 2 || !strings.HasSuffix(pages[0], "/members?max=51") || !strings.HasSuffix(pages[1], "/members?max=51&first=50&role=consumer") {
		t.Errorf("the page's member lists were read as %v: want the first 50 of each role, then the next 50 consumers", pages)
	}
}
