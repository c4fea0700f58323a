package harness

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/Nerzal/gocloak/v13"

	"github.com/nhs-terminology/communities/internal/keycloak"
)

// Artefacts lists which of a community's Keycloak artefacts exist, by
// name, as an administrator sees them.
func (r *Realm) Artefacts(t testing.TB, root, label string) []string {
	t.Helper()
	ctx := context.Background()
	tok := r.AdminToken(t)
	n := keycloak.NamesFor(root, label)
	var found []string
	for _, role := range []string{n.ReadRole, n.WriteRole, n.OwnerRole} {
		if _, err := r.GC.GetRealmRole(ctx, tok, r.Name, role); err == nil {
			found = append(found, "role "+role)
		} else if !isNotFound(err) {
			t.Fatalf("get role %s: %v", role, err)
		}
	}
	if _, err := r.GC.GetGroupByPath(ctx, tok, r.Name, strings.TrimPrefix(n.GroupPath, "/")); err == nil {
		found = append(found, "group "+n.GroupPath)
	} else if !isNotFound(err) {
		t.Fatalf("get group %s: %v", n.GroupPath, err)
	}
	scopes, err := r.GC.GetClientScopes(ctx, tok, r.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scopes {
		if *s.Name == n.ReadScope || *s.Name == n.WriteScope {
			found = append(found, "scope "+*s.Name)
		}
	}
	// Keycloak lists client scopes in no fixed order; callers compare lists.
	slices.Sort(found)
	return found
}

func isNotFound(err error) bool {
	var api *gocloak.APIError
	return errors.As(err, &api) && api.Code == http.StatusNotFound
}

// FaultTransport fails chosen Keycloak admin calls that change something,
// as if Keycloak had gone away at that step of an operation.
type FaultTransport struct {
	Base http.RoundTripper

	mu sync.Mutex
	// FailAt is the 1-based number of the mutating admin call to fail; 0
	// fails none. With Sticky, that call and every later one fail.
	FailAt int
	Sticky bool
	// Refuse makes a failing call answer HTTP 400, as Keycloak does when
	// it refuses a request, instead of failing to connect.
	Refuse bool
	// Late makes a failing call go unanswered, as one the caller gave up
	// waiting for, and keeps it for SendLate to deliver: Keycloak
	// committing it after the caller moved on.
	Late     bool
	late     []*http.Request
	mutating int
	injected int
}

// ErrInjected is the error injected calls fail with; ErrUnanswered the
// one of calls held with Late.
var (
	ErrInjected   = errors.New("injected fault: connection refused")
	ErrUnanswered = errors.New("injected fault: no answer in time")
)

// RoundTrip implements http.RoundTripper.
func (f *FaultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/admin/realms/") {
		f.mu.Lock()
		f.mutating++
		fail := f.FailAt > 0 && (f.mutating == f.FailAt || f.Sticky && f.mutating > f.FailAt)
		if fail {
			f.injected++
		}
		f.mu.Unlock()
		switch {
		case fail && f.Late:
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return nil, err
			}
			held := r.Clone(context.Background())
			held.Body, held.ContentLength = io.NopCloser(strings.NewReader(string(body))), int64(len(body))
			f.mu.Lock()
			f.late = append(f.late, held)
			f.mu.Unlock()
			return nil, ErrUnanswered
		case fail && f.Refuse:
			return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Request: r,
				Header: http.Header{"Content-Type": {"application/json"}},
				Body:   io.NopCloser(strings.NewReader(`{"error":"injected refusal"}`))}, nil
		case fail:
			return nil, ErrInjected
		}
	}
	base := f.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Arm resets the counters and fails call n (0: none).
func (f *FaultTransport) Arm(n int, sticky bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.FailAt, f.Sticky, f.mutating = n, sticky, 0
}

// SendLate delivers the calls held with Late, in order, and returns
// Keycloak's status for each.
func (f *FaultTransport) SendLate() ([]int, error) {
	f.mu.Lock()
	held := f.late
	f.late = nil
	f.mu.Unlock()
	base := f.Base
	if base == nil {
		base = http.DefaultTransport
	}
	var codes []int
	for _, r := range held {
		resp, err := base.RoundTrip(r)
		if err != nil {
			return codes, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	return codes, nil
}

// Counts returns how many mutating calls were seen and how many failed.
func (f *FaultTransport) Counts() (mutating, injected int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mutating, f.injected
}
