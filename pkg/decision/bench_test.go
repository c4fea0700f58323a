package decision

import (
	"fmt"
	"testing"
)

// benchScope and benchAuthorities resemble a Keycloak token of an author in a few communities.
const benchScope = "openid profile email system/*.read system/*.write " +
	"grouping/C1.read grouping/C2.read grouping/C3.read grouping/NDD.read grouping/NDD.write"

var benchAuthorities = []string{"FHIR_READ", "FHIR_WRITE", "PERM_C1_READ", "PERM_C2_READ", "PERM_NDD_READ", "PERM_NDD_WRITE", "offline_access"}

// benchRequest labels a resource with n read labels the token does not hold
// and, when allowed, makes the last one a held label, so every label is
// examined on both paths.
func benchRequest(n int, allowed bool) Request {
	sec := make([]Coding, n)
	for i := range sec {
		sec[i] = Coding{System: DefaultSystem, Code: fmt.Sprintf("OTHER%d.read", i)}
	}
	if allowed {
		sec[n-1].Code = "NDD.read"
	}
	return Request{ResourceType: "CodeSystem", Interaction: Read, Security: sec}
}

var sink Decision

func BenchmarkDecide(b *testing.B) {
	p := Parse(benchScope, benchAuthorities)
	for _, n := range []int{1, 4, 8} {
		for _, allowed := range []bool{true, false} {
			req := benchRequest(n, allowed)
			if d := Decide(p, req); d.Allowed != allowed {
				b.Fatalf("setup: %s", d.Reason())
			}
			name := fmt.Sprintf("labels=%d/allowed=%v", n, allowed)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sink = Decide(p, req)
				}
			})
		}
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := Parse(benchScope, benchAuthorities)
	for _, allowed := range []bool{true, false} {
		req := benchRequest(8, allowed)
		if n := testing.AllocsPerRun(100, func() { sink = Decide(p, req) }); n != 0 {
			t.Errorf("Decide (allowed=%v) allocates %v times per call", allowed, n)
		}
	}
}

var sinkPrivileges *Privileges

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkPrivileges = Parse(benchScope, benchAuthorities)
	}
}

func BenchmarkParseClaims(b *testing.B) {
	roles := make([]any, len(benchAuthorities))
	for i, a := range benchAuthorities {
		roles[i] = a
	}
	claims := map[string]any{"scope": benchScope, "authorities": roles, "realm_access": map[string]any{"roles": roles}}
	b.ReportAllocs()
	for b.Loop() {
		sinkPrivileges = ParseClaims(claims)
	}
}
