package harness

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/nhs-terminology/communities/internal/api"
)

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// ConformsToOpenAPI fails the test unless resp, the answer to method on
// rawURL, is what internal/api/openapi.yaml says that operation answers.
func ConformsToOpenAPI(t testing.TB, method, rawURL string, resp *Response) {
	t.Helper()
	specOnce.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
		if err != nil {
			specErr = err
			return
		}
		specRouter, specErr = legacy.NewRouter(doc)
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	// The spec describes the routes once; /auth/... are their twins.
	path := strings.TrimPrefix(u.Path, "/auth")
	req, _ := http.NewRequest(method, "http://localhost:8081"+path+"?"+u.RawQuery, nil)
	route, params, err := specRouter.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in openapi.yaml: %v", method, path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: resp.Status,
		Header: resp.Header,
		Body:   io.NopCloser(bytes.NewReader(resp.Body)),
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %d, which openapi.yaml does not allow: %v\nbody: %s", method, rawURL, resp.Status, err, resp.Body)
	}
}
