// Package fhirguard counts the FHIR resources that still carry a
// community's security labels, so that deleting the community can be
// refused while they do. Seed 000: "Deleting a community will not delete
// the corresponding security labels on the resources associated with it.
// ... users will be unable to access the resources unless they also have
// another, different, security label."
//
// FHIR has no search across every type, so each configured type is counted
// on each configured server with _security and _summary=count, bypassing
// the server's search cache so that a label removed a moment ago no longer
// counts.
package fhirguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/pkg/decision"
)

// DefaultTypes are the resource types a terminology server holds.
var DefaultTypes = []string{"CodeSystem", "ValueSet", "ConceptMap", "NamingSystem", "StructureDefinition"}

// Options configures a Guard.
type Options struct {
	// BaseURLs are the FHIR servers' base URLs (…/fhir), as the guard
	// reaches them: directly, not through the enforcing proxy, which would
	// hide what the guard must count.
	BaseURLs []string
	// Types are the resource types counted (default DefaultTypes).
	Types []string
	// System is the permissions code system of the labels (default
	// decision.DefaultSystem, as the decisions': empty, the searches would
	// count labels without a system only).
	System string
	// SystemlessLabels also counts labels without a system.
	SystemlessLabels bool
	// Timeout bounds one count across every server and type.
	Timeout time.Duration
	// Client sends the searches (default: a plain client).
	Client *http.Client
}

// Guard counts labelled resources.
type Guard struct {
	opts Options
}

// New returns a Guard for o.
func New(o Options) *Guard {
	if len(o.Types) == 0 {
		o.Types = DefaultTypes
	}
	if o.System == "" {
		o.System = decision.DefaultSystem
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	return &Guard{opts: o}
}

// Usage is how many resources carry a community's labels.
type Usage struct {
	Label string
	// ByType sums the counts of every server per resource type; types with
	// none are left out.
	ByType map[string]int
	Total  int
}

// String names the counts per type, e.g. "3 resources (CodeSystem: 1,
// ValueSet: 2)".
func (u Usage) String() string {
	types := make([]string, 0, len(u.ByType))
	for t := range u.ByType {
		types = append(types, t)
	}
	sort.Strings(types)
	parts := make([]string, 0, len(types))
	for _, t := range types {
		parts = append(parts, t+": "+strconv.Itoa(u.ByType[t]))
	}
	noun := "resources"
	if u.Total == 1 {
		noun = "resource"
	}
	return fmt.Sprintf("%d %s (%s)", u.Total, noun, strings.Join(parts, ", "))
}

// ErrUnreachable wraps every failure to count: a server that cannot be
// reached or answers anything but a count. Callers fail closed on it.
var ErrUnreachable = fault.Sentinel(fault.Unavailable, "FHIR server could not be counted")

// Count counts, on every server and type, the resources labelled
// <label>.read or <label>.write. All searches run at once; any failure
// fails the count.
func (g *Guard) Count(ctx context.Context, label string) (Usage, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	u := Usage{Label: label, ByType: map[string]int{}}
	for _, base := range g.opts.BaseURLs {
		for _, typ := range g.opts.Types {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := g.count(ctx, base, typ, label)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if n > 0 {
					u.ByType[typ] += n
					u.Total += n
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return Usage{}, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
	}
	return u, nil
}

// Query is the search that finds resources labelled for label, for
// operators who want to see them (docs/fhir.md).
func (g *Guard) Query(label string) string {
	var codes []string
	for _, suffix := range []string{".read", ".write"} {
		codes = append(codes, g.opts.System+"|"+label+suffix)
		if g.opts.SystemlessLabels {
			codes = append(codes, "|"+label+suffix)
		}
	}
	return url.Values{"_security": {strings.Join(codes, ",")}}.Encode()
}

func (g *Guard) count(ctx context.Context, base, typ, label string) (int, error) {
	u := strings.TrimRight(base, "/") + "/" + typ + "?" + g.Query(label) + "&_summary=count"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", base, typ, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	// HAPI and others reuse a search's results for a while; a count must
	// see the labels as they are now.
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := g.opts.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", base, typ, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", base, typ, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s %s: HTTP %d", base, typ, resp.StatusCode)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Total        *int   `json:"total"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Total == nil || *b.Total < 0 {
		return 0, fmt.Errorf("%s %s: the answer is not a Bundle with a total", base, typ)
	}
	return *b.Total, nil
}
