package provision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/fakeidp"
	"github.com/nhs-terminology/communities/internal/community/memstore"
	"github.com/nhs-terminology/communities/internal/fhirguard"
	"github.com/nhs-terminology/communities/internal/provision"
)

const realm = "r"

// newService is the community service over the fakes, with a service
// desk user of realm.
func newService() (*community.Service, *fakeidp.IDP, community.Actor) {
	return newServiceOver(memstore.New())
}

// newServiceOver is newService over store.
func newServiceOver(store community.Store) (*community.Service, *fakeidp.IDP, community.Actor) {
	idp := fakeidp.New()
	svc, desk := newServiceVia(store, idp, idp)
	return svc, idp, desk
}

// newServiceVia is the community service over store and kc, in front of
// idp, with a service desk user of realm.
func newServiceVia(store community.Store, idp *fakeidp.IDP, kc community.IdentityProvider) (*community.Service, community.Actor) {
	return newServiceGuarded(store, idp, kc, nil)
}

// newServiceGuarded is newServiceVia with guard counting labelled
// resources (nil: none).
func newServiceGuarded(store community.Store, idp *fakeidp.IDP, kc community.IdentityProvider, guard community.Guard) (*community.Service, community.Actor) {
	svc := community.New(store, kc, community.Options{RootGroup: "Communities", Lease: time.Minute, Logger: slog.New(slog.DiscardHandler),
		Roles: community.Roles{ServiceDesk: "service-desk", Creator: "community-creator"}, Guard: guard})
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "cli", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, "service-desk")
	return svc, desk
}

// TestPruneKeepsWhatTheFileNamesInAnotherCase: labels are unique ignoring
// case, so a file naming "ndd" where the realm has "NDD" plans a conflict
// and no delete (the review of 2026-11-24 found --prune deleting NDD).
func TestPruneKeepsWhatTheFileNamesInAnotherCase(t *testing.T) {
	svc, _, desk := newService()
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

// labelled is a FHIR guard that finds resources carrying the labels of
// the communities it names.
type labelled map[string]int

func (g labelled) Count(_ context.Context, l string) (fhirguard.Usage, error) {
	return fhirguard.Usage{Label: l, ByType: map[string]int{"CodeSystem": g[l]}, Total: g[l]}, nil
}

// TestPruneFreesANameInTheSameRun: a file that drops a community and gives
// its name to a new one is applied in one run with --prune: the delete is
// planned first and frees the name (it took a second run before), while a
// delete that frees no name the file wants stays last. A delete that will
// be refused (labels remain on resources) frees nothing, so the create
// stays a conflict; without --prune nothing is freed.
func TestPruneFreesANameInTheSameRun(t *testing.T) {
	idp := fakeidp.New()
	svc, desk := newServiceGuarded(memstore.New(), idp, idp, labelled{"KEPT": 3})
	for _, c := range [][2]string{{"OLD", "Reference sets"}, {"KEPT", "Kept by its labels"}, {"ASIDE", "Dropped"}} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: c[0], Name: c[1]}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n" +
		"  - {label: NEW, name: Reference sets}\n" +
		"  - {label: NEWER, name: Kept by its labels}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan := func(prune bool, want ...string) []provision.Action {
		t.Helper()
		actions, err := p.Plan(t.Context(), f, prune)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range actions {
			got = append(got, a.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("plan (prune %v)\n%s\nwant\n%s", prune, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		return actions
	}
	plan(false,
		`conflict NEW: the realm's community "OLD" is named "Reference sets" (names are unique ignoring case, spacing, character width and accents written either way)`,
		`conflict NEWER: the realm's community "KEPT" is named "Kept by its labels" (names are unique ignoring case, spacing, character width and accents written either way)`)
	actions := plan(true,
		"delete KEPT: Kept by its labels; its labels remain on 3 resources (CodeSystem: 3), so the delete will be refused without --accept-labelled-resources",
		"delete OLD: Reference sets",
		"create NEW: Reference sets",
		`conflict NEWER: the realm's community "KEPT" is named "Kept by its labels" (names are unique ignoring case, spacing, character width and accents written either way)`,
		"delete ASIDE: Dropped")
	if err := p.Apply(t.Context(), f, actions, nil); err == nil || !strings.Contains(err.Error(), "2 of 5 changes failed") {
		t.Errorf("apply: %v", err)
	}
	if row, err := svc.Get(t.Context(), realm, "NEW"); err != nil || row.Name != "Reference sets" {
		t.Errorf("NEW after apply: %+v %v", row, err)
	}
	if _, err := svc.Get(t.Context(), realm, "OLD"); !errors.Is(err, community.ErrNotFound) {
		t.Errorf("OLD after apply: %v", err)
	}
	if _, err := svc.Get(t.Context(), realm, "KEPT"); err != nil {
		t.Errorf("KEPT after apply: %v", err)
	}
	p.AcceptLabelled = true
	plan(true,
		"delete KEPT: Kept by its labels; its labels remain on 3 resources (CodeSystem: 3)",
		"create NEWER: Kept by its labels")
}

// TestParseChecksEverythingBeforeApply: what can be checked without the
// realm is refused by Parse, so apply changes nothing for it; names are
// trimmed as the registry stores them and user references lower-cased as
// Keycloak stores usernames, each once.
func TestParseChecksEverythingBeforeApply(t *testing.T) {
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - label: NDD\n    name: |\n      National data dictionary\n" +
		"    consumers: [Bob, bob, alice]\n    owners: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Communities[0]
	if c.Name != "National data dictionary" || !slices.Equal(c.Consumers, []string{"bob", "alice"}) || c.Owners == nil || c.Authors != nil {
		t.Errorf("parsed %+v", c)
	}
	many := "[" + strings.Repeat("u,", community.MaxOwners) + "u]"
	for _, bad := range []struct{ file, says string }{
		{"realm: r\n", "communities is required"},
		{"realm: r\ncommunities:\n  - {label: N-D, name: A}\n", "securityLabel"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: \"A\\u0007\"}\n", "communityName"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: \"  \"}\n", "communityName"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: Same}\n  - {label: SNOMED, name: same}\n", "both named"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: A, consumers: [\"../x\"]}\n", "user"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: A, owners: " + many + "}\n", "at most 50 owners"},
		{"realm: r\ncommunities: []\n" + strings.Repeat("#", provision.MaxFileBytes), "larger than"},
		{"", "empty"},
		{"realm: r\ncommunities: []\n---\nrealm: s\n", "more than one"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: A, consumers: [a], Consumers: []}\n", "Consumers not found"},
		{"realm: r\ncommunities:\n  - {label: NDD, name: A, label: SNOMED}\n", "already defined"},
		{"realm: r\ncommunities:\n  - {label: [NDD], name: A}\n", "cannot unmarshal"},
	} {
		if _, err := provision.Parse([]byte(bad.file)); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%.60q: %v, want an error saying %q", bad.file, err, bad.says)
		}
	}
}

