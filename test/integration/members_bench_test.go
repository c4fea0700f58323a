package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

// BenchmarkMemberPage reads the first page of a community's members (each
// role's first 100) where the consumer group holds MEMBERS users (default
// 10,000; a default community's holds every user of the realm) and where
// it holds 100, one page's worth, side by side in one run, as service
// desk. It reports the 50th and 99th percentile latencies of both and the
// Keycloak calls of one read: a page must cost the same however many
// members there are. Figures in docs/benchmarks.md.
func BenchmarkMemberPage(b *testing.B) {
	count := 10000
	if s := os.Getenv("MEMBERS"); s != "" {
		var err error
		if count, err = strconv.Atoi(s); err != nil || count < 1 {
			b.Fatalf("MEMBERS=%q: give a whole number of 1 or more", s)
		}
	}
	env := harness.Current(b)
	realm := env.NewRealm(b)
	svc := env.StartService(b, env.Config(realm.Name))
	desk := realm.ClientToken(b, "service-desk", harness.ServiceDeskSecret)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	for _, l := range []string{"MANY", "FEW"} {
		harness.Do(b, "POST", base, desk, map[string]any{"securityLabel": l, "communityName": l}).Expect(b, 201)
	}
	start := time.Now()
	imp := func(label string, from, to int) {
		for first := from; first < to; first += 1000 {
			var names []string
			for i := first; i < min(first+1000, to); i++ {
				names = append(names, fmt.Sprintf("member%06d", i))
			}
			realm.ImportUsers(b, []string{"/Communities/" + label + "/consumer"}, names...)
		}
	}
	imp("MANY", 0, count)
	imp("FEW", count, count+100)
	b.Logf("%d and 100 consumers imported in %s", count, time.Since(start).Round(time.Millisecond))
	read := func(label string) (time.Duration, int64) {
		before := svc.KeycloakRoundTrips()
		took := time.Now()
		resp := harness.Do(b, "GET", base+"/"+label+"/members", desk, nil).Expect(b, 200)
		d := time.Since(took)
		var m members
		resp.JSON(b, &m)
		if want := min(count, 100); label == "MANY" && len(m["consumer"]) != want || label == "FEW" && len(m["consumer"]) != 100 {
			b.Fatalf("%s's first page holds %d consumers", label, len(m["consumer"]))
		}
		return d, svc.KeycloakRoundTrips() - before
	}
	b.Run("first-page", func(b *testing.B) {
		for range 10 { // warm the service, its token and Keycloak
			read("MANY")
			read("FEW")
		}
		many := make([]time.Duration, 0, b.N)
		few := make([]time.Duration, 0, b.N)
		var manyCalls, fewCalls int64
		b.ResetTimer()
		for i := range b.N {
			// Alternate which goes first, so neither always gets the
			// warmer caches.
			order := []string{"MANY", "FEW"}
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, l := range order {
				d, calls := read(l)
				if l == "MANY" {
					many, manyCalls = append(many, d), manyCalls+calls
				} else {
					few, fewCalls = append(few, d), fewCalls+calls
				}
			}
		}
		b.StopTimer()
		for _, s := range []struct {
			name  string
			d     []time.Duration
			calls int64
		}{{"many", many, manyCalls}, {"few", few, fewCalls}} {
			slices.Sort(s.d)
			b.ReportMetric(ms(s.d[len(s.d)/2]), s.name+"-p50-ms")
			b.ReportMetric(ms(s.d[(len(s.d)*99)/100]), s.name+"-p99-ms")
			b.ReportMetric(float64(s.calls)/float64(b.N), s.name+"-keycloak-calls")
		}
	})
}
