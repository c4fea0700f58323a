package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// TestMendSharedPagesAndReturnsWhatWasMended: MendShared asks the
// extension to put role:service-desk back into 500 communities' aggregates
// a call, each as the survey found it (naming its owners' policy alone),
// and community-owner back onto 250 owner groups a call, each with its
// community's marker; each only for the communities whose shared drift
// names it. It returns, by community, what the extension says it changed;
// it mends nothing while a realm-wide policy says something else now; a
// read-only client may not.
func TestMendSharedPagesAndReturnsWhatWasMended(t *testing.T) {
	type linkBody struct {
		Policy     string          `json:"policy"`
		Aggregates []linkAggregate `json:"aggregates"`
	}
	type grantBody struct {
		Role, Root, Attribute string
		Groups                []markedGroup
	}
	var (
		mu        sync.Mutex
		links     []linkBody
		grants    []grantBody
		deskRoles = `["service-desk"]`
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			fmt.Fprint(w, storedRealmPolicies(deskRoles))
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+linkPath:
			var b linkBody
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
				t.Error(err)
			}
			links = append(links, b)
			// Every one but L0007's, which changed since the survey.
			var linked []string
			for _, a := range b.Aggregates {
				if a.Name != "community:L0007:membership-admins" {
					linked = append(linked, a.Name)
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"linked": linked})
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+grantPath:
			var b grantBody
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
				t.Error(err)
			}
			grants = append(grants, b)
			// Every one but L0900's, deleted since the survey.
			var granted []string
			for _, g := range b.Groups {
				if g.Path != "/Communities/L0900/owner" {
					granted = append(granted, g.Path)
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"granted": granted})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	// L0000–L0599 unlinked, L0400–L1000 without community-owner: 600
	// aggregates, two pages, and 601 owner groups, three.
	aggregate := func(s community.Spec) string { return "admin permission community:" + s.Label + ":membership-admins" }
	owners := func(s community.Spec) string {
		return "role mapping /Communities/" + s.Label + "/owner → community-owner"
	}
	var shared []community.SharedDrift
	want := map[string][]string{}
	for i := range 1001 {
		s := community.Spec{ID: fmt.Sprint("id-", i), Realm: "r", Root: "Communities", Label: fmt.Sprintf("L%04d", i), Name: "n"}
		sd := community.SharedDrift{Spec: s}
		if i < 600 {
			sd.Drift = append(sd.Drift, community.Drift{What: aggregate(s), Problem: "changed"})
			if i != 7 {
				want[s.ID] = append(want[s.ID], aggregate(s))
			}
		}
		if i >= 400 {
			sd.Drift = append(sd.Drift, community.Drift{What: owners(s), Problem: problemMissing})
			if i != 900 {
				want[s.ID] = append(want[s.ID], owners(s))
			}
		}
		shared = append(shared, sd)
	}
	opts := Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"}
	mended, err := New(opts).MendShared(context.Background(), "r", "Communities", shared)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || len(links[0].Aggregates) != surveyPageSize || len(links[1].Aggregates) != 100 {
		t.Fatalf("%d link calls, want 2, of 500 and 100 aggregates", len(links))
	}
	if len(grants) != 3 || len(grants[0].Groups) != grantPageSize || len(grants[1].Groups) != grantPageSize || len(grants[2].Groups) != 101 {
		t.Fatalf("%d grant calls, want 3, of 250, 250 and 101 groups", len(grants))
	}
	i := 0
	for _, c := range links {
		if c.Policy != policyServiceDesk {
			t.Errorf("adds %q, want %s", c.Policy, policyServiceDesk)
		}
		for _, a := range c.Aggregates {
			s := shared[i].Spec
			want := linkAggregate{Name: "community:" + s.Label + ":membership-admins", Description: markerDescription(s.ID),
				DecisionStrategy: "AFFIRMATIVE", Policies: []string{"community:" + s.Label + ":owners"}}
			if !slices.Equal(a.Policies, want.Policies) || a.Name != want.Name || a.Description != want.Description ||
				a.DecisionStrategy != want.DecisionStrategy {
				t.Errorf("aggregate %d: %+v, want %+v", i, a, want)
			}
			i++
		}
	}
	i = 400
	for _, c := range grants {
		if c.Role != OwnerRole || c.Root != "Communities" || c.Attribute != MarkerAttribute {
			t.Errorf("grants %q under %q by %q, want %s under Communities by %s", c.Role, c.Root, c.Attribute, OwnerRole, MarkerAttribute)
		}
		for _, g := range c.Groups {
			s := shared[i].Spec
			if want := (markedGroup{Path: "/Communities/" + s.Label + "/owner", Marker: s.ID}); g != want {
				t.Errorf("group %d: %+v, want %+v", i, g, want)
			}
			i++
		}
	}
	if len(mended) != len(want) {
		t.Errorf("mended %d communities, want %d", len(mended), len(want))
	}
	for id, w := range want {
		if !slices.Equal(mended[id], w) {
			t.Errorf("%s: mended %v, want %v", id, mended[id], w)
		}
	}

	// Changed since the survey read it: nothing is mended.
	calls := func(roles string) int {
		mu.Lock()
		defer mu.Unlock()
		deskRoles = roles
		return len(links) + len(grants)
	}
	calls(`["default-roles-r"]`)
	if got, err := New(opts).MendShared(context.Background(), "r", "Communities", shared); !errors.Is(err, fault.Conflict) || len(got) != 0 ||
		calls(`["service-desk"]`) != 5 {
		t.Errorf("beside a changed role:service-desk: %d mended, %v; want none, a conflict, no call", len(got), err)
	}

	opts.ReadOnly = true
	if _, err := New(opts).MendShared(context.Background(), "r", "Communities", shared[:1]); !errors.Is(err, ErrReadOnly) {
		t.Errorf("a read-only client's mend: %v, want ErrReadOnly", err)
	}
	if calls(`["service-desk"]`) != 5 {
		t.Errorf("a call reached the extension")
	}
}