// TestParseReadsValuesAsWritten: YAML 1.1 read an unquoted ON as the
// label "true" and the user 0123 as "83" (review of 2026-11-24: apply
// --prune then deleted the community ON); every value is the text written.
func TestParseReadsValuesAsWritten(t *testing.T) {
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - label: ON\n    name: yes\n    consumers: [no, 0123, 1_000, 1e3, null-ish]\n" +
		"  - {label: 1_000, name: 0x1F}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := f.Communities
	if got[0].Label != "ON" || got[0].Name != "yes" || !slices.Equal(got[0].Consumers, []string{"no", "0123", "1_000", "1e3", "null-ish"}) ||
		got[1].Label != "1_000" || got[1].Name != "0x1F" {
		t.Errorf("parsed %+v", got)
	}
	// JSON is YAML too.
	j, err := provision.Parse([]byte(`{"realm": "r", "communities": [{"label": "NDD", "name": "N", "owners": ["bob"]}]}`))
	if err != nil || j.Communities[0].Label != "NDD" || !slices.Equal(j.Communities[0].Owners, []string{"bob"}) {
		t.Errorf("JSON: %+v %v", j, err)
	}
}

// TestPlanKnowsAUserByAnyName: a member the file names by id, or by a
// username in another case, is the member Keycloak lists: a second plan
// changes nothing, and --prune removes no one (the review of 2026-11-24
// found apply --prune removing an owner named by id on every other run).
func TestPlanKnowsAUserByAnyName(t *testing.T) {
	svc, idp, desk := newService()
	alice := idp.AddUser(realm, "alice")
	idp.AddUser(realm, "bob")
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - label: NDD\n    name: National data dictionary \n" +
		"    owners: [" + alice + "]\n    consumers: [BOB]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(t.Context(), f, plan, nil); err != nil {
		t.Fatal(err)
	}
	for _, prune := range []bool{false, true} {
		if plan, err := p.Plan(t.Context(), f, prune); err != nil || len(plan) != 0 {
			t.Errorf("plan (prune %v) after apply: %v %v", prune, plan, err)
		}
	}
	ms, err := svc.Members(t.Context(), realm, desk, "NDD", community.FirstMembers)
	if err != nil || len(ms[community.RoleOwner]) != 1 || ms[community.RoleOwner][0].ID != alice || len(ms[community.RoleConsumer]) != 1 {
		t.Errorf("members %v %v", ms, err)
	}
}

// TestPlanSaysWhatApplyWouldRefuse: a community whose name another
// community of the realm has, or whose label a community being created,
// deleted or undone still holds, is a conflict in the plan, which Apply
// reports without trying, not a create Apply finds refused.
func TestPlanSaysWhatApplyWouldRefuse(t *testing.T) {
	store := memstore.New()
	svc, idp, desk := newServiceOver(store)
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "NDD", Name: "National data dictionary"}); err != nil {
		t.Fatal(err)
	}
	// A create whose undo failed: its row holds the label until recovery.
	half := &community.Community{ID: uuid.NewString(), Realm: realm, Label: "HALF", LabelKey: "half", Name: "Half made", NameKey: "half made",
		State: community.StateFailed}
	if err := store.Reserve(t.Context(), half, false); err != nil {
		t.Fatal(err)
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n" +
		"  - {label: NDD2, name: NATIONAL DATA DICTIONARY }\n" +
		"  - {label: HALF, name: Half made}\n" +
		"  - {label: NEW, name: New}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range plan {
		got = append(got, a.String())
	}
	want := []string{
		`conflict NDD2: the realm's community "NDD" is named "National data dictionary" (names are unique ignoring case, spacing, character width and accents written either way)`,
		`conflict HALF: label "HALF" is held by community "Half made", whose failed create is yet to be undone by recovery (apply, serve and 'communities reconcile' run it); plan again once that has ended`,
		"create NEW: New",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	before := idp.Artefacts(realm)
	if err := p.Apply(t.Context(), f, plan, nil); err == nil || !strings.Contains(err.Error(), "2 of 3 changes failed") {
		t.Errorf("apply: %v", err)
	}
	if _, err := svc.Get(t.Context(), realm, "NEW"); err != nil {
		t.Errorf("apply did not make NEW: %v", err)
	}
	for _, a := range idp.Artefacts(realm) {
		if !slices.Contains(before, a) && !strings.Contains(a, "NEW") {
			t.Errorf("apply made %s for a conflict", a)
		}
	}
	// Not tried at all: a create the registry refused would have left a
	// "conflict" in the audit trail, and nothing in Keycloak either.
	for _, e := range store.Events() {
		if e.Action == "create" && e.Label != "NDD" && e.Label != "NEW" {
			t.Errorf("apply tried a conflict: %+v", e)
		}
	}
}

// TestRecoverFreesWhatAnAbandonedCreateHeld: a create whose undo failed
// holds its label until recovery runs; a pipeline runs no service, so
// apply recovers first, and the label is then free to create.
func TestRecoverFreesWhatAnAbandonedCreateHeld(t *testing.T) {
	store := memstore.New()
	svc, _, desk := newServiceOver(store)
	half := &community.Community{ID: uuid.NewString(), Realm: realm, Label: "HALF", LabelKey: "half", Name: "Half made", NameKey: "half made",
		State: community.StateFailed}
	if err := store.Reserve(t.Context(), half, false); err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	if n, err := p.Recover(t.Context(), realm); n != 1 || err != nil {
		t.Fatalf("recover: %d, %v", n, err)
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: HALF, name: Half made}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 1 || plan[0].String() != "create HALF: Half made" {
		t.Fatalf("plan after recovery: %v, %v", plan, err)
	}
}

