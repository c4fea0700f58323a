package api

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/nhs-terminology/communities/internal/metrics"
)

// TestOpenAPIDescribesEveryRoute keeps openapi.yaml true: every route the
// handler serves is described, every described operation is served, and
// every realm route is also served under the legacy /auth prefix.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI: %v", err)
	}
	h := New(Options{Metrics: metrics.New(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).(*gin.Engine)
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	served := map[string]bool{}
	for _, r := range h.Routes() {
		p := param.ReplaceAllString(r.Path, "{$1}")
		if rest, ok := strings.CutPrefix(p, "/auth"); ok {
			if !slices.ContainsFunc(h.Routes(), func(o gin.RouteInfo) bool {
				return o.Method == r.Method && o.Path == strings.TrimPrefix(r.Path, "/auth")
			}) {
				t.Errorf("%s %s has no twin without /auth", r.Method, r.Path)
			}
			p = rest
		} else if strings.HasPrefix(p, "/realms/") {
			if !slices.ContainsFunc(h.Routes(), func(o gin.RouteInfo) bool { return o.Method == r.Method && o.Path == "/auth"+r.Path }) {
				t.Errorf("%s %s is not served under /auth", r.Method, r.Path)
			}
		}
		key := r.Method + " " + p
		served[key] = true
		item := doc.Paths.Find(p)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s is served but not described in openapi.yaml", key)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !served[method+" "+path] {
				t.Errorf("%s %s is described in openapi.yaml but not served", method, path)
			}
		}
	}
}
