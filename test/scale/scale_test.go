// Package scale is the national-scale benchmark (issue 14): `make scale`
// brings up the stack, creates SCALE_N communities (default 10,000)
// through the real API with bounded concurrency, joins users to 10 and
// SCALE_M (default 100) of them, and prints one table of what it measured.
// It is not part of `make test`: without SCALE_N it skips.
package scale

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/config"
	"github.com/nhs-terminology/communities/internal/keycloak"
	"github.com/nhs-terminology/communities/internal/provision"
	"github.com/nhs-terminology/communities/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// row is one line of the result table.
type row struct{ what, value, target string }

type table []row

func (tb *table) add(what, target, format string, args ...any) {
	*tb = append(*tb, row{what, fmt.Sprintf(format, args...), target})
}

func (tb table) String() string {
	var b strings.Builder
	b.WriteString("| measure | value | target |\n| --- | --- | --- |\n")
	for _, r := range tb {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.what, r.value, r.target)
	}
	return b.String()
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// tokenStats asks Keycloak for a token of user n times and returns the
// median latency and the token's size.
func tokenStats(t *testing.T, realm *harness.Realm, user string, n int) (time.Duration, int) {
	t.Helper()
	var took []time.Duration
	size := 0
	for range n {
		start := time.Now()
		tok := realm.UserToken(t, user)
		took = append(took, time.Since(start))
		size = len(tok)
	}
	return pct(took, 0.5), size
}

// throughput runs conc workers sending req for d and returns requests/s and
// the 99th percentile latency; any answer but 200 fails the test.
func throughput(t *testing.T, d time.Duration, conc int, req func() (*http.Request, error)) (float64, time.Duration) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	var (
		n      atomic.Int64
		bad    atomic.Int64
		first  atomic.Value
		mu     sync.Mutex
		sample []time.Duration
		wg     sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(stop) {
				r, err := req()
				if err != nil {
					bad.Add(1)
					return
				}
				start := time.Now()
				resp, err := client.Do(r)
				switch {
				case err != nil:
					bad.Add(1)
					first.CompareAndSwap(nil, err.Error())
				case resp.StatusCode != 200:
					bad.Add(1)
					first.CompareAndSwap(nil, resp.Status)
				}
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mine = append(mine, time.Since(start))
				n.Add(1)
			}
			mu.Lock()
			sample = append(sample, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d requests failed; the first: %v", bad.Load(), n.Load(), first.Load())
	}
	return float64(n.Load()) / d.Seconds(), pct(sample, 0.99)
}