// staleConsumers makes the registry's record of the consumer group's id
// of the community of label key l name no group, as a repair whose record
// failed leaves it.
func staleConsumers(t *testing.T, store community.Store, l string) {
	t.Helper()
	row, err := store.Get(t.Context(), realm, l)
	if err != nil {
		t.Fatal(err)
	}
	stale := row.Artifacts
	stale.ConsumerGroupID = uuid.NewString()
	if err := store.SetArtifacts(t.Context(), row.ID, stale); err != nil {
		t.Fatal(err)
	}
}

// TestPlanRecordsStaleIdsAnew: the registry's id of a member group that
// names no group (a repair whose record failed, a group made again by
// hand), though the group is whole by its path, once made every plan a
// conflict whose advice, reconcile, found nothing to do. It is a repair
// that records the ids anew, after which members compare as usual.
func TestPlanRecordsStaleIdsAnew(t *testing.T) {
	store := memstore.New()
	svc, idp, desk := newServiceOver(store)
	idp.AddUser(realm, "bob")
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "NDD", Name: "NDD name"}); err != nil {
		t.Fatal(err)
	}
	staleConsumers(t, store, "ndd")
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: NDD, name: NDD name, consumers: [bob]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, true)
	if err != nil || len(plan) != 2 || plan[0].Kind != "repair" || !strings.Contains(plan[0].Detail, "record") ||
		plan[1].String() != "add-member NDD consumer bob" {
		t.Fatalf("plan %v, %v: want a repair recording the ids, then bob", plan, err)
	}
	if err := p.Apply(t.Context(), f, plan, nil); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if row, err := store.Get(t.Context(), realm, "ndd"); err != nil || row.Artifacts.ConsumerGroupID != idp.ID(realm, fakeidp.Group, "/Communities/NDD/consumer") {
		t.Errorf("recorded %+v, %v", row.Artifacts, err)
	}
	if plan, err := p.Plan(t.Context(), f, true); err != nil || len(plan) != 0 {
		t.Errorf("plan after apply: %v, %v", plan, err)
	}
}

// TestApplyFailsARepairThatLeftDrift: drift a repair cannot mend (a group
// of somebody else's where the community's consumer group should be) is a
// failed repair, named, not "done" (review of 2026-11-24: apply reported
// done and exited 0 while the drift stayed).
func TestApplyFailsARepairThatLeftDrift(t *testing.T) {
	svc, idp, desk := newService()
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "NDD", Name: "NDD name"}); err != nil {
		t.Fatal(err)
	}
	if !idp.Delete(realm, "group", "/Communities/NDD/consumer") {
		t.Fatalf("no consumer group to delete: %v", idp.Artefacts(realm))
	}
	idp.Add(realm, "group", "/Communities/NDD/consumer", "somebody else")
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: NDD, name: NDD name}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 1 || plan[0].Kind != "repair" {
		t.Fatalf("plan %v, %v: want one repair", plan, err)
	}
	var results []provision.Result
	err = p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) })
	if err == nil || len(results) != 1 || !strings.Contains(results[0].Error, "not repaired") ||
		!strings.Contains(results[0].Error, "group /Communities/NDD/consumer: exists but is not this community's") {
		t.Errorf("apply: %v, results %+v", err, results)
	}
}

// TestPlanRepairsBeforeMembers: a member group deleted by hand is a repair
// in the plan, not a failed plan: its members cannot be compared, so every
// member the file lists for that group is added after the repair (adds
// are idempotent) and none removed, while the community's other groups are
// compared as usual (carol, an author already, is not added again); after
// apply the next plan is empty. Members are not read at all for a
// community the file lists none of.
func TestPlanRepairsBeforeMembers(t *testing.T) {
	svc, idp, desk := newService()
	bob := idp.AddUser(realm, "bob")
	idp.AddUser(realm, "carol")
	for _, l := range []string{"NDD", "BARE"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.ChangeMember(t.Context(), realm, desk, "NDD", community.RoleConsumer, bob, true); err != nil {
		t.Fatal(err)
	}
	if err := svc.ChangeMember(t.Context(), realm, desk, "NDD", community.RoleAuthor, "carol", true); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"NDD", "BARE"} {
		if !idp.Delete(realm, "group", "/Communities/"+l+"/consumer") {
			t.Fatalf("no consumer group of %s to delete: %v", l, idp.Artefacts(realm))
		}
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n" +
		"  - {label: NDD, name: NDD name, authors: [carol], consumers: [bob]}\n" +
		"  - {label: BARE, name: BARE name}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, true)
	if err != nil {
		t.Fatalf("plan of a realm missing a group: %v", err)
	}
	var got []string
	for _, a := range plan {
		got = append(got, a.Kind+" "+a.Label+" "+a.Role+" "+a.User)
	}
	// The repairs first: those made together, then NDD's, made by its
	// own check, which records the ids of the groups it makes again.
	want := []string{"repair BARE  ", "repair NDD  ", "add-member NDD consumer bob"}
	if !slices.Equal(got, want) {
		t.Errorf("plan %q, want %q", got, want)
	}
	if err := p.Apply(t.Context(), f, plan, nil); err != nil {
		t.Fatal(err)
	}
	if plan, err := p.Plan(t.Context(), f, true); err != nil || len(plan) != 0 {
		t.Errorf("plan after apply: %v %v", plan, err)
	}
	ms, err := svc.Members(t.Context(), realm, desk, "NDD", community.FirstMembers)
	if err != nil || len(ms[community.RoleConsumer]) != 1 || ms[community.RoleConsumer][0].ID != bob || len(ms[community.RoleAuthor]) != 1 {
		t.Errorf("NDD members after apply: %v %v", ms, err)
	}
}

// TestExportWritesWhatPlanReads: a member whose username Parse would
// refuse (a federated directory may allow spaces) is exported by id, so
// the exported file plans no change to the members; a member group
// deleted by hand is left out with a warning, so its plan is the repair.
func TestExportWritesWhatPlanReads(t *testing.T) {
	svc, idp, desk := newService()
	odd := idp.AddUser(realm, "mary o'brien")
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "NDD", Name: "National data dictionary"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.ChangeMember(t.Context(), realm, desk, "NDD", community.RoleConsumer, odd, true); err != nil {
		t.Fatal(err)
	}
	// A member group deleted by hand is left out, with a warning.
	if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: "BARE", Name: "Bare"}); err != nil {
		t.Fatal(err)
	}
	if !idp.Delete(realm, "group", "/Communities/BARE/author") {
		t.Fatal("no author group of BARE to delete")
	}
	p := provision.New(svc, desk)
	exported, warnings, err := p.Export(t.Context(), realm)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "community BARE: its author group is missing in Keycloak") {
		t.Errorf("warnings %q", warnings)
	}
	data, err := provision.Marshal(exported)
	if err != nil {
		t.Fatal(err)
	}
	f, err := provision.Parse(data)
	if err != nil {
		t.Fatalf("the export does not parse: %v\n%s", err, data)
	}
	// The one change: BARE's repair (no member of it is added or removed).
	if plan, err := p.Plan(t.Context(), f, true); err != nil || len(plan) != 1 || plan[0].Kind != "repair" || plan[0].Label != "BARE" {
		t.Errorf("plan of the export: %v %v\n%s", plan, err, data)
	}
}