// TestMendSharedRestsBetweenPages: each page of the bulk mend is one
// transaction of hundreds of writes in Keycloak, and MendShared waits
// surveyRest times as long as a page took before it sends the next, as the
// survey does between its reads, so that a mend does not hold one of
// Keycloak's workers from concurrent creates. (Timers wait at least as
// long as asked: the lower bound cannot be flaky.) A mend of 10,000 then
// takes minutes, past an admin token's life: each page asks for the token
// anew. A mend whose context ends while a page is under way finishes that
// page, reports what it changed, and sends no further page.
func TestMendSharedRestsBetweenPages(t *testing.T) {
	const took = 50 * time.Millisecond
	var (
		mu     sync.Mutex
		logins int
		calls  []grantCall
		cancel = func() {}
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
			// A token that lives no time: the client asks again each time
			// it needs one.
			logins++
			fmt.Fprintf(w, `{"access_token":"t%d","expires_in":0}`, logins)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			fmt.Fprint(w, storedRealmPolicies(`["service-desk"]`))
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+grantPath:
			start := time.Now()
			time.Sleep(took)
			calls = append(calls, grantCall{start, time.Now(), r.Header.Get("Authorization")})
			cancel() // the caller goes away while this page is under way
			grantAll(t, w, r)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	grants := func() []grantCall {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(calls)
		calls = nil
		return out
	}
	shared := ownersLacking(2*grantPageSize + 1)
	opts := Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"}
	mended, err := New(opts).MendShared(context.Background(), "r", "Communities", shared)
	if err != nil || len(mended) != len(shared) {
		t.Fatalf("mended %d of %d: %v", len(mended), len(shared), err)
	}
	got := grants()
	if len(got) != 3 {
		t.Fatalf("%d grant calls, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if gap := got[i].start.Sub(got[i-1].end); gap < surveyRest*took {
			t.Errorf("page %d sent %s after page %d was answered, want at least %s", i+1, gap, i, surveyRest*took)
		}
		if got[i].token == got[i-1].token {
			t.Errorf("pages %d and %d sent with the same token %q, want one asked for anew", i, i+1, got[i].token)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	mu.Lock()
	cancel = stop
	mu.Unlock()
	mended, err = New(opts).MendShared(ctx, "r", "Communities", shared)
	if got := grants(); !errors.Is(err, context.Canceled) || len(got) != 1 || len(mended) != grantPageSize {
		t.Errorf("cancelled during the first page: %d calls, %d mended, %v; want the first page's %d and the context's error",
			len(got), len(mended), err, grantPageSize)
	}
}

// grantCall is one POST roles/grant as the Keycloak of a test saw it.
type grantCall struct {
	start, end time.Time
	token      string
}

// TestMendSharedCancelledWhileItLogsIn: a pipeline cancelled while the
// mend asks for a page's token is the pipeline's end, not Keycloak gone:
// gocloak keeps only the cause's text, and the communities of the pages not
// sent were reported as failed by the bulk mend rather than not attempted.
func TestMendSharedCancelledWhileItLogsIn(t *testing.T) {
	var (
		mu     sync.Mutex
		logins int
		grants int
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/protocol/openid-connect/token"):
			if logins++; logins == 3 { // the second page's
				cancel()
				// The caller goes away before an answer. (Go's server sees
				// the connection close once the body is read.)
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			fmt.Fprintf(w, `{"access_token":"t%d","expires_in":0}`, logins)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r"+policiesPath:
			fmt.Fprint(w, storedRealmPolicies(`["service-desk"]`))
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+grantPath:
			grants++
			grantAll(t, w, r)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	shared := ownersLacking(grantPageSize + 1)
	opts := Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second, ServiceDeskRole: "service-desk"}
	mended, err := New(opts).MendShared(ctx, "r", "Communities", shared)
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) || grants != 1 || len(mended) != grantPageSize {
		t.Errorf("cancelled while the second page's token was asked for: %d pages, %d mended, %v; "+
			"want the first page's %d and the context's error (still Keycloak's kind to an API caller)", grants, len(mended), err, grantPageSize)
	}
}

// ownersLacking is n communities whose owner groups lack community-owner.
func ownersLacking(n int) []community.SharedDrift {
	var shared []community.SharedDrift
	for i := range n {
		s := community.Spec{ID: fmt.Sprint("id-", i), Realm: "r", Root: "Communities", Label: fmt.Sprintf("L%04d", i), Name: "n"}
		shared = append(shared, community.SharedDrift{Spec: s, Drift: []community.Drift{
			{What: "role mapping /Communities/" + s.Label + "/owner → community-owner", Problem: problemMissing}}})
	}
	return shared
}

// grantAll answers a POST roles/grant as the extension does when every
// group it names is as the caller read it: all granted.
func grantAll(t *testing.T, w http.ResponseWriter, r *http.Request) {
	var b struct{ Groups []markedGroup }
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		t.Error(err)
	}
	var granted []string
	for _, g := range b.Groups {
		granted = append(granted, g.Path)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"granted": granted})
}
