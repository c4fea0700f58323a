package integration

import (
	"context"
	"fmt"
	"github.com/nhs-terminology/communities/internal/community"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

// replicas starts n service processes for realm sharing one PostgreSQL and
// one Keycloak, and returns their base URLs.
func replicas(t *testing.T, env *harness.Env, realm string, n int) []string {
	t.Helper()
	var bases []string
	for range n {
		p := startProcess(t, map[string]string{
			"DATABASE_URL": env.DatabaseURL, "KEYCLOAK_URL": env.KeycloakURL,
			"COMMUNITIES_REALMS": realm, "COMMUNITIES_ADMIN_CLIENT_SECRET": harness.ServiceSecret,
			"COMMUNITIES_LOG_LEVEL": "info",
		})
		bases = append(bases, "http://"+p.addr+"/realms/"+realm+"/communities")
	}
	return bases
}

// TestHundredConcurrentCreatesOverThreeReplicas: 100 creates of one label
// at once, spread over 3 processes: exactly one 201, 99 409, one set of
// artefacts.
func TestHundredConcurrentCreatesOverThreeReplicas(t *testing.T) {
	f := newFixture(t)
	bases := replicas(t, f.env, f.realm.Name, 3)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	const n = 100
	statuses := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"securityLabel":"ONE","communityName":"One %d"}`, i)
			req, _ := http.NewRequest("POST", bases[i%3], strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+sd)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[201] != 1 || count[409] != n-1 {
		t.Fatalf("statuses %v: want one 201 and %d 409", count, n-1)
	}
	if got := f.realm.Artefacts(t, "Communities", "ONE"); len(got) != 3 {
		t.Errorf("artefacts %v, want one set of 3", got)
	}
	reports, _, err := f.svc.Server.Service().Reconcile(context.Background(), []string{f.realm.Name}, false)
	if err != nil || reports[0].DriftCount() != 0 {
		t.Errorf("after the race: %v %+v", err, reports)
	}
}

// TestMixedConcurrentLoad runs creates, deletes and lists of a few labels
// from many clients over 3 replicas for a bounded time, then checks the
// invariants: every registry row is active and has exactly its artefacts,
// Keycloak holds nothing without a row, and the list equals the registry.
func TestMixedConcurrentLoad(t *testing.T) {
	f := newFixture(t)
	bases := replicas(t, f.env, f.realm.Name, 3)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	labelsPool := []string{"M1", "M2", "M3", "M4", "M5"}
	deadline := time.Now().Add(12 * time.Second)
	var ops, unexpected atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; time.Now().Before(deadline) && i < 400; i++ {
				base := bases[rng.IntN(len(bases))]
				label := labelsPool[rng.IntN(len(labelsPool))]
				var req *http.Request
				want := map[int]bool{}
				switch rng.IntN(3) {
				case 0:
					req, _ = http.NewRequest("POST", base, strings.NewReader(`{"securityLabel":"`+label+`","communityName":"Mixed `+label+`"}`))
					req.Header.Set("Content-Type", "application/json")
					want[201], want[409] = true, true
				case 1:
					req, _ = http.NewRequest("DELETE", base+"/"+label, nil)
					want[204], want[404] = true, true
				default:
					req, _ = http.NewRequest("GET", base, nil)
					want[200] = true
				}
				req.Header.Set("Authorization", "Bearer "+sd)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				ops.Add(1)
				if !want[resp.StatusCode] {
					unexpected.Add(1)
					t.Errorf("%s %s: %d", req.Method, req.URL.Path, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d operations over 3 replicas, %d unexpected answers", ops.Load(), unexpected.Load())

	ctx := context.Background()
	store := f.svc.Store
	var unfinished int64
	if err := store.DB().Table("communities").Where("realm = ? AND state <> ?", f.realm.Name, community.StateActive).
		Count(&unfinished).Error; err != nil || unfinished != 0 {
		t.Errorf("%d rows left unfinished (%v)", unfinished, err)
	}
	rows, err := store.List(ctx, f.realm.Name, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]bool{}
	for _, r := range rows {
		active[r.Label] = true
	}
	orphans := 0
	for _, l := range labelsPool {
		got := f.realm.Artefacts(t, "Communities", l)
		if active[l] && len(got) != 3 || !active[l] && len(got) != 0 {
			orphans++
			t.Errorf("%s: registry active=%v, Keycloak has %v", l, active[l], got)
		}
	}
	reports, _, err := f.svc.Server.Service().Reconcile(ctx, []string{f.realm.Name}, false)
	if err != nil || reports[0].DriftCount() != 0 {
		t.Errorf("reconcile after the load: %v %+v", err, reports)
	}
	if got := len(f.list(t, sd)); got != len(rows) {
		t.Errorf("list shows %d, registry %d", got, len(rows))
	}
	t.Logf("orphans found: %d", orphans)
}