// TestApplyStopsWhenInterrupted: a cancelled pipeline's apply starts no
// change after the one under way, which runs to its end (cut off, a
// member's add could be reported failed and yet be made); the rest are
// reported not attempted, and the error says how many.
func TestApplyStopsWhenInterrupted(t *testing.T) {
	idp := &hookIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(memstore.New(), idp.IDP, idp)
	bob := idp.AddUser(realm, "bob")
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: ONE, name: One, consumers: [bob]}\n  - {label: TWO, name: Two}\n  - {label: THREE, name: Three}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pr := provision.New(svc, desk)
	plan, err := pr.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 4 {
		t.Fatalf("plan %v %v", plan, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	idp.onAdd = cancel // SIGTERM while bob is being added to ONE
	var results []provision.Result
	err = pr.Apply(ctx, f, plan, func(r provision.Result) { results = append(results, r) })
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "2 of 4 changes not attempted, 0 failed") {
		t.Errorf("apply: %v", err)
	}
	var got []string
	for _, r := range results {
		got = append(got, fmt.Sprintf("%s %s %q %v", r.Kind, r.Label, r.Error, r.NotAttempted))
	}
	want := []string{`create ONE "" false`, `add-member ONE "" false`, `create TWO "" true`, `create THREE "" true`}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	rows, err := svc.List(t.Context(), realm, 0, 0)
	if err != nil || len(rows) != 1 || rows[0].Label != "ONE" {
		t.Errorf("communities after the interrupted apply: %+v %v", rows, err)
	}
	if ms, err := svc.Members(t.Context(), realm, desk, "ONE", community.FirstMembers); err != nil || len(ms[community.RoleConsumer]) != 1 || ms[community.RoleConsumer][0].ID != bob {
		t.Errorf("ONE's members: %v %v", ms, err)
	}
}

// hookIDP runs beforeMembers before each bulk read of members, and
// onAdd when a member is added.
type hookIDP struct {
	*fakeidp.IDP
	beforeMembers func()
	onAdd         func()
}

func (h *hookIDP) AddMember(ctx context.Context, realm, groupID, userID string) error {
	if h.onAdd != nil {
		h.onAdd()
	}
	return h.IDP.AddMember(ctx, realm, groupID, userID)
}

func (h *hookIDP) MembersOf(ctx context.Context, realm string, groupIDs []string) (map[string][]community.Member, error) {
	if h.beforeMembers != nil {
		h.beforeMembers()
	}
	return h.IDP.MembersOf(ctx, realm, groupIDs)
}

