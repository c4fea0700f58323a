package integration

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/test/harness"
)

// BenchmarkProxyOverhead measures what the enforcing proxy adds to a read
// and to a search page (20 entries, half of them labelled NDD.read), by
// sending each request to the FHIR server directly and through the proxy
// in turn, side by side in one run, as an NDD consumer. It reports the
// 50th and 99th percentile latencies of both; figures in
// docs/benchmarks.md.
func BenchmarkProxyOverhead(b *testing.B) {
	env := harness.Current(b)
	fhir := env.FHIR(b)
	realm := env.NewRealm(b)
	svc := env.StartService(b, env.Config(realm.Name))
	desk := realm.ClientToken(b, "service-desk", harness.ServiceDeskSecret)
	base := svc.URL + "/realms/" + realm.Name + "/communities"
	harness.Do(b, "POST", base, desk, map[string]any{"securityLabel": "NDD", "communityName": "National data dictionary", "owners": []string{"administrator"}}).Expect(b, 201)
	harness.Do(b, "PUT", base+"/NDD/consumer/consumer", desk, nil).Expect(b, 204)
	token := realm.UserToken(b, "consumer")
	proxy := env.StartProxy(b, realm.Name)
	prefix := realm.Name[len(realm.Name)-8:]
	for i := range 20 {
		var labels []string
		if i%2 == 0 {
			labels = []string{"NDD.read", "NDD.write"}
		}
		id := prefix + "-" + strconv.Itoa(i)
		r := harness.Resource("ValueSet", id, labels...)
		r["publisher"] = realm.Name
		harness.PutFHIR(b, fhir, r)
		b.Cleanup(func() { harness.DoFHIR(b, "DELETE", fhir+"/ValueSet/"+id, "", nil) })
	}
	client := &http.Client{Timeout: time.Minute}
	get := func(u string) time.Duration {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 32<<10)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		return took
	}
	for _, c := range []struct{ name, path string }{
		{"read", "/ValueSet/" + prefix + "-0"},
		{"search-page", "/ValueSet?publisher:exact=" + realm.Name + "&_count=20"},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Warm both paths (JIT, connections, token cache) first.
			for range 20 {
				get(fhir + c.path)
				get(proxy + c.path)
			}
			direct := make([]time.Duration, 0, b.N)
			proxied := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				// Alternate which goes first, so neither always gets the
				// warmer caches.
				if i%2 == 0 {
					direct = append(direct, get(fhir+c.path))
					proxied = append(proxied, get(proxy+c.path))
				} else {
					proxied = append(proxied, get(proxy+c.path))
					direct = append(direct, get(fhir+c.path))
				}
			}
			b.StopTimer()
			for _, s := range []struct {
				name string
				d    []time.Duration
			}{{"direct", direct}, {"proxy", proxied}} {
				slices.Sort(s.d)
				b.ReportMetric(ms(s.d[len(s.d)/2]), s.name+"-p50-ms")
				b.ReportMetric(ms(s.d[(len(s.d)*99)/100]), s.name+"-p99-ms")
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
