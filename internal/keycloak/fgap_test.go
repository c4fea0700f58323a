package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
)

// TestOnlyARepairSwitchesAdminPermissionsOn: a check that only reports
// (the server's periodic drift check, plan) leaves a realm whose admin
// permissions an operator switched off as it is, and says so; a repair
// switches them on (the review of 2026-11-24 found every check doing it).
func TestOnlyARepairSwitchesAdminPermissionsOn(t *testing.T) {
	var (
		mu   sync.Mutex
		puts int
		on   bool
	)
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r" && on:
			fmt.Fprint(w, `{"adminPermissionsEnabled":true,"adminPermissionsClient":{"id":"perm"}}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r":
			fmt.Fprint(w, `{"adminPermissionsEnabled":false}`)
		case r.Method == http.MethodPut && r.URL.Path == "/admin/realms/r":
			puts++
			on = true
			w.WriteHeader(http.StatusNoContent)
		default:
			fmt.Fprint(w, `[]`)
		}
	}))
	defer kc.Close()
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	s := community.Spec{ID: "6f1c2b9e-0000-4000-8000-000000000001", Realm: "r", Root: "Communities", Label: "NDD", Name: "n"}
	var noted []string
	err := c.ensureOwnerPermissions(context.Background(), "t", s, Describe(s), community.Artifacts{}, false, false,
		func(what, problem string, _ bool) { noted = append(noted, what+": "+problem) })
	if err != nil || puts != 0 || !slices.Equal(noted, []string{"admin permissions of realm r: not enabled"}) {
		t.Errorf("a check: %v, %d PUTs of the realm, noted %q", err, puts, noted)
	}
	if _, err := c.permissionsBase(context.Background(), "t", "r", false); !errors.Is(err, errPermissionsOff) || puts != 0 {
		t.Errorf("without enable: %v, %d PUTs", err, puts)
	}
	base, err := c.permissionsBase(context.Background(), "t", "r", true)
	if err != nil || puts != 1 || base != "r/clients/perm/authz/resource-server" {
		t.Errorf("a repair: %q %v, %d PUTs", base, err, puts)
	}
}