// TestPlanSaysWhatChangedWhileItWasMade: plan reads the realm, then the
// members. A community deleted in between, or a member group deleted by
// hand in between (so no drift names it), cannot be compared: each is a
// conflict that says so, not a plan built on what is gone.
func TestPlanSaysWhatChangedWhileItWasMade(t *testing.T) {
	idp := &hookIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(memstore.New(), idp.IDP, idp)
	idp.AddUser(realm, "bob")
	for _, l := range []string{"GONE", "HALF", "FINE"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n" +
		"  - {label: GONE, name: GONE name, consumers: [bob]}\n" +
		"  - {label: HALF, name: HALF name, consumers: [bob]}\n" +
		"  - {label: FINE, name: FINE name, consumers: [bob]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	idp.beforeMembers = func() {
		idp.beforeMembers = nil
		if _, err := svc.Delete(t.Context(), realm, desk, community.DeleteRequest{Label: "GONE"}); err != nil {
			t.Error(err)
		}
		if !idp.Delete(realm, "group", "/Communities/HALF/consumer") {
			t.Error("no consumer group of HALF to delete")
		}
	}
	plan, err := provision.New(svc, desk).Plan(t.Context(), f, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range plan {
		got = append(got, a.Kind+" "+a.Label+": "+a.Detail+a.User)
	}
	want := []string{
		"conflict GONE: it was deleted while the plan was made",
		"conflict HALF: its consumer group could not be read, though the realm's survey found it whole a moment before: " +
			"check it with 'communities reconcile', then plan again",
		"add-member FINE: bob",
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan %q, want %q", got, want)
	}
}

// TestPruneRemovesAMemberNoReferenceNames: a username Keycloak took from a
// directory ("john smith") is no user reference the service takes; the
// removal --prune plans goes by the member's id, and happens.
func TestPruneRemovesAMemberNoReferenceNames(t *testing.T) {
	svc, idp, desk := newService()
	ctx := t.Context()
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "NDD", Name: "NDD", Dormant: true}); err != nil {
		t.Fatal(err)
	}
	john := idp.AddUser(realm, "john smith")
	if err := svc.ChangeMember(ctx, realm, desk, "NDD", community.RoleConsumer, john, true); err != nil {
		t.Fatal(err)
	}
	f, err := provision.Parse([]byte("realm: " + realm + "\ncommunities:\n  - {label: NDD, name: NDD, consumers: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pr := provision.New(svc, desk)
	plan, err := pr.Plan(ctx, f, true)
	if err != nil || len(plan) != 1 || plan[0].String() != "remove-member NDD consumer john smith" || plan[0].UserID != john {
		t.Fatalf("plan %v %v", plan, err)
	}
	if err := pr.Apply(ctx, f, plan, func(r provision.Result) {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Action, r.Error)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if plan, err = pr.Plan(ctx, f, true); err != nil || len(plan) != 0 {
		t.Errorf("plan after apply: %v %v", plan, err)
	}
}

// countIDP records the communities checked one by one and counts the
// bulk mends; onEnsure, onMend and onSurvey run as each begins, with
// mendErr the bulk mend fails, changing nothing, and with surveyErr the
// survey; stuck is realm drift no repair mends. With mendPage the bulk
// mend goes by pages of that many differences (community by community;
// internal/keycloak's goes kind by kind, so there too a community's may
// fall on two pages), and runs onPage before
// each page after the first: once its context has ended it sends no
// further page.
type countIDP struct {
	*fakeidp.IDP
	ensured                    []string
	mends, mendPage            int
	onEnsure, onMend, onSurvey func()
	onPage                     func()
	mendErr, surveyErr         error
	stuck                      *community.Drift
}

func (c *countIDP) EnsureRealm(ctx context.Context, realm, root string, repair bool) ([]community.Drift, error) {
	drift, err := c.IDP.EnsureRealm(ctx, realm, root, repair)
	if c.stuck != nil {
		drift = append(drift, *c.stuck)
	}
	return drift, err
}

func (c *countIDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	c.ensured = append(c.ensured, s.Label)
	if c.onEnsure != nil {
		c.onEnsure()
	}
	return c.IDP.Ensure(ctx, s, repair)
}

func (c *countIDP) MendShared(ctx context.Context, realm, root string, shared []community.SharedDrift) (map[string][]string, error) {
	c.mends++
	if c.onMend != nil {
		c.onMend()
	}
	if c.mendErr != nil {
		return nil, c.mendErr
	}
	if c.mendPage == 0 {
		return c.IDP.MendShared(ctx, realm, root, shared)
	}
	var each []community.SharedDrift // one difference each
	for _, sd := range shared {
		for _, d := range sd.Drift {
			each = append(each, community.SharedDrift{Spec: sd.Spec, Drift: []community.Drift{d}})
		}
	}
	mended := map[string][]string{}
	for i, page := range slices.Collect(slices.Chunk(each, c.mendPage)) {
		if i > 0 && c.onPage != nil {
			c.onPage()
		}
		if err := ctx.Err(); err != nil {
			return mended, err
		}
		got, err := c.IDP.MendShared(ctx, realm, root, page)
		for id, what := range got {
			mended[id] = append(mended[id], what...)
		}
		if err != nil {
			return mended, err
		}
	}
	return mended, nil
}

func (c *countIDP) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	if c.onSurvey != nil {
		c.onSurvey()
	}
	if c.surveyErr != nil {
		return community.Survey{}, c.surveyErr
	}
	sv, err := c.IDP.Survey(ctx, realm, root, specs)
	if c.stuck != nil {
		sv.Realm = append(sv.Realm, *c.stuck)
	}
	return sv, err
}

// repairsApplied applies the plan of f (a plan of repairs alone, of the
// communities of labels, "" for the realm's, which it checks) and returns
// each result as "label: error".
func repairsApplied(t *testing.T, p *provision.Provisioner, f *provision.File, labels ...string) ([]string, error) {
	t.Helper()
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, a := range plan {
		planned = append(planned, a.Kind+" "+a.Label)
	}
	if want := slices.Collect(func(yield func(string) bool) {
		for _, l := range labels {
			if l == "" {
				yield("repair-realm ")
				continue
			}
			yield("repair " + l)
		}
	}); !slices.Equal(planned, want) {
		t.Fatalf("plan %q, want %q", planned, want)
	}
	var got []string
	err = p.Apply(t.Context(), f, plan, func(r provision.Result) { got = append(got, r.Label+": "+r.Error) })
	return got, err
}

// TestApplyRepairsTogether: apply repaired what its plan found community
// by community, about 14 Keycloak calls each, even what every community
// lacks alike: the realm's admin permissions switched off (the realm's
// drift, which a plan named with every community), role:service-desk or
// community-owner deleted by hand. At 10,000 communities that was some
// 140,000 calls. Now its repairs are one drift pass, first: the realm's
// drift mended once (one repair-realm in the plan, which also repairs the
// communities whose admin permissions the plan could not compare while
// the realm's were off: here AAA's and BBB's aggregates), what
// communities share in one bulk mend, and only the survey's suspects
// checked on their own; then a stale record of a group's id, which the
// survey cannot see, by the community's own check, though the file lists
// it first. Each is reported in its turn and audited as the pipeline's,
// the realm's once, with no label. A bulk mend that fails fails the
// repairs it was to make, and only those (the realm's, for the
// communities it repairs); a survey that fails, all of them; a community
// deleted meanwhile is not repaired.
func TestApplyRepairsTogether(t *testing.T) {
	store := memstore.New()
	idp := &countIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(store, idp.IDP, idp)
	bob := idp.AddUser(realm, "bob")
	yml := "realm: r\ncommunities:\n  - {label: FFF, name: FFF name, consumers: [bob]}\n"
	for _, l := range []string{"FFF", "AAA", "BBB", "CCC", "DDD", "EEE"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
		if l != "FFF" {
			yml += "  - {label: " + l + ", name: " + l + " name}\n"
		}
	}
	f, err := provision.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	staleConsumers(t, store, "fff")
	drift := func() {
		t.Helper()
		idp.SwitchPermissionsOff(realm)
		idp.Unlink(realm, "AAA")
		idp.Unlink(realm, "BBB")
		if !idp.Delete(realm, fakeidp.RoleMapping, "/Communities/CCC/owner → "+fakeidp.OwnerRole) ||
			!idp.Delete(realm, fakeidp.Group, "/Communities/DDD/author") {
			t.Fatalf("nothing to delete: %v", idp.Artefacts(realm))
		}
	}
	drift()

	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range plan {
		got = append(got, strings.TrimSpace(a.Kind+" "+a.Label+" "+a.Role+" "+a.User))
	}
	// EEE lacks only the realm's drift, and AAA's and BBB's aggregates
	// cannot be read while the realm's admin permissions are off: the
	// realm's repair is theirs.
	want := []string{"repair-realm", "repair CCC", "repair DDD", "repair FFF", "add-member FFF consumer bob"}
	if !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}
	if s := plan[0].String(); s != "repair-realm: [admin permissions of realm "+realm+": not enabled]" {
		t.Errorf("the realm's repair planned as %q", s)
	}
	idp.ensured, idp.mends = nil, 0
	events := len(store.Events())
	var results []provision.Result
	if err := p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) }); err != nil {
		t.Fatalf("apply: %v, results %+v", err, results)
	}
	for i, r := range results {
		if r.Action.String() != plan[i].String() || r.Error != "" {
			t.Errorf("result %d: %+v, want %v done", i, r, plan[i])
		}
	}
	if slices.Sort(idp.ensured); !slices.Equal(idp.ensured, []string{"DDD", "FFF"}) || idp.mends != 1 {
		t.Errorf("checked %v one by one and mended %d times in bulk; want DDD's and FFF's checks and one mend", idp.ensured, idp.mends)
	}
	var repairs []string
	for _, ev := range store.Events()[events:] {
		if ev.Action == "repair" && ev.Outcome == "success" && ev.ActorClient == desk.ClientID {
			repairs = append(repairs, ev.Label)
		}
	}
	if slices.Sort(repairs); !slices.Equal(repairs, []string{"", "AAA", "BBB", "CCC", "DDD", "FFF"}) {
		t.Errorf("repair events for %q, want the realm's (no label), AAA, BBB, CCC, DDD and FFF", repairs)
	}
	if ms, err := svc.Members(t.Context(), realm, desk, "FFF", community.FirstMembers); err != nil ||
		len(ms[community.RoleConsumer]) != 1 || ms[community.RoleConsumer][0].ID != bob {
		t.Errorf("FFF's members after apply: %v %v", ms, err)
	}
	if plan, err := p.Plan(t.Context(), f, false); err != nil || len(plan) != 0 {
		t.Errorf("plan after apply: %v %v", plan, err)
	}

	// The bulk mend fails: CCC's repair fails with it, and the realm's,
	// naming AAA and BBB, which it repairs; DDD's (checked on its own) is
	// made.
	drift()
	idp.mendErr = errors.New("keycloak went away")
	got, err = repairsApplied(t, p, f, "", "CCC", "DDD")
	mendFailed := "mend r: 0 of 3 communities mended: Keycloak could not mend what the communities share: keycloak went away"
	want = []string{": 2 of the 4 communities it takes in not repaired: AAA: " + mendFailed + "; BBB: " + mendFailed,
		"CCC: " + mendFailed, "DDD: "}
	if err == nil || !strings.Contains(err.Error(), "2 of 3 changes failed") || !slices.Equal(got, want) {
		t.Errorf("apply with the bulk mend failing: %v, results %q; want %q", err, got, want)
	}
	idp.mendErr = nil

	// BBB is deleted while the bulk mend runs: its repair fails, saying
	// so; AAA's and CCC's are made.
	idp.onMend = func() {
		idp.onMend = nil
		if _, err := svc.Delete(t.Context(), realm, desk, community.DeleteRequest{Label: "BBB"}); err != nil {
			t.Error(err)
		}
	}
	got, err = repairsApplied(t, p, f, "AAA", "BBB", "CCC")
	want = []string{"AAA: ", "BBB: community not found: BBB is being deleted", "CCC: "}
	if err == nil || !slices.Equal(got, want) {
		t.Errorf("apply with BBB deleted meanwhile: %v, results %q; want %q", err, got, want)
	}

	// The survey fails: every repair fails with it, and nothing changes.
	f, err = provision.Parse([]byte(strings.Replace(yml, "  - {label: BBB, name: BBB name}\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	idp.SwitchPermissionsOff(realm)
	if !idp.Delete(realm, fakeidp.RoleMapping, "/Communities/CCC/owner → "+fakeidp.OwnerRole) ||
		!idp.Delete(realm, fakeidp.Group, "/Communities/DDD/author") {
		t.Fatalf("nothing to delete: %v", idp.Artefacts(realm))
	}
	plan, err = p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 3 {
		t.Fatalf("plan %v %v, want the realm's, CCC's and DDD's repairs", plan, err)
	}
	idp.surveyErr, idp.ensured, idp.mends = errors.New("keycloak went away"), nil, 0
	steps := idp.Steps()
	results = nil
	err = p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) })
	if err == nil || len(results) != 3 || slices.ContainsFunc(results, func(r provision.Result) bool { return !strings.Contains(r.Error, "keycloak went away") }) {
		t.Errorf("apply with the survey failing: %v, results %+v; want each failed with it", err, results)
	}
	if idp.Steps() != steps || len(idp.ensured) != 0 || idp.mends != 0 {
		t.Errorf("apply with the survey failing made %d changes, %d checks, %d mends; want none", idp.Steps()-steps, len(idp.ensured), idp.mends)
	}
}

