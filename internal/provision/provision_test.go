package provision_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/fakeidp"
	"github.com/nhs-terminology/communities/internal/community/memstore"
	"github.com/nhs-terminology/communities/internal/provision"
)

// TestPruneKeepsWhatTheFileNamesInAnotherCase: labels are unique ignoring
// case, so a file naming "ndd" where the realm has "NDD" plans a conflict
// and no delete (the review of 2026-11-24 found --prune deleting NDD).
func TestPruneKeepsWhatTheFileNamesInAnotherCase(t *testing.T) {
	const realm = "r"
	idp := fakeidp.New()
	svc := community.New(memstore.New(), idp, community.Options{RootGroup: "Communities", Lease: time.Minute, Logger: slog.New(slog.DiscardHandler),
		Roles: community.Roles{ServiceDesk: "service-desk", Creator: "community-creator"}})
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "cli", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, "service-desk")
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "NDD", Name: "National data dictionary"}); err != nil {
		t.Fatal(err)
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - label: ndd\n    name: National data dictionary\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := provision.New(svc, desk).Plan(t.Context(), f, true)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range plan {
		kinds = append(kinds, a.Kind+" "+a.Label)
	}
	if strings.Join(kinds, ", ") != "conflict ndd" {
		t.Errorf("plan %v, want only the conflict", kinds)
	}
	if _, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: NDD, name: A}\n  - {label: ndd, name: B}\n")); err == nil ||
		!strings.Contains(err.Error(), "appears twice") {
		t.Errorf("a file naming NDD and ndd: %v", err)
	}
}