// rssKiB is this process's resident set (the service runs in it).
func rssKiB() int {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func TestScale(t *testing.T) {
	n := envInt("SCALE_N", -1)
	if n < 0 {
		t.Skip("the scale benchmark runs with `make scale` (SCALE_N=10000 by default)")
	}
	m, conc := envInt("SCALE_M", 100), envInt("SCALE_CONCURRENCY", 8)
	if m > n || 10 > n {
		t.Fatalf("SCALE_N=%d must be at least SCALE_M=%d and 10", n, m)
	}
	ctx := context.Background()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	cfg := env.Config(realm.Name)
	cfg.ReconcileInterval = 0 // the drift pass is measured on its own below
	// The deployed default, not the integration suite's shorter one: a
	// page of the drift check's bulk reads can take seconds.
	cfg.KeycloakTimeout = config.Default().KeycloakTimeout
	svc := env.StartService(t, cfg)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	var tb table
	started := time.Now()

	const samples = 25
	tok0, size0 := tokenStats(t, realm, "consumer", samples)
	// Users differ in their names and API-level roles: what a community
	// adds to a token is measured against the same user's token before it
	// joins any.
	_, size10Before := tokenStats(t, realm, "approver", 1)
	_, sizeMBefore := tokenStats(t, realm, "author", 1)

	// Create N communities, by blocks of N/10.
	block := max(n/10, 1)
	type blockStats struct {
		took  []time.Duration
		trips int64
	}
	label := func(i int) string { return fmt.Sprintf("S%05d", i) }
	sd := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	sdAt := time.Now()
	token := func() string { // service desk's tokens live 5 minutes
		if time.Since(sdAt) > 3*time.Minute {
			sd, sdAt = realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret), time.Now()
		}
		return sd
	}
	run := func(method string, from, to int) blockStats {
		var (
			st  blockStats
			mu  sync.Mutex
			wg  sync.WaitGroup
			idx atomic.Int64
		)
		tok := token()
		before := svc.KeycloakRoundTrips()
		idx.Store(int64(from))
		for range conc {
			wg.Go(func() {
				for {
					i := int(idx.Add(1)) - 1
					if i >= to {
						return
					}
					start := time.Now()
					var resp *harness.Response
					if method == http.MethodPost {
						resp = harness.Do(t, method, base, tok, map[string]string{"securityLabel": label(i), "communityName": "Scale " + label(i)})
					} else {
						resp = harness.Do(t, method, base+"/"+label(i), tok, nil)
					}
					took := time.Since(start)
					if resp.Status/100 != 2 {
						t.Errorf("%s %s: %d %s", method, label(i), resp.Status, resp.Body)
					}
					mu.Lock()
					st.took = append(st.took, took)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		st.trips = svc.KeycloakRoundTrips() - before
		return st
	}
	var creates []blockStats
	for from := 0; from < n; from += block {
		st := run(http.MethodPost, from, min(from+block, n))
		creates = append(creates, st)
		t.Logf("created %d: p50 %s, %.1f Keycloak calls each", min(from+block, n), ms(pct(st.took, .5)), float64(st.trips)/float64(len(st.took)))
	}
	for i, st := range creates {
		tb.add(fmt.Sprintf("create, communities %d–%d (p50 / p95, Keycloak calls each)", i*block, min((i+1)*block, n)), "≤ 8 calls; last block ≤ 1.2× first",
			"%s / %s, %.1f", ms(pct(st.took, .5)), ms(pct(st.took, .95)), float64(st.trips)/float64(len(st.took)))
	}

	// Memberships: approver in 10 communities (consumer), author in M
	// (author: read and write).
	admin := realm.AdminToken(t)
	join := func(user, member string, count int) {
		id := realm.UserID(t, user)
		for i := range count {
			g, err := realm.GC.GetGroupByPath(ctx, admin, realm.Name, "Communities/"+label(i)+"/"+member)
			if err != nil {
				t.Fatal(err)
			}
			if err := realm.GC.AddUserToGroup(ctx, admin, realm.Name, id, *g.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	join("approver", "consumer", 10)
	join("author", "author", m)

	tokN, sizeN := tokenStats(t, realm, "consumer", samples)
	tok10, size10 := tokenStats(t, realm, "approver", samples)
	tokM, sizeM := tokenStats(t, realm, "author", samples)
	tb.add("token endpoint, no memberships, at N = 0 → N (median of 25)", "at N ≤ 1.2× at 0", "%s → %s (%.2f×)", ms(tok0), ms(tokN), float64(tokN)/float64(tok0))
	tb.add("token size, no memberships", "", "%d B (%d B at N = 0)", sizeN, size0)
	tb.add("token size and endpoint, 10 memberships (consumer)", "", "%d B, %s; %d B before joining, %.1f B per community",
		size10, ms(tok10), size10Before, float64(size10-size10Before)/10)
	tb.add(fmt.Sprintf("token size and endpoint, %d memberships (author: read and write)", m), "< 8 KiB (8,192 B)", "%d B, %s; %d B before joining, %.1f B per community",
		sizeM, ms(tokM), sizeMBefore, float64(sizeM-sizeMBefore)/float64(m))

	// The list, as service desk sees it.
	var lists []time.Duration
	for range 30 {
		start := time.Now()
		harness.Do(t, "GET", base, token(), nil).Expect(t, 200)
		lists = append(lists, time.Since(start))
	}
	tb.add(fmt.Sprintf("list all %d (p50 / p99 of 30)", n), "", "%s / %s", ms(pct(lists, .5)), ms(pct(lists, .99)))

	// One drift pass over the realm.
	before := svc.KeycloakRoundTrips()
	start := time.Now()
	reports, ran, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false)
	if err != nil || !ran || reports[0].DriftCount() != 0 {
		t.Errorf("drift pass: ran %v, err %v, drift %v", ran, err, reports)
	}
	surveyTook := time.Since(start)
	tb.add("drift pass (time, Keycloak calls)", "≤ 60 s, ≤ 100 calls", "%s, %d", surveyTook.Round(time.Millisecond), svc.KeycloakRoundTrips()-before)

	// role:service-desk deleted by hand: Keycloak takes it out of every
	// community's aggregate. A check finds all N, and a repair makes it
	// again and puts it back into all N, in calls by the page.
	admin = realm.AdminToken(t)
	perms := realm.AdminPermissions(t, admin)
	var found []struct{ ID string }
	harness.Do(t, "GET", perms+"/policy?exact=true&name=role:service-desk", admin, nil).Expect(t, 200).JSON(t, &found)
	if len(found) != 1 {
		t.Fatalf("role:service-desk: %d found", len(found))
	}
	harness.Do(t, "DELETE", perms+"/policy/"+found[0].ID, admin, nil).Expect(t, 204)
	for _, repair := range []bool{false, true} {
		before, start := svc.KeycloakRoundTrips(), time.Now()
		reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, repair)
		if err != nil || len(reports) != 1 || len(reports[0].Drift) != n {
			t.Fatalf("drift pass (repair %v) without role:service-desk: %v; want the drift of all %d communities", repair, err, n)
		}
		what := map[bool]string{false: "check", true: "repair"}[repair]
		tb.add(fmt.Sprintf("drift pass, role:service-desk deleted by hand: %s (time, Keycloak calls)", what), "≤ 100 calls",
			"%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)
	}
	if reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false); err != nil || len(reports) != 1 || reports[0].DriftCount() != 0 {
		t.Fatalf("drift pass after the repair: %v, %+v", err, reports)
	}

	// The realm role community-owner deleted by hand and made again:
	// Keycloak takes it off every owner group. A check finds all N, and a
	// repair makes the realm-wide policy name the new role and maps it to
	// all N owner groups, in calls by the page. (The passes above outlast
	// an admin token.)
	admin = realm.AdminToken(t)
	gone, err := realm.GC.GetRealmRole(ctx, admin, realm.Name, keycloak.OwnerRole)
	if err != nil {
		t.Fatal(err)
	}
	if err := realm.GC.DeleteRealmRole(ctx, admin, realm.Name, keycloak.OwnerRole); err != nil {
		t.Fatal(err)
	}
	if _, err := realm.GC.CreateRealmRole(ctx, admin, realm.Name, gocloak.Role{Name: gone.Name, Description: gone.Description}); err != nil {
		t.Fatal(err)
	}
	for _, repair := range []bool{false, true} {
		before, start := svc.KeycloakRoundTrips(), time.Now()
		reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, repair)
		if err != nil || len(reports) != 1 || len(reports[0].Drift) != n {
			t.Fatalf("drift pass (repair %v) beside a new %s: %v; want the drift of all %d communities", repair, keycloak.OwnerRole, err, n)
		}
		what := map[bool]string{false: "check", true: "repair"}[repair]
		tb.add(fmt.Sprintf("drift pass, %s deleted and made again by hand: %s (time, Keycloak calls)", keycloak.OwnerRole, what), "≤ 100 calls",
			"%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)
	}
	if reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false); err != nil || len(reports) != 1 || reports[0].DriftCount() != 0 {
		t.Fatalf("drift pass after the repair: %v, %+v", err, reports)
	}

	// A pipeline's export of the realm, and the plan of that file, which
	// lists every community's members: both read members in bulk.
	pr := provision.New(svc.Server.Service(), community.Actor{ClientID: "communities-cli", Username: "scale"})
	before, start = svc.KeycloakRoundTrips(), time.Now()
	exported, warnings, err := pr.Export(ctx, realm.Name)
	if err != nil || len(warnings) > 0 {
		t.Fatal(warnings, err)
	}
	tb.add("export (time, Keycloak calls)", "", "%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)
	before, start = svc.KeycloakRoundTrips(), time.Now()
	plan, err := pr.Plan(ctx, exported, true)
	if err != nil || len(plan) != 0 {
		t.Errorf("plan of the export: %d changes, %v", len(plan), err)
	}
	tb.add("plan of the export, --prune (time, Keycloak calls)", "", "%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)

	// The realm's admin permissions switched off and community-owner
	// deleted and made again by hand: the plan names the realm's repair
	// once and every community's owner group, and apply repairs them
	// together (the realm once, the owner groups by the page), not with N
	// Ensures.
	admin = realm.AdminToken(t)
	harness.Do(t, "PUT", env.KeycloakURL+"/admin/realms/"+realm.Name, admin, map[string]any{"adminPermissionsEnabled": false}).Expect(t, 204)
	if err := realm.GC.DeleteRealmRole(ctx, admin, realm.Name, keycloak.OwnerRole); err != nil {
		t.Fatal(err)
	}
	if _, err := realm.GC.CreateRealmRole(ctx, admin, realm.Name, gocloak.Role{Name: gone.Name, Description: gone.Description}); err != nil {
		t.Fatal(err)
	}
	before, start = svc.KeycloakRoundTrips(), time.Now()
	if plan, err = pr.Plan(ctx, exported, false); err != nil || len(plan) != n+1 || plan[0].Kind != "repair-realm" ||
		slices.ContainsFunc(plan[1:], func(a provision.Action) bool { return a.Kind != "repair" }) {
		t.Fatalf("plan with admin permissions off and %s made again: %d changes, %v; want the realm's repair and %d communities'",
			keycloak.OwnerRole, len(plan), err, n)
	}
	tb.add(fmt.Sprintf("plan, admin permissions off and %s made again by hand (time, Keycloak calls)", keycloak.OwnerRole), "",
		"%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)
	before, start = svc.KeycloakRoundTrips(), time.Now()
	if err := pr.Apply(ctx, exported, plan, nil); err != nil {
		t.Fatalf("apply of %d repairs: %v", n+1, err)
	}
	tb.add(fmt.Sprintf("apply of those %d repairs (time, Keycloak calls)", n+1), "≤ 100 calls",
		"%s, %d", time.Since(start).Round(time.Millisecond), svc.KeycloakRoundTrips()-before)
	if reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false); err != nil || len(reports) != 1 || reports[0].DriftCount() != 0 {
		t.Fatalf("drift pass after apply: %v, %+v", err, reports)
	}

	// Creates and deletes while drift passes run back to back: none of
	// them is drift, and the creates are slowed by at most 20 %.
	k := min(max(n/10, 10), 300)
	alone := run(http.MethodPost, n, n+k)
	var (
		passes   int
		stop     = make(chan struct{})
		drifting sync.WaitGroup
	)
	drifting.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false)
			if err != nil || reports[0].DriftCount() != 0 {
				t.Errorf("drift pass during creates and deletes: %v, %+v", err, reports)
			}
			passes++
		}
	})
	during := run(http.MethodPost, n+k, n+2*k)
	run(http.MethodDelete, n, n+2*k)
	close(stop)
	drifting.Wait()
	tb.add(fmt.Sprintf("create p50 without → during drift passes (%d creates each; %d passes, no drift)", k, passes), "≤ 1.2×",
		"%s → %s (%.2f×)", ms(pct(alone.took, .5)), ms(pct(during.took, .5)), float64(pct(during.took, .5))/float64(pct(alone.took, .5)))

	// Creates while a repair pass mends what community-owner deleted and
	// made again by hand took from every owner group: the bulk mend's
	// writes, not only the survey's reads, must leave Keycloak to them.
	// The realm-wide policy that names the role is repaired first (until
	// then every create is refused: it would name a role that is gone).
	// The creates begin once the pass's survey is done (it takes about as
	// long as the clean pass above), and end with the pass, or after 3k.
	admin = realm.AdminToken(t)
	if err := realm.GC.DeleteRealmRole(ctx, admin, realm.Name, keycloak.OwnerRole); err != nil {
		t.Fatal(err)
	}
	if _, err := realm.GC.CreateRealmRole(ctx, admin, realm.Name, gocloak.Role{Name: gone.Name, Description: gone.Description}); err != nil {
		t.Fatal(err)
	}
	if r := svc.Server.Service().RepairMany(ctx, realm.Name, nil, community.Actor{ClientID: "communities-cli", Username: "scale"}); r.Err != nil || len(r.Realm) == 0 {
		t.Fatalf("the realm's repair beside a new %s: %+v; want its drift, repaired", keycloak.OwnerRole, r)
	}
	from := n + 2*k
	beside := run(http.MethodPost, from, from+k)
	from += k
	var (
		mending  []time.Duration
		mendMu   sync.Mutex
		made     atomic.Int64
		repaired = make(chan struct{})
		creating sync.WaitGroup
	)
	made.Store(int64(from))
	// A token of its own, fresh: service desk's live 5 minutes, and the
	// creates start when the survey is done.
	tok := realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	for range conc {
		creating.Go(func() {
			select {
			case <-repaired:
				return
			case <-time.After(surveyTook):
			}
			for {
				select {
				case <-repaired:
					return
				default:
				}
				i := int(made.Add(1)) - 1
				if i >= from+3*k {
					return
				}
				start := time.Now()
				resp := harness.Do(t, http.MethodPost, base, tok, map[string]string{"securityLabel": label(i), "communityName": "Scale " + label(i)})
				took := time.Since(start)
				if resp.Status != http.StatusCreated {
					t.Errorf("create %s during the repair: %d %s", label(i), resp.Status, resp.Body)
				}
				mendMu.Lock()
				mending = append(mending, took)
				mendMu.Unlock()
			}
		})
	}
	start = time.Now()
	reports, _, err = svc.Server.Service().Reconcile(ctx, []string{realm.Name}, true)
	passTook := time.Since(start)
	close(repaired)
	creating.Wait()
	if err != nil || len(reports[0].Drift) != n {
		t.Fatalf("repair beside a new %s during creates: %v; want the drift of all %d communities", keycloak.OwnerRole, err, n)
	}
	if len(mending) == 0 {
		t.Errorf("no create ran during the repair's mend: the pass took %s, its survey alone %s", passTook, surveyTook)
	}
	if reports, _, err := svc.Server.Service().Reconcile(ctx, []string{realm.Name}, false); err != nil || reports[0].DriftCount() != 0 {
		t.Fatalf("drift pass after the repair during creates: %v, %+v", err, reports)
	}
	tb.add(fmt.Sprintf("create p50 without → during a repair pass's mend of %s onto %d owner groups (%d creates, %d during the pass's %s)",
		keycloak.OwnerRole, n, k, len(mending), passTook.Round(time.Second)), "≤ 1.2×",
		"%s → %s (%.2f×)", ms(pct(beside.took, .5)), ms(pct(mending, .5)), float64(pct(mending, .5))/float64(pct(beside.took, .5)))
	run(http.MethodDelete, n+2*k, min(int(made.Load()), from+3*k))

	// Decisions against the service's own trivial handler, side by side.
	fhir := realm.ClientToken(t, "fhir-server", "fhir-server-secret")
	consumer := realm.UserToken(t, "approver")
	body := decisionBody(consumer, label(0))
	healthz, _ := throughput(t, 5*time.Second, 32, func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, svc.URL+"/healthz", nil)
	})
	// The floor: the same trivial handler sent exactly what a decision
	// sends (its headers and body, which Go's server reads and discards),
	// so what the request alone costs, before anything is decided.
	decisionRequest := func(method, url string) func() (*http.Request, error) {
		return func() (*http.Request, error) {
			r, err := http.NewRequest(method, url, bytes.NewReader(body))
			if err == nil {
				r.Header.Set("Authorization", "Bearer "+fhir)
				r.Header.Set("Content-Type", "application/json")
			}
			return r, err
		}
	}
	floor, _ := throughput(t, 5*time.Second, 32, decisionRequest(http.MethodGet, svc.URL+"/healthz"))
	decisions, p99 := throughput(t, 5*time.Second, 32, decisionRequest(http.MethodPost, svc.URL+"/realms/"+realm.Name+"/communities-authz/decision"))
	tb.add("decisions/s vs /healthz/s (32 connections, 5 s each; p99)", "≥ 0.8×", "%.0f vs %.0f (%.2f×); p99 %s", decisions, healthz, decisions/healthz, ms(p99))
	tb.add("/healthz/s sent the decision's request (headers and body), vs /healthz/s: no decision answers faster", "",
		"%.0f (%.2f×); the decision %.2f× of it", floor, floor/healthz, decisions/floor)
	tb.add("RSS of the process hosting the service", "", "%d MiB", rssKiB()>>10)

	// A delete at N against one in a realm of few, one at a time and
	// interleaved, so that both are timed at the same warmth. The blocks
	// below run from N down as time passes, and Keycloak's times fall
	// through a run whatever N does (creates' too, as N grows), so their
	// first and last rows do not tell N from time. N's side deletes
	// communities made for it beyond N.
	const pairs = 100 // the small realm holds as many as are timed
	small := env.NewRealm(t)
	smallCfg := env.Config(small.Name)
	smallCfg.ReconcileInterval, smallCfg.KeycloakTimeout = 0, cfg.KeycloakTimeout
	smallBase := env.StartService(t, smallCfg).URL + "/realms/" + small.Name + "/communities"
	smallSD := small.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	extra := func(i int) map[string]string {
		return map[string]string{"securityLabel": fmt.Sprintf("X%05d", i), "communityName": fmt.Sprintf("Extra %05d", i)}
	}
	for i := range pairs {
		harness.Do(t, "POST", smallBase, smallSD, extra(i)).Expect(t, 201)
		harness.Do(t, "POST", base, token(), extra(i)).Expect(t, 201)
	}
	var atN, atFew []time.Duration
	timed := func(url, tok string) time.Duration {
		start := time.Now()
		harness.Do(t, "DELETE", url, tok, nil).Expect(t, 204)
		return time.Since(start)
	}
	for i := range pairs {
		l := extra(i)["securityLabel"]
		atN = append(atN, timed(base+"/"+l, token()))
		atFew = append(atFew, timed(smallBase+"/"+l, smallSD))
	}
	tb.add(fmt.Sprintf("delete p50, one at a time, at N vs in a realm of %d (interleaved, %d each)", pairs, pairs), "at N ≤ 1.2×",
		"%s vs %s (%.2f×)", ms(pct(atN, .5)), ms(pct(atFew, .5)), float64(pct(atN, .5))/float64(pct(atFew, .5)))

	// Delete them all, by blocks.
	for i, from := 0, 0; from < n; i, from = i+1, from+block {
		st := run(http.MethodDelete, from, min(from+block, n))
		tb.add(fmt.Sprintf("delete, %d–%d remaining before (p50 / p95, Keycloak calls each)", n-from, n-min(from+block, n)), "≤ 8 calls",
			"%s / %s, %.1f", ms(pct(st.took, .5)), ms(pct(st.took, .95)), float64(st.trips)/float64(len(st.took)))
	}

	out := fmt.Sprintf("Scale run of %s: N = %d, M = %d, concurrency %d, %s\n\n%s", time.Now().Format("2006-01-02"), n, m, conc,
		time.Since(started).Round(time.Second), tb)
	t.Log("\n" + out)
	if path := os.Getenv("SCALE_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// decisionBody asks about a CodeSystem labelled with community l's read
// label, for the caller's token (as test/load/decision.sh does).
func decisionBody(token, l string) []byte {
	return fmt.Appendf(nil, `{"token":%q,"resourceType":"CodeSystem","interaction":"read","security":[{"system":"http://ontoserver.csiro.au/CodeSystem/ontoserver-permissions","code":"%s.read"}]}`, token, l)
}