// TestApplyReportsTheRepairsMadeBeforeItWasInterrupted: the repairs are
// one pass, which starts no further change once the pipeline is cancelled
// (each runs to its end): the suspect under way is made and reported so,
// the one after it and the bulk mend are not attempted, nor is anything
// after the repairs.
func TestApplyReportsTheRepairsMadeBeforeItWasInterrupted(t *testing.T) {
	idp := &countIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(memstore.New(), idp.IDP, idp)
	for _, l := range []string{"AAA", "BBB", "CCC"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
	}
	idp.Unlink(realm, "AAA")
	for _, l := range []string{"BBB", "CCC"} {
		idp.Delete(realm, fakeidp.Group, "/Communities/"+l+"/author")
	}
	f, err := provision.Parse([]byte("realm: r\ncommunities:\n  - {label: NEW, name: NEW name}\n" +
		"  - {label: AAA, name: AAA name}\n  - {label: BBB, name: BBB name}\n  - {label: CCC, name: CCC name}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 4 {
		t.Fatalf("plan %v %v", plan, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	idp.ensured, idp.onEnsure = nil, cancel // SIGTERM while BBB is repaired
	var got []string
	err = p.Apply(ctx, f, plan, func(r provision.Result) {
		got = append(got, fmt.Sprintf("%s %s %q %v", r.Kind, r.Label, r.Error, r.NotAttempted))
	})
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "3 of 4 changes not attempted, 0 failed") {
		t.Errorf("apply: %v", err)
	}
	want := []string{`repair AAA "" true`, `repair BBB "" false`, `repair CCC "" true`, `create NEW "" true`}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	if !slices.Equal(idp.ensured, []string{"BBB"}) || idp.mends != 0 {
		t.Errorf("checked %v one by one and mended %d times in bulk; want BBB's check alone", idp.ensured, idp.mends)
	}
	if _, drift, _, err := svc.Drift(t.Context(), realm); err != nil || len(drift["BBB"]) != 0 || len(drift["AAA"]) == 0 || len(drift["CCC"]) == 0 {
		t.Errorf("drift after the interrupted apply: %v %v; want BBB's repaired alone", drift, err)
	}
}

// TestApplyStopsTheBulkMendBetweenPages: the bulk mend rests between its
// pages (500 aggregates or 250 owner groups each), so a mend of 10,000
// takes minutes. A pipeline cancelled during it sends no further page:
// the communities of the pages sent are reported repaired and the others
// not attempted, and the next run takes them up. Before, the mend went on
// to its last page. A community mended in part fails: a change was made.
func TestApplyStopsTheBulkMendBetweenPages(t *testing.T) {
	idp := &countIDP{IDP: fakeidp.New(), mendPage: 2}
	svc, desk := newServiceVia(memstore.New(), idp.IDP, idp)
	file := "realm: r\ncommunities:\n"
	for _, l := range []string{"AAA", "BBB", "CCC", "DDD"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
		idp.Unlink(realm, l)
		file += "  - {label: " + l + ", name: " + l + " name}\n"
	}
	f, err := provision.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	plan, err := p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 4 {
		t.Fatalf("plan %v %v", plan, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	idp.onPage = cancel // SIGTERM after the first page
	var got []string
	err = p.Apply(ctx, f, plan, func(r provision.Result) {
		got = append(got, fmt.Sprintf("%s %s %q %v", r.Kind, r.Label, r.Error, r.NotAttempted))
	})
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "2 of 4 changes not attempted, 0 failed") {
		t.Errorf("apply: %v", err)
	}
	want := []string{`repair AAA "" false`, `repair BBB "" false`, `repair CCC "" true`, `repair DDD "" true`}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	_, drift, _, err := svc.Drift(t.Context(), realm)
	if err != nil || len(drift["AAA"]) != 0 || len(drift["BBB"]) != 0 || len(drift["CCC"]) == 0 || len(drift["DDD"]) == 0 {
		t.Errorf("drift after the interrupted apply: %v %v; want AAA's and BBB's repaired alone", drift, err)
	}

	idp.onPage = nil
	if plan, err = p.Plan(t.Context(), f, false); err != nil || len(plan) != 2 {
		t.Fatalf("plan after: %v %v; want CCC's and DDD's repairs", plan, err)
	}
	if err := p.Apply(t.Context(), f, plan, nil); err != nil {
		t.Errorf("apply after: %v", err)
	}
	if _, drift, _, err := svc.Drift(t.Context(), realm); err != nil || len(drift) != 0 {
		t.Errorf("drift after the second apply: %v %v", drift, err)
	}

	// AAA lacks two things, and the pipeline ends after the page that
	// mends the first.
	idp.Unlink(realm, "AAA")
	idp.Delete(realm, fakeidp.RoleMapping, "/Communities/AAA/owner → "+fakeidp.OwnerRole)
	idp.Unlink(realm, "BBB")
	if plan, err = p.Plan(t.Context(), f, false); err != nil || len(plan) != 2 {
		t.Fatalf("plan of AAA and BBB: %v %v", plan, err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	idp.mendPage, idp.onPage = 1, cancel
	got = nil
	err = p.Apply(ctx, f, plan, func(r provision.Result) {
		got = append(got, fmt.Sprintf("%s %s %v", r.Kind, r.Label, r.NotAttempted))
		if r.Label == "AAA" && !strings.Contains(r.Error, "context canceled") {
			t.Errorf("AAA mended in part: %q, want the mend's failure: the pipeline ended", r.Error)
		}
	})
	if want := []string{"repair AAA false", "repair BBB true"}; !slices.Equal(got, want) || err == nil {
		t.Errorf("results %q, %v; want %q and a failure", got, err, want)
	}
}

// TestPlanNamesTheRealmsDriftOnce: the realm's admin permissions switched
// off were planned as a repair of every community the file lists (10,000
// lines for one switch in the console), and not at all for a file that
// lists none that exists. Now the plan names the realm's repair once,
// first, and apply makes it whatever the file lists.
func TestPlanNamesTheRealmsDriftOnce(t *testing.T) {
	store := memstore.New()
	idp := &countIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(store, idp.IDP, idp)
	for _, l := range []string{"AAA", "BBB", "CCC"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
	}
	p := provision.New(svc, desk)
	for _, c := range []struct{ file, create string }{
		{"realm: r\ncommunities:\n  - {label: AAA, name: AAA name}\n  - {label: BBB, name: BBB name}\n" +
			"  - {label: CCC, name: CCC name}\n  - {label: NEW, name: NEW name}\n", "NEW"},
		{"realm: r\ncommunities:\n  - {label: NEXT, name: NEXT name}\n", "NEXT"}, // none that exists
	} {
		f, err := provision.Parse([]byte(c.file))
		if err != nil {
			t.Fatal(err)
		}
		idp.SwitchPermissionsOff(realm)
		plan, err := p.Plan(t.Context(), f, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range plan {
			got = append(got, a.String())
		}
		want := []string{"repair-realm: [admin permissions of realm " + realm + ": not enabled]", "create " + c.create + ": " + c.create + " name"}
		if !slices.Equal(got, want) {
			t.Fatalf("plan of %s: %q, want %q", c.create, got, want)
		}
		events := len(store.Events())
		idp.ensured = nil
		var results []string
		if err := p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r.Kind+" "+r.Error) }); err != nil {
			t.Fatalf("apply with %s: %v %q", c.create, err, results)
		}
		var realmRepairs []string
		for _, ev := range store.Events()[events:] {
			if ev.Action == "repair" {
				realmRepairs = append(realmRepairs, ev.Label+": "+ev.Detail)
			}
		}
		if !slices.Equal(realmRepairs, []string{": [admin permissions of realm " + realm + ": not enabled (repaired)]"}) || len(idp.ensured) != 0 {
			t.Errorf("apply with %s: repairs audited %q, %v checked one by one; want the realm's alone, none", c.create, realmRepairs, idp.ensured)
		}
		if plan, err := p.Plan(t.Context(), f, false); err != nil || len(plan) != 0 {
			t.Errorf("plan after apply with %s: %v %v", c.create, plan, err)
		}
	}
}

// TestRealmRepairSaysWhatItLeft: a repair-realm reports what no other
// action does. The communities it takes in that it could not repair fail
// it, ten named and the rest counted; those it did not reach before the
// pipeline was cancelled fail it too (an apply that exited 0 would hide
// them); a community the plan names only as a conflict is not taken in.
// And realm drift that appears after the plan, which no action names, is
// said by each repair it leaves unmended.
func TestRealmRepairSaysWhatItLeft(t *testing.T) {
	store := memstore.New()
	idp := &countIDP{IDP: fakeidp.New()}
	svc, desk := newServiceVia(store, idp.IDP, idp)
	yml := "realm: r\ncommunities:\n  - {label: REN, name: Another name}\n"
	var labels []string
	for i := range 12 {
		l := fmt.Sprintf("C%02d", i)
		labels = append(labels, l)
		yml += "  - {label: " + l + ", name: " + l + " name}\n"
	}
	for _, l := range append([]string{"REN"}, labels...) {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l + " name"}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := provision.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	p := provision.New(svc, desk)
	drift := func() []provision.Action {
		t.Helper()
		idp.SwitchPermissionsOff(realm)
		for _, l := range labels {
			idp.Unlink(realm, l)
		}
		// REN is renamed in the file: a conflict, whatever it lacks.
		idp.Unlink(realm, "REN")
		plan, err := p.Plan(t.Context(), f, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range plan {
			got = append(got, a.Kind+" "+a.Label)
		}
		if want := []string{"repair-realm ", "conflict REN"}; !slices.Equal(got, want) {
			t.Fatalf("plan %q, want %q", got, want)
		}
		return plan
	}

	// The bulk mend fails: twelve communities taken in are not repaired.
	plan := drift()
	idp.mendErr = errors.New("keycloak went away")
	var results []provision.Result
	err = p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) })
	mendFailed := "mend r: 0 of 12 communities mended: Keycloak could not mend what the communities share: keycloak went away"
	var named []string
	for _, l := range labels[:10] {
		named = append(named, l+": "+mendFailed)
	}
	want := "12 of the 12 communities it takes in not repaired: " + strings.Join(named, "; ") + "; and 2 more"
	if err == nil || len(results) != 2 || results[0].Error != want {
		t.Errorf("apply with the bulk mend failing: %v, results %+v; want the realm's repair failed with %q", err, results, want)
	}
	idp.mendErr = nil

	// The pipeline is cancelled as the pass surveys again, after the
	// realm's repair: the communities taken in are not reached.
	plan = drift()
	ctx, cancel := context.WithCancel(t.Context())
	surveys := 0
	idp.onSurvey = func() {
		if surveys++; surveys == 2 {
			cancel()
		}
	}
	results = nil
	err = p.Apply(ctx, f, plan, func(r provision.Result) { results = append(results, r) })
	idp.onSurvey = nil
	if err == nil || len(results) != 2 || results[0].Error != "interrupted before 12 of the 12 communities it takes in were repaired" {
		t.Errorf("apply cancelled during the pass: %v, results %+v; want the realm's repair failed, saying so", err, results)
	}

	// Made whole, the twelve are mended, and REN, a conflict, is not.
	plan = drift()
	results = nil
	if err := p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) }); err == nil ||
		len(results) != 2 || results[0].Error != "" || results[1].Kind != "conflict" {
		t.Errorf("apply: %v, results %+v; want the realm's repair made and REN's conflict", err, results)
	}
	for _, l := range append([]string{"REN"}, labels...) {
		if d, err := svc.Check(t.Context(), realm, l); err != nil || (len(d) == 0) != (l != "REN") {
			t.Errorf("%s after apply: drift %v %v; want REN's aggregate left as it was, the others mended", l, d, err)
		}
	}

	// Realm drift no repair mends, found after the plan: the repair it
	// leaves unmended says so.
	idp.Delete(realm, fakeidp.Group, "/Communities/C00/author")
	f, err = provision.Parse([]byte("realm: r\ncommunities:\n  - {label: C00, name: C00 name}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err = p.Plan(t.Context(), f, false)
	if err != nil || len(plan) != 1 || plan[0].Kind != "repair" {
		t.Fatalf("plan %v %v, want C00's repair", plan, err)
	}
	idp.stuck = &community.Drift{What: "admin permission role:service-desk", Problem: "type changed; take it off by hand"}
	results = nil
	err = p.Apply(t.Context(), f, plan, func(r provision.Result) { results = append(results, r) })
	if err == nil || len(results) != 1 || !strings.Contains(results[0].Error, idp.stuck.String()) {
		t.Errorf("apply with the realm's drift stuck since the plan: %v, results %+v; want C00's repair to name it", err, results)
	}
}
