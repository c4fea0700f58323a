package community_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/fakeidp"
	"github.com/nhs-terminology/communities/internal/community/memstore"
	"github.com/nhs-terminology/communities/internal/fault"
)

// The domain's sagas and rules over the in-memory store and the fake
// identity provider. What Keycloak and PostgreSQL themselves do is proved
// by the integration suite; here the subject is the domain's own logic.

const (
	realm    = "unit"
	root     = "Communities"
	fhir     = "terminology-client"
	creator  = "community-creator"
	deskRole = "service-desk"
)

type fixture struct {
	store *memstore.Store
	idp   *fakeidp.IDP
	svc   *community.Service
	desk  community.Actor
}

func newFixture(t *testing.T, lease time.Duration) *fixture {
	t.Helper()
	f := &fixture{store: memstore.New(), idp: fakeidp.New()}
	f.svc = community.New(f.store, f.idp, options(lease))
	f.desk = community.Actor{Subject: f.idp.AddUser(realm, "service-account-service-desk"), ClientID: "service-desk",
		Username: "service-account-service-desk", ServiceDesk: true}
	f.idp.GrantRole(realm, f.desk.Subject, deskRole)
	return f
}

func options(lease time.Duration) community.Options {
	return community.Options{RootGroup: root, FHIRClients: []string{fhir}, Roles: community.Roles{ServiceDesk: deskRole, Creator: creator}, Lease: lease,
		Logger: slog.New(slog.DiscardHandler)}
}

// user makes a user holding no role: a consumer at most.
func (f *fixture) user(name string) community.Actor {
	return community.Actor{Subject: f.idp.AddUser(realm, name), ClientID: "console", Username: name, RequestID: "req-" + name}
}

// creator makes an API-level author granted the creator role in Keycloak.
func (f *fixture) creator(name string) community.Actor {
	a := f.user(name)
	a.Creator, a.APIAuthor = true, true
	f.idp.GrantRole(realm, a.Subject, creator)
	return a
}

func (f *fixture) create(t *testing.T, a community.Actor, l string) *community.Community {
	t.Helper()
	c, err := f.svc.Create(t.Context(), realm, a, community.CreateRequest{Label: l, Name: "Community " + l})
	if err != nil {
		t.Fatalf("create %s: %v", l, err)
	}
	return c
}

// row is the registry row labelled l in any state, nil if none.
func (f *fixture) row(t *testing.T, l string) *community.Community {
	t.Helper()
	c, err := f.store.Get(t.Context(), realm, strings.ToLower(l))
	if errors.Is(err, community.ErrNoRecord) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// of lists the artefacts the fake holds that are named for label l.
func (f *fixture) of(l string) []string {
	var out []string
	for _, a := range f.idp.Artefacts(realm) {
		key, _, _ := strings.Cut(a, " #")
		if strings.Contains(key, "PERM_"+l+"_") || strings.Contains(key+" ", "/"+l+" ") || strings.Contains(key, "/"+l+"/") ||
			strings.Contains(key, "grouping/"+l+".") || strings.Contains(key, "community:"+l+":") {
			out = append(out, a)
		}
	}
	return out
}

// owners lists the user ids in the owner group of community l.
func (f *fixture) owners(t *testing.T, l string) []string {
	t.Helper()
	ms, err := f.idp.Members(t.Context(), realm, f.idp.ID(realm, fakeidp.Group, "/"+root+"/"+l+"/owner"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// last is the newest audit event of action.
func (f *fixture) last(t *testing.T, action string) community.AuditEvent {
	t.Helper()
	evs := f.store.Events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Action == action {
			return evs[i]
		}
	}
	t.Fatalf("no %s event in %+v", action, evs)
	return community.AuditEvent{}
}

// the artefacts of one community, with one FHIR client (Provision's
// batches as internal/keycloak makes them).
var artefactsOfNDD = []string{
	"admin permission community:NDD:membership",
	"admin permission community:NDD:membership-admins",
	"admin permission community:NDD:owners",
	"admin permission community:NDD:view",
	"group /Communities/NDD",
	"group /Communities/NDD/author",
	"group /Communities/NDD/consumer",
	"group /Communities/NDD/owner",
	"realm role PERM_NDD_READ",
	"realm role PERM_NDD_WRITE",
	"role mapping /Communities/NDD/author → PERM_NDD_READ",
	"role mapping /Communities/NDD/author → PERM_NDD_WRITE",
	"role mapping /Communities/NDD/consumer → PERM_NDD_READ",
	"role mapping /Communities/NDD/owner → community-owner",
}

// TestCreateAndDelete: the saga's happy path. A create leaves an active
// row whose artefact ids are the identity provider's, every artefact with
// the row's id as marker, the creator as the only owner, and an audit
// event; a delete removes the row and every artefact, keeps the users, and
// is audited.
func TestCreateAndDelete(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	alice.Claims = map[string]string{"requesting_system": "https://example.org/console"}
	before := f.idp.Artefacts(realm)

	c, err := f.svc.Create(ctx, realm, alice, community.CreateRequest{Label: "NDD", Name: "  National data dictionary "})
	if err != nil {
		t.Fatal(err)
	}
	if c.State != community.StateActive || c.LeaseUntil != nil || c.Name != "National data dictionary" {
		t.Errorf("create returned %+v", c)
	}
	row := f.row(t, "NDD")
	if row == nil || row.State != community.StateActive || row.LeaseUntil != nil || row.ID != c.ID ||
		row.CreatedBySub != alice.Subject || row.CreatedByClient != "console" {
		t.Fatalf("registry row %+v", row)
	}
	want := community.Artifacts{
		GroupID:         f.idp.ID(realm, fakeidp.Group, "/Communities/NDD"),
		OwnerGroupID:    f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/owner"),
		AuthorGroupID:   f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/author"),
		ConsumerGroupID: f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/consumer"),
		ReadRoleID:      f.idp.ID(realm, fakeidp.Role, "PERM_NDD_READ"),
		WriteRoleID:     f.idp.ID(realm, fakeidp.Role, "PERM_NDD_WRITE"),
	}
	if row.Artifacts != want || want.OwnerGroupID == "" || want.ReadRoleID == "" {
		t.Errorf("row's artefacts %+v, identity provider's %+v", row.Artifacts, want)
	}
	var keys []string
	for _, a := range f.of("NDD") {
		key, marker, marked := strings.Cut(a, " #")
		key, _, _ = strings.Cut(key, " members=")
		marker, _, _ = strings.Cut(marker, " members=")
		keys = append(keys, key)
		if mapping := strings.Contains(key, "mapping") || strings.HasPrefix(key, fakeidp.DefaultScope); marked == mapping || marked && marker != c.ID {
			t.Errorf("artefact %q: want the marker %s on everything but mappings", a, c.ID)
		}
	}
	if !slices.Equal(keys, artefactsOfNDD) {
		t.Errorf("artefacts made:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(artefactsOfNDD, "\n"))
	}
	if got := f.owners(t, "NDD"); !slices.Equal(got, []string{alice.Subject}) {
		t.Errorf("owners %v, want the creator only", got)
	}
	members, err := f.svc.Members(ctx, realm, alice, "ndd", community.FirstMembers)
	if err != nil || len(members[community.RoleOwner]) != 1 || len(members[community.RoleAuthor]) != 0 || len(members[community.RoleConsumer]) != 0 {
		t.Errorf("members as the creator sees them: %v %v", members, err)
	}
	if ev := f.last(t, "create"); ev.Outcome != "success" || ev.Label != "NDD" || ev.Name != "National data dictionary" ||
		ev.ActorSub != alice.Subject || ev.ActorClient != "console" || ev.RequestID != "req-alice" ||
		ev.Claims["requesting_system"] != "https://example.org/console" || ev.At.IsZero() {
		t.Errorf("create audit event %+v", ev)
	}
	if list, err := f.svc.List(ctx, realm, 0, 0); err != nil || len(list) != 1 || list[0].ID != c.ID {
		t.Errorf("list %+v %v", list, err)
	}
	if got, err := f.svc.Get(ctx, realm, "ndd"); err != nil || got.ID != c.ID {
		t.Errorf("get ignoring case: %+v %v", got, err)
	}

	if _, err := f.svc.Delete(ctx, realm, alice, community.DeleteRequest{Label: "NDD",
		Match: &community.Representation{SecurityLabel: "NDD", CommunityName: "National data dictionary"}}); err != nil {
		t.Fatal(err)
	}
	if r := f.row(t, "NDD"); r != nil {
		t.Errorf("row left after delete: %+v", r)
	}
	// The root group, made by the first create, is the realm's and stays.
	if after := f.idp.Artefacts(realm); !slices.Equal(after, append(before, "group /Communities")) {
		t.Errorf("delete left the identity provider holding\n%s", strings.Join(after, "\n"))
	}
	if u, err := f.idp.ResolveUser(ctx, realm, "alice"); err != nil || u.ID != alice.Subject {
		t.Errorf("the owner's user went with the community: %v", err)
	}
	if ev := f.last(t, "delete"); ev.Outcome != "success" || ev.Label != "NDD" || ev.ActorSub != alice.Subject {
		t.Errorf("delete audit event %+v", ev)
	}
	if _, err := f.svc.Get(ctx, realm, "NDD"); !errors.Is(err, community.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	// The label may still be on resources: a creator may not take it
	// again, nor change anything trying; service desk may.
	held := f.idp.Artefacts(realm)
	_, err = f.svc.Create(ctx, realm, alice, community.CreateRequest{Label: "ndd", Name: "Another"})
	if !errors.Is(err, community.ErrLabelRetired) || fault.KindOf(err) != fault.Conflict || !strings.Contains(err.Error(), "only service desk may reuse it") {
		t.Errorf("a creator's create of a deleted community's label: %v, want ErrLabelRetired (a conflict) naming who may", err)
	}
	if ev := f.last(t, "create"); ev.Outcome != "conflict" || ev.Label != "ndd" {
		t.Errorf("refused create audited as %+v", ev)
	}
	if after := f.idp.Artefacts(realm); !slices.Equal(after, held) || f.row(t, "NDD") != nil {
		t.Errorf("the refused create changed something: %v, row %+v", after, f.row(t, "NDD"))
	}
	f.create(t, f.desk, "NDD")
}

// TestDuplicateLabelOrName: labels and names are unique ignoring case; a
// clash is a conflict that changes nothing.
func TestDuplicateLabelOrName(t *testing.T) {
	f := newFixture(t, time.Minute)
	f.create(t, f.desk, "NDD")
	before := f.idp.Artefacts(realm)
	for _, req := range []community.CreateRequest{
		{Label: "ndd", Name: "Another name"},
		{Label: "OTHER", Name: "community ndd"},
	} {
		_, err := f.svc.Create(t.Context(), realm, f.desk, req)
		if !errors.Is(err, community.ErrDuplicate) || fault.KindOf(err) != fault.Conflict {
			t.Errorf("create %+v: %v, want a duplicate conflict", req, err)
		}
		if ev := f.last(t, "create"); ev.Outcome != "conflict" {
			t.Errorf("audit %+v", ev)
		}
	}
	if after := f.idp.Artefacts(realm); !slices.Equal(after, before) || f.row(t, "OTHER") != nil {
		t.Errorf("a refused duplicate changed something: %v", after)
	}
}

// TestWhoMayCreate: an API-level author holding the creator role in
// Keycloak now, or service desk; only service desk names owners or makes a
// dormant community. A refusal changes nothing and is audited.
func TestWhoMayCreate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		actor func(f *fixture) community.Actor
		req   func(f *fixture) community.CreateRequest
		err   error
		// owners the community gets, as usernames; nil with err
		owners []string
	}{
		// Service desk manages by its role; its community is dormant until
		// it appoints owners (issue 14: owning what it made bloated its
		// tokens until every request failed).
		{name: "service desk", actor: func(f *fixture) community.Actor { return f.desk },
			owners: nil},
		{name: "API author with the creator role", actor: func(f *fixture) community.Actor { return f.creator("alice") },
			owners: []string{"alice"}},
		{name: "creator role taken away since the token", err: community.ErrForbidden, actor: func(f *fixture) community.Actor {
			a := f.user("alice")
			a.Creator, a.APIAuthor = true, true
			return a
		}},
		{name: "creator without API-level author", err: community.ErrForbidden, actor: func(f *fixture) community.Actor {
			a := f.creator("alice")
			a.APIAuthor = false
			return a
		}},
		{name: "API author without the creator role", err: community.ErrForbidden, actor: func(f *fixture) community.Actor {
			a := f.user("alice")
			a.APIAuthor = true
			f.idp.GrantRole(realm, a.Subject, creator) // in Keycloak, but not in the token
			return a
		}},
		{name: "consumer", err: community.ErrForbidden, actor: func(f *fixture) community.Actor { return f.user("alice") }},
		{name: "creator naming owners", err: community.ErrForbidden,
			actor: func(f *fixture) community.Actor { return f.creator("alice") },
			req: func(f *fixture) community.CreateRequest {
				f.user("bob")
				return community.CreateRequest{Owners: []string{"bob"}}
			}},
		{name: "creator making a dormant community", err: community.ErrForbidden,
			actor: func(f *fixture) community.Actor { return f.creator("alice") },
			req:   func(*fixture) community.CreateRequest { return community.CreateRequest{Dormant: true} }},
		{name: "service desk naming owners by username and id", actor: func(f *fixture) community.Actor { return f.desk },
			req: func(f *fixture) community.CreateRequest {
				f.user("bob")
				carol := f.user("carol")
				return community.CreateRequest{Owners: []string{"bob", carol.Subject, "bob"}}
			},
			owners: []string{"bob", "carol"}},
		{name: "service desk making a dormant community", actor: func(f *fixture) community.Actor { return f.desk },
			req:    func(*fixture) community.CreateRequest { return community.CreateRequest{Dormant: true} },
			owners: []string{}},
		{name: "service desk naming a system account as an owner", err: community.ErrSystemAccount,
			actor: func(f *fixture) community.Actor { return f.desk },
			req: func(f *fixture) community.CreateRequest {
				f.user("bob")
				return community.CreateRequest{Owners: []string{"bob", f.idp.AddServiceAccount(realm, "acme-syndication")}}
			}},
		{name: "service desk naming a system account as an owner by its username", err: community.ErrSystemAccount,
			actor: func(f *fixture) community.Actor { return f.desk },
			req: func(f *fixture) community.CreateRequest {
				f.idp.AddServiceAccount(realm, "acme-syndication")
				return community.CreateRequest{Owners: []string{"service-account-acme-syndication"}}
			}},
		{name: "a system account granted the creator role", err: community.ErrSystemAccount,
			actor: func(f *fixture) community.Actor {
				a := f.creator("alice")
				a.Subject = f.idp.AddServiceAccount(realm, "acme-authoring")
				a.Username = "" // its tokens carry none
				f.idp.GrantRole(realm, a.Subject, creator)
				return a
			}},
		{name: "service desk naming an unknown owner", err: community.ErrUnknownUser,
			actor: func(f *fixture) community.Actor { return f.desk },
			req: func(f *fixture) community.CreateRequest {
				f.user("bob")
				return community.CreateRequest{Owners: []string{"bob", "nobody"}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, time.Minute)
			a := tc.actor(f)
			var req community.CreateRequest
			if tc.req != nil {
				req = tc.req(f)
			}
			req.Label, req.Name = "NDD", "National data dictionary"
			f.idp.FailAt(0, false)
			c, err := f.svc.Create(t.Context(), realm, a, req)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || fault.KindOf(err) != fault.KindOf(tc.err) {
					t.Fatalf("create: %v, want %v", err, tc.err)
				}
				if left := f.of("NDD"); len(left) > 0 || f.row(t, "NDD") != nil || f.idp.Steps() != 0 {
					t.Errorf("a refused create changed something: %v, %d mutating calls", left, f.idp.Steps())
				}
				if tc.err == community.ErrForbidden || tc.err == community.ErrSystemAccount {
					if ev := f.last(t, "create"); ev.Outcome != "denied" || ev.ActorSub != a.Subject {
						t.Errorf("refusal audited as %+v", ev)
					}
				}
				if tc.err == community.ErrSystemAccount && !strings.Contains(err.Error(), `client "acme-`) {
					t.Errorf("the refusal does not name the client: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			var got []string
			ms, err := f.idp.Members(t.Context(), realm, c.Artifacts.OwnerGroupID)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				got = append(got, m.Username)
			}
			if !slices.Equal(got, tc.owners) {
				t.Errorf("owners %v, want %v", got, tc.owners)
			}
		})
	}
}

// TestWhoMayDelete: service desk, or a current owner holding the creator
// role; only service desk may accept labelled resources; a delete naming
// another representation is a conflict. A refusal changes nothing.
func TestWhoMayDelete(t *testing.T) {
	for _, tc := range []struct {
		name  string
		actor func(t *testing.T, f *fixture, owner community.Actor) community.Actor
		req   community.DeleteRequest
		err   error
		// outcome is the audit trail's word for a refusal
		outcome string
	}{
		{name: "owner with the creator role", actor: func(_ *testing.T, _ *fixture, owner community.Actor) community.Actor { return owner }},
		{name: "service desk", actor: func(_ *testing.T, f *fixture, _ community.Actor) community.Actor { return f.desk }},
		{name: "creator who is not an owner", err: community.ErrForbidden, outcome: "denied",
			actor: func(_ *testing.T, f *fixture, _ community.Actor) community.Actor { return f.creator("bob") }},
		{name: "owner without the creator role", err: community.ErrForbidden, outcome: "denied",
			actor: func(t *testing.T, f *fixture, owner community.Actor) community.Actor {
				dave := f.user("dave")
				if err := f.svc.ChangeMember(t.Context(), realm, owner, "NDD", community.RoleOwner, "dave", true); err != nil {
					t.Fatal(err)
				}
				return dave
			}},
		{name: "consumer", err: community.ErrForbidden, outcome: "denied",
			actor: func(_ *testing.T, f *fixture, _ community.Actor) community.Actor { return f.user("carol") }},
		{name: "owner accepting labelled resources", err: community.ErrForbidden, outcome: "refused",
			req:   community.DeleteRequest{AcceptLabelled: true},
			actor: func(_ *testing.T, _ *fixture, owner community.Actor) community.Actor { return owner }},
		{name: "service desk naming another name", err: community.ErrMismatch, outcome: "conflict",
			req:   community.DeleteRequest{Match: &community.Representation{SecurityLabel: "NDD", CommunityName: "Other"}},
			actor: func(_ *testing.T, f *fixture, _ community.Actor) community.Actor { return f.desk }},
		{name: "service desk naming the label in another case", err: community.ErrMismatch, outcome: "conflict",
			req:   community.DeleteRequest{Match: &community.Representation{SecurityLabel: "ndd", CommunityName: "Community NDD"}},
			actor: func(_ *testing.T, f *fixture, _ community.Actor) community.Actor { return f.desk }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, time.Minute)
			owner := f.creator("alice")
			f.create(t, owner, "NDD")
			a := tc.actor(t, f, owner)
			before := f.idp.Artefacts(realm)
			req := tc.req
			req.Label = "NDD"
			_, err := f.svc.Delete(t.Context(), realm, a, req)
			if tc.err == nil {
				if err != nil || f.row(t, "NDD") != nil || len(f.of("NDD")) > 0 {
					t.Fatalf("delete: %v; left %v", err, f.of("NDD"))
				}
				return
			}
			if !errors.Is(err, tc.err) || fault.KindOf(err) != fault.KindOf(tc.err) {
				t.Fatalf("delete: %v, want %v", err, tc.err)
			}
			if r := f.row(t, "NDD"); r == nil || r.State != community.StateActive || !slices.Equal(f.idp.Artefacts(realm), before) {
				t.Errorf("a refused delete changed something: row %+v", r)
			}
			if ev := f.last(t, "delete"); ev.Outcome != tc.outcome || ev.ActorSub != a.Subject {
				t.Errorf("refusal audited as %+v, want outcome %s", ev, tc.outcome)
			}
		})
	}
	t.Run("unknown label", func(t *testing.T) {
		f := newFixture(t, time.Minute)
		if _, err := f.svc.Delete(t.Context(), realm, f.desk, community.DeleteRequest{Label: "NONE"}); !errors.Is(err, community.ErrNotFound) {
			t.Fatalf("delete: %v", err)
		}
		if ev := f.last(t, "delete"); ev.Outcome != "not-found" {
			t.Errorf("audit %+v", ev)
		}
	})
}

// TestWhoManagesMembers: the community's current owners and service desk
// manage its members; nobody else, creator or not, even to list them.
func TestWhoManagesMembers(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice, bob, carol := f.creator("alice"), f.user("bob"), f.creator("carol")
	f.create(t, alice, "NDD")
	authors := func() []string {
		ms, err := f.idp.Members(ctx, realm, f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/author"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Username)
		}
		return out
	}

	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleAuthor, "bob", true); err != nil {
		t.Fatalf("owner adds an author: %v", err)
	}
	if got := authors(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("authors %v", got)
	}
	if ev := f.last(t, "add-member"); ev.Outcome != "success" || ev.Detail != "author "+bob.Subject {
		t.Errorf("audit %+v", ev)
	}
	for _, who := range []community.Actor{carol, bob} {
		if err := f.svc.ChangeMember(ctx, realm, who, "NDD", community.RoleConsumer, "carol", true); !errors.Is(err, community.ErrForbidden) {
			t.Errorf("%s (not an owner) adds a member: %v", who.Username, err)
		}
		if err := f.svc.ChangeMember(ctx, realm, who, "NDD", community.RoleAuthor, "bob", false); !errors.Is(err, community.ErrForbidden) {
			t.Errorf("%s (not an owner) removes a member: %v", who.Username, err)
		}
		if _, err := f.svc.Members(ctx, realm, who, "NDD", community.FirstMembers); !errors.Is(err, community.ErrForbidden) {
			t.Errorf("%s (not an owner) lists the members: %v", who.Username, err)
		}
	}
	if ev := f.last(t, "remove-member"); ev.Outcome != "denied" || ev.ActorSub != bob.Subject {
		t.Errorf("audit %+v", ev)
	}
	if got := authors(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("refused changes changed the authors: %v", got)
	}
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleAuthor, "bob", false); err != nil {
		t.Errorf("service desk removes an author: %v", err)
	}
	if got := authors(); len(got) != 0 {
		t.Errorf("authors %v", got)
	}
	// Removing someone who is not a member is fine (idempotent).
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleAuthor, "bob", false); err != nil {
		t.Errorf("remove again: %v", err)
	}
	for _, tc := range []struct {
		role, user string
		err        error
	}{
		{"admin", "bob", community.ErrNotFound},
		{community.RoleAuthor, "nobody", community.ErrNotFound},
		{community.RoleAuthor, "../../admin", community.ErrInvalid},
	} {
		if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", tc.role, tc.user, true); !errors.Is(err, tc.err) {
			t.Errorf("add %s as %s: %v, want %v", tc.user, tc.role, err, tc.err)
		}
	}
}

// TestSystemAccountsJoinNoCommunity: a system account's service account
// user holds its profile's roles and nothing else. An owner could once add
// it by id to their community, and so give a system service desk issued
// privileges service desk did not choose.
func TestSystemAccountsJoinNoCommunity(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	f.create(t, alice, "NDD")
	sa := f.idp.AddServiceAccount(realm, "acme-syndication")
	members := func() []string {
		var out []string
		for _, role := range []string{community.RoleOwner, community.RoleAuthor, community.RoleConsumer} {
			ms, err := f.idp.Members(ctx, realm, f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/"+role))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				out = append(out, role+" "+m.Username)
			}
		}
		return out
	}
	before := members()
	audited := len(f.store.Events())
	for _, who := range []community.Actor{alice, f.desk} {
		for _, role := range []string{community.RoleOwner, community.RoleAuthor, community.RoleConsumer} {
			for _, ref := range []string{sa, "service-account-acme-syndication"} {
				err := f.svc.ChangeMember(ctx, realm, who, "NDD", role, ref, true)
				if !errors.Is(err, community.ErrSystemAccount) || fault.KindOf(err) != fault.Unprocessable ||
					!strings.Contains(err.Error(), `"acme-syndication"`) {
					t.Errorf("%s adds system account %s as %s: %v, want a 422 naming its client", who.Username, ref, role, err)
				}
			}
		}
	}
	refusals := f.store.Events()[audited:]
	if len(refusals) != 12 {
		t.Errorf("%d audit events for 12 refusals", len(refusals))
	}
	for _, ev := range refusals {
		if ev.Action != "add-member" || ev.Outcome != "denied" || !strings.Contains(ev.Detail, " "+sa+": ") ||
			!strings.Contains(ev.Detail, "acme-syndication") {
			t.Errorf("refusal audited as %+v", ev)
		}
	}
	if got := members(); !slices.Equal(got, before) {
		t.Errorf("refused adds changed the members: %v, were %v", got, before)
	}
	// One put in by hand, or before the service refused it, can be taken
	// out.
	consumers := f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/consumer")
	if err := f.idp.AddMember(ctx, realm, consumers, sa); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleConsumer, sa, false); err != nil {
		t.Errorf("owner removes the system account: %v", err)
	}
	if got := members(); !slices.Equal(got, before) {
		t.Errorf("after the removal the members are %v, want %v", got, before)
	}
}

// TestMissingOwnerGroupIsDrift: with the owner group gone, an owner's
// membership calls once answered "unavailable, try again", which trying
// again never fixes; it is a conflict that points to the repair.
func TestMissingOwnerGroupIsDrift(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	f.create(t, alice, "NDD")
	f.idp.Delete(realm, fakeidp.Group, "/Communities/NDD/owner")
	_, err := f.svc.Members(ctx, realm, alice, "NDD", community.FirstMembers)
	if fault.KindOf(err) != fault.Conflict || !strings.Contains(err.Error(), "reconcile --repair") {
		t.Errorf("members with the owner group gone: %v (kind %v), want a conflict naming the repair", err, fault.KindOf(err))
	}
	if _, err := f.svc.Delete(ctx, realm, alice, community.DeleteRequest{Label: "NDD"}); fault.KindOf(err) != fault.Conflict {
		t.Errorf("delete with the owner group gone: %v, want a conflict", err)
	}
}

// TestLastOwner: an owner cannot remove the last owner, themselves
// included; service desk can, leaving a dormant community whose owners
// only service desk appoints.
func TestLastOwner(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice, dave := f.creator("alice"), f.creator("dave")
	f.create(t, alice, "NDD")

	err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleOwner, "alice", false)
	if !errors.Is(err, community.ErrLastOwner) || fault.KindOf(err) != fault.Conflict {
		t.Fatalf("the last owner removes themselves: %v", err)
	}
	if ev := f.last(t, "remove-member"); ev.Outcome != "denied" || ev.Detail != "last owner" {
		t.Errorf("audit %+v", ev)
	}
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleOwner, "dave", true); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ChangeMember(ctx, realm, dave, "NDD", community.RoleOwner, "alice", false); err != nil {
		t.Fatalf("an owner removes another owner: %v", err)
	}
	if err := f.svc.ChangeMember(ctx, realm, dave, "NDD", community.RoleOwner, "dave", false); !errors.Is(err, community.ErrLastOwner) {
		t.Fatalf("the last owner removes themselves: %v", err)
	}
	if got := f.owners(t, "NDD"); !slices.Equal(got, []string{dave.Subject}) {
		t.Fatalf("owners %v", got)
	}

	if err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleOwner, "dave", false); err != nil {
		t.Fatalf("service desk removes the last owner: %v", err)
	}
	if got := f.owners(t, "NDD"); len(got) != 0 {
		t.Fatalf("owners %v", got)
	}
	// Dormant: the former owner cannot put themselves back.
	if err := f.svc.ChangeMember(ctx, realm, dave, "NDD", community.RoleOwner, "dave", true); !errors.Is(err, community.ErrForbidden) {
		t.Errorf("a former owner appoints themselves: %v", err)
	}
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleOwner, "alice", true); err != nil {
		t.Errorf("service desk appoints an owner: %v", err)
	}
	if got := f.owners(t, "NDD"); !slices.Equal(got, []string{alice.Subject}) {
		t.Errorf("owners %v", got)
	}
}

// TestDisabledOwnerIsNoOther: a disabled owner cannot manage the community,
// so the last enabled owner cannot leave on the strength of it; the
// disabled one may be removed.
func TestDisabledOwnerIsNoOther(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice, bob := f.creator("alice"), f.creator("bob")
	f.create(t, alice, "NDD")
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleOwner, "bob", true); err != nil {
		t.Fatal(err)
	}
	f.idp.DisableUser(realm, bob.Subject)
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleOwner, "alice", false); !errors.Is(err, community.ErrLastOwner) {
		t.Fatalf("the last enabled owner removes themselves beside a disabled one: %v", err)
	}
	ms, err := f.svc.Members(ctx, realm, alice, "NDD", community.FirstMembers)
	if err != nil {
		t.Fatal(err)
	}
	enabled := map[string]bool{}
	for _, m := range ms[community.RoleOwner] {
		enabled[m.Username] = m.Enabled
	}
	if !maps.Equal(enabled, map[string]bool{"alice": true, "bob": false}) {
		t.Errorf("owners and whether each is enabled: %v", enabled)
	}
	if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleOwner, "bob", false); err != nil {
		t.Fatalf("an owner removes a disabled owner: %v", err)
	}
	if got := f.owners(t, "NDD"); !slices.Equal(got, []string{alice.Subject}) {
		t.Errorf("owners %v", got)
	}
}

// TestMembersAreReadAPageAtATime: a read of members is bounded (a
// default community's consumers may be every user), by role and page, in
// username order; a page or role the service does not know is refused.
func TestMembersAreReadAPageAtATime(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	f.create(t, alice, "NDD")
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("user%d", i)
		f.idp.AddUser(realm, name)
		if err := f.svc.ChangeMember(ctx, realm, alice, "NDD", community.RoleConsumer, name, true); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	page := func(p community.MemberPage) map[string][]string {
		t.Helper()
		ms, err := f.svc.Members(ctx, realm, alice, "NDD", p)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		out := map[string][]string{}
		for role, m := range ms {
			out[role] = []string{}
			for _, u := range m {
				out[role] = append(out[role], u.Username)
			}
		}
		return out
	}
	if got := page(community.FirstMembers); !slices.Equal(got[community.RoleConsumer], want) ||
		!slices.Equal(got[community.RoleOwner], []string{"alice"}) || len(got[community.RoleAuthor]) != 0 || len(got) != 3 {
		t.Errorf("every role, default page: %v", got)
	}
	for _, c := range []struct {
		first, max int
		want       []string
	}{{0, 2, want[:2]}, {2, 2, want[2:4]}, {4, 2, want[4:]}, {5, 2, []string{}}} {
		got := page(community.MemberPage{Role: community.RoleConsumer, First: c.first, Max: c.max})
		if len(got) != 1 || !slices.Equal(got[community.RoleConsumer], c.want) {
			t.Errorf("consumers from %d, at most %d: %v, want %v", c.first, c.max, got, c.want)
		}
	}
	for _, p := range []community.MemberPage{{Role: "admin", Max: 1}, {First: -1, Max: 1}, {First: community.MaxFirstMember + 1, Max: 1},
		{}, {Max: -1}, {Max: community.MaxMembersPerRole + 1}} {
		if _, err := f.svc.Members(ctx, realm, alice, "NDD", p); !errors.Is(err, community.ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", p, err)
		}
	}

	// One page call for each role asked, never a read of a whole group.
	counted := &countingIDP{IDP: f.idp}
	svc := community.New(f.store, counted, options(time.Minute))
	for _, c := range []struct {
		p    community.MemberPage
		want int
	}{{community.FirstMembers, 3}, {community.MemberPage{Role: community.RoleConsumer, First: 2, Max: 2}, 1}} {
		counted.pages, counted.wholes = 0, 0
		if _, err := svc.Members(ctx, realm, alice, "NDD", c.p); err != nil {
			t.Fatal(err)
		}
		if counted.pages != c.want || counted.wholes != 0 {
			t.Errorf("%+v: %d page reads and %d whole reads, want %d and none", c.p, counted.pages, counted.wholes, c.want)
		}
	}
}

// countingIDP counts the reads of members through it.
type countingIDP struct {
	*fakeidp.IDP
	pages, wholes int
}

func (c *countingIDP) MembersPage(ctx context.Context, realm, groupID string, first, max int) ([]community.Member, error) {
	c.pages++
	return c.IDP.MembersPage(ctx, realm, groupID, first, max)
}

func (c *countingIDP) Members(ctx context.Context, realm, groupID string) ([]community.Member, error) {
	c.wholes++
	return c.IDP.Members(ctx, realm, groupID)
}

// TestOwnersRemovingEachOtherAtOnce: the last-owner check and the removal
// run under the community's lock, so two owners removing each other at the
// same moment leave one owner, never none. Each removal waits a little for
// the other to arrive, so the two overlap unless the lock keeps them apart.
func TestOwnersRemovingEachOtherAtOnce(t *testing.T) {
	f := newFixture(t, time.Minute)
	alice, dave := f.creator("alice"), f.creator("dave")
	f.create(t, alice, "NDD")
	if err := f.svc.ChangeMember(t.Context(), realm, alice, "NDD", community.RoleOwner, "dave", true); err != nil {
		t.Fatal(err)
	}
	svc := community.New(f.store, overlapping{f.idp, make(chan struct{})}, options(time.Minute))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pair := range [][2]community.Actor{{alice, dave}, {dave, alice}} {
		wg.Go(func() {
			errs[i] = svc.ChangeMember(t.Context(), realm, pair[0], "NDD", community.RoleOwner, pair[1].Username, false)
		})
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, community.ErrLastOwner), errors.Is(err, community.ErrForbidden):
			// Forbidden: the other's removal ran first, so the caller was
			// no longer an owner when asking.
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if got := f.owners(t, "NDD"); len(got) != 1 || refused != 1 {
		t.Fatalf("owners %v after %v", got, errs)
	}
}

// overlapping makes each RemoveMember wait up to 20ms for another to
// arrive before it goes ahead.
type overlapping struct {
	*fakeidp.IDP
	meet chan struct{}
}

func (o overlapping) RemoveMember(ctx context.Context, realm, groupID, userID string) error {
	select {
	case o.meet <- struct{}{}:
	case <-o.meet:
	case <-time.After(20 * time.Millisecond):
	}
	return o.IDP.RemoveMember(ctx, realm, groupID, userID)
}

// TestFaultAtEveryStepOfCreate fails each mutating call of a create in
// turn. Each time the caller gets the failure's kind (Unavailable, or
// Refused when the identity provider refused), with no internals in the
// public text, and nothing is left: no artefact, no row. The same create
// then succeeds.
func TestFaultAtEveryStepOfCreate(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	// Warm up: the root group exists afterwards, so every create below
	// takes the same steps.
	f.create(t, f.desk, "WARM")
	f.idp.FailAt(0, false)
	f.create(t, alice, "COUNT")
	steps := f.idp.Steps()
	if steps < 10 {
		t.Fatalf("a create made only %d mutating calls", steps)
	}
	t.Logf("create: %d mutating steps, each failed in turn", steps)
	for _, kind := range []error{fault.Unavailable, fault.Refused} {
		f.idp.Refuse(kind == fault.Refused)
		for step := 1; step <= steps; step++ {
			before := f.idp.Artefacts(realm)
			f.idp.FailAt(step, false)
			_, err := f.svc.Create(ctx, realm, alice, community.CreateRequest{Label: "FLAKY", Name: "Flaky"})
			if fault.KindOf(err) != kind {
				t.Fatalf("%v at step %d: %v, want kind %v", kind, step, err, kind)
			}
			if fe := (*fault.Error)(nil); !errors.As(err, &fe) || strings.Contains(fe.Public, "injected") {
				t.Errorf("%v at step %d: public text passes the cause on: %v", kind, step, err)
			}
			if after := f.idp.Artefacts(realm); !slices.Equal(after, before) {
				t.Errorf("%v at step %d left %v", kind, step, f.of("FLAKY"))
			}
			if r := f.row(t, "FLAKY"); r != nil {
				t.Errorf("%v at step %d left row %+v", kind, step, r)
			}
			if ev := f.last(t, "create"); ev.Outcome != "failed" {
				t.Errorf("%v at step %d audited as %+v", kind, step, ev)
			}
		}
	}
	f.idp.Refuse(false)
	f.idp.FailAt(0, false)
	f.create(t, alice, "FLAKY")
}

// TestStickyFaultDuringCreateIsRecovered: the identity provider fails at
// step n and stays down, so the undo fails too. Whatever was made stays,
// the row is kept as failed (the label reserved, the community invisible),
// and Recover removes everything once the fault is cleared.
func TestStickyFaultDuringCreateIsRecovered(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	f.create(t, f.desk, "WARM")
	f.idp.FailAt(0, false)
	f.create(t, f.desk, "COUNT")
	steps := f.idp.Steps()
	for step := 1; step <= steps; step++ {
		before := f.idp.Artefacts(realm)
		f.idp.FailAt(step, true)
		_, err := f.svc.Create(ctx, realm, f.desk, community.CreateRequest{Label: "DOWN", Name: "Down"})
		if fault.KindOf(err) != fault.Unavailable {
			t.Fatalf("sticky fault at step %d: %v", step, err)
		}
		r := f.row(t, "DOWN")
		if step == 1 {
			// The roles are made in one call: nothing was made, nothing
			// needed undoing.
			if r != nil || !slices.Equal(f.idp.Artefacts(realm), before) {
				t.Errorf("step 1: row %+v, artefacts %v", r, f.of("DOWN"))
			}
			continue
		}
		if r == nil || r.State != community.StateFailed || r.LastError == "" {
			t.Fatalf("sticky fault at step %d: row %+v, want failed", step, r)
		}
		if len(f.of("DOWN")) == 0 {
			t.Fatalf("sticky fault at step %d: nothing was left to recover", step)
		}
		if _, err := f.svc.Create(ctx, realm, f.desk, community.CreateRequest{Label: "down", Name: "Down again"}); !errors.Is(err, community.ErrDuplicate) {
			t.Errorf("step %d: the label was free while its undo was owed: %v", step, err)
		}
		if _, err := f.svc.Get(ctx, realm, "DOWN"); !errors.Is(err, community.ErrNotFound) {
			t.Errorf("step %d: a failed community is visible: %v", step, err)
		}
		// Still down: recovery keeps the row and tries again later.
		if n, err := f.svc.Recover(ctx, []string{realm}); n != 0 || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("step %d: recover while down: %d, %v", step, n, err)
		}
		if r := f.row(t, "DOWN"); r == nil || r.LeaseUntil == nil || !r.LeaseUntil.After(time.Now()) {
			t.Errorf("step %d: a recovery that failed did not keep the row with a renewed lease: %+v", step, r)
		}
		// The renewed lease keeps other recoveries off it.
		f.idp.FailAt(0, false)
		if n, err := f.svc.Recover(ctx, []string{realm}); n != 0 || err != nil {
			t.Errorf("step %d: recovery took a row under a live lease: %d, %v", step, n, err)
		}
		if err := f.store.Transition(ctx, r.ID, community.StateFailed, community.StateFailed, nil, new(time.Now()), nil, r.LastError); err != nil {
			t.Fatal(err)
		}
		if n, err := f.svc.Recover(ctx, []string{realm}); n != 1 || err != nil {
			t.Fatalf("step %d: recover: %d, %v", step, n, err)
		}
		if after := f.idp.Artefacts(realm); !slices.Equal(after, before) || f.row(t, "DOWN") != nil {
			t.Fatalf("step %d: recovery left %v, row %+v", step, f.of("DOWN"), f.row(t, "DOWN"))
		}
		if ev := f.last(t, "recover"); ev.Outcome != "success" || ev.Label != "DOWN" {
			t.Errorf("step %d: audit %+v", step, ev)
		}
	}
}

// TestFaultAtEveryStepOfDelete: a delete the identity provider interrupts
// fails Unavailable, hides the community at once, and Recover finishes it.
func TestFaultAtEveryStepOfDelete(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	f.create(t, f.desk, "GONE")
	f.idp.FailAt(0, false)
	if _, err := f.svc.Delete(ctx, realm, f.desk, community.DeleteRequest{Label: "GONE"}); err != nil {
		t.Fatal(err)
	}
	steps := f.idp.Steps()
	if steps < 5 {
		t.Fatalf("a delete made only %d mutating calls", steps)
	}
	t.Logf("delete: %d mutating steps, each failed in turn", steps)
	for step := 1; step <= steps; step++ {
		before := f.idp.Artefacts(realm)
		l := fmt.Sprintf("GONE%d", step)
		f.create(t, f.desk, l)
		f.idp.FailAt(step, true)
		if _, err := f.svc.Delete(ctx, realm, f.desk, community.DeleteRequest{Label: l}); fault.KindOf(err) != fault.Unavailable {
			t.Fatalf("fault at delete step %d: %v", step, err)
		}
		if _, err := f.svc.Get(ctx, realm, l); !errors.Is(err, community.ErrNotFound) {
			t.Errorf("step %d: a half-deleted community is visible: %v", step, err)
		}
		if r := f.row(t, l); r == nil || r.State != community.StateDeleting {
			t.Errorf("step %d: row %+v, want deleting", step, r)
		}
		f.idp.FailAt(0, false)
		if n, err := f.svc.Recover(ctx, []string{realm}); n != 1 || err != nil {
			t.Errorf("step %d: recover: %d, %v", step, n, err)
		}
		if after := f.idp.Artefacts(realm); !slices.Equal(after, before) || f.row(t, l) != nil {
			t.Errorf("step %d: recovery left %v, row %+v", step, f.of(l), f.row(t, l))
		}
	}
}

// TestForeignArtefactIsAConflict: an artefact of a needed name that is not
// the community's makes the create a conflict; it is left alone, and
// nothing else is kept.
func TestForeignArtefactIsAConflict(t *testing.T) {
	f := newFixture(t, time.Minute)
	f.create(t, f.desk, "WARM")
	f.idp.Add(realm, fakeidp.Role, "PERM_ROLECLASH_WRITE", "")
	f.idp.Add(realm, fakeidp.Group, "/Communities/GROUPCLASH", "")
	for l, left := range map[string][]string{
		"ROLECLASH":  {"realm role PERM_ROLECLASH_WRITE"},
		"GROUPCLASH": {"group /Communities/GROUPCLASH"},
	} {
		_, err := f.svc.Create(t.Context(), realm, f.desk, community.CreateRequest{Label: l, Name: l})
		if !errors.Is(err, community.ErrKeycloakClash) || fault.KindOf(err) != fault.Conflict {
			t.Errorf("create %s: %v, want a clash", l, err)
		}
		if got := f.of(l); !slices.Equal(got, left) {
			t.Errorf("after the clash over %s the identity provider holds %v, want %v", l, got, left)
		}
		if r := f.row(t, l); r != nil {
			t.Errorf("row kept: %+v", r)
		}
	}
}

// TestForeignScopeOfACommunityName: communities make no client scopes, so
// a hand-made grouping/<label>.write is no clash; but attached to a FHIR
// client without a role mapping it would be in every user's token, so
// the drift check takes it off the client at once, in report mode too,
// and a delete does the same. The scope itself is left: it is not ours.
func TestForeignScopeOfACommunityName(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	f.idp.Add(realm, fakeidp.Scope, "grouping/CLASH.write", "")
	attached := fakeidp.DefaultScope + " grouping/CLASH.write of client " + fhir
	attach := func() { f.idp.Add(realm, fakeidp.DefaultScope, "grouping/CLASH.write of client "+fhir, "") }
	attach()
	f.create(t, f.desk, "CLASH")
	reports, _, err := f.svc.Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []community.Drift{{What: attached, Critical: true, Repaired: true,
		Problem: "attached without its role mapping, so in every user's token; detached"}}
	if got := reports[0].Drift["CLASH"]; !slices.Equal(got, want) {
		t.Errorf("drift %v, want %v", got, want)
	}
	if f.idp.ID(realm, fakeidp.DefaultScope, "grouping/CLASH.write of client "+fhir) != "" {
		t.Error("the unmapped scope is still on the FHIR client")
	}
	attach()
	if _, err := f.svc.Delete(ctx, realm, f.desk, community.DeleteRequest{Label: "CLASH"}); err != nil {
		t.Fatal(err)
	}
	if got := f.of("CLASH"); !slices.Equal(got, []string{"client scope grouping/CLASH.write"}) {
		t.Errorf("after the delete the identity provider holds %v, want the foreign scope only, detached", got)
	}
}

// TestLegacyArtefacts: what an earlier version made for a community (the
// PERM_<label>_OWNER role, the grouping/<label>.read|write client scopes on
// the FHIR clients) is reported by a drift check, removed by a repair, and
// removed by a delete.
func TestLegacyArtefacts(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	plant := func(c *community.Community) {
		f.idp.Add(realm, fakeidp.Role, "PERM_"+c.Label+"_OWNER", c.ID)
		f.idp.Add(realm, fakeidp.Scope, "grouping/"+c.Label+".read", c.ID)
		f.idp.Add(realm, fakeidp.ScopeMapping, "grouping/"+c.Label+".read → PERM_"+c.Label+"_READ", "")
		f.idp.Add(realm, fakeidp.DefaultScope, "grouping/"+c.Label+".read of client "+fhir, "")
	}
	ndd := f.create(t, f.desk, "NDD")
	old := f.create(t, f.desk, "OLD")
	clean := f.of("NDD")
	plant(ndd)
	plant(old)

	before := f.idp.Artefacts(realm)
	f.idp.FailAt(1, true)
	reports, _, err := f.svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || f.idp.Steps() != 0 || !slices.Equal(f.idp.Artefacts(realm), before) {
		t.Fatalf("report-only reconcile: %v, %d mutating calls", err, f.idp.Steps())
	}
	f.idp.FailAt(0, false)
	want := []community.Drift{
		{What: "realm role PERM_NDD_OWNER", Problem: fakeidp.Earlier},
		{What: "client scope grouping/NDD.read", Problem: fakeidp.Earlier},
	}
	if got := reports[0].Drift["NDD"]; !slices.Equal(got, want) {
		t.Errorf("report: drift %v, want %v", got, want)
	}
	if reports, _, err = f.svc.Reconcile(ctx, []string{realm}, true); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].Repaired = true
	}
	if got := reports[0].Drift["NDD"]; !slices.Equal(got, want) {
		t.Errorf("repair: drift %v, want %v", got, want)
	}
	if got := f.of("NDD"); !slices.Equal(got, clean) {
		t.Errorf("after repair:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(clean, "\n"))
	}

	plant(old) // again, as if the repair had not reached it
	if _, err := f.svc.Delete(ctx, realm, f.desk, community.DeleteRequest{Label: "OLD"}); err != nil {
		t.Fatal(err)
	}
	if got := f.of("OLD"); len(got) != 0 {
		t.Errorf("a delete left %v", got)
	}
}

// TestRecoverAbandoned: a create or delete abandoned mid-way (its replica
// died) is left alone while its lease runs, then undone by Recover: nothing
// in the identity provider, no row.
func TestRecoverAbandoned(t *testing.T) {
	const lease = 100 * time.Millisecond
	f := newFixture(t, lease)
	ctx := t.Context()
	f.create(t, f.desk, "WARM")
	before := f.idp.Artefacts(realm)

	// A create that got half-way: row creating, some artefacts made.
	until := time.Now().Add(lease)
	half := &community.Community{ID: uuid.NewString(), Realm: realm, Label: "HALF", LabelKey: "half", Name: "Half", NameKey: "half",
		State: community.StateCreating, LeaseUntil: &until}
	if err := f.store.Reserve(ctx, half, false); err != nil {
		t.Fatal(err)
	}
	f.idp.FailAt(6, false)
	if _, err := f.idp.Provision(ctx, community.Spec{ID: half.ID, Realm: realm, Root: root, Label: "HALF", Name: "Half",
		FHIRClients: []string{fhir}}); err == nil {
		t.Fatal("the half-way create was not cut short")
	}
	f.idp.FailAt(0, false)
	// A delete that got half-way: row deleting, some artefacts removed.
	gone := f.create(t, f.desk, "GONE")
	if err := f.store.Transition(ctx, gone.ID, community.StateActive, community.StateDeleting, nil, &until, nil, ""); err != nil {
		t.Fatal(err)
	}
	f.idp.FailAt(3, false)
	if _, err := f.idp.Cleanup(ctx, realm, root, "GONE", gone.ID, []string{fhir}); err == nil {
		t.Fatal("the half-way delete was not cut short")
	}
	f.idp.FailAt(0, false)
	if len(f.of("HALF")) == 0 || len(f.of("GONE")) == 0 {
		t.Fatalf("nothing half-made: %v %v", f.of("HALF"), f.of("GONE"))
	}

	// In flight as far as anyone can tell: left alone.
	if n, err := f.svc.Recover(ctx, []string{realm}); n != 0 || err != nil {
		t.Fatalf("recover under live leases: %d, %v", n, err)
	}
	if f.row(t, "HALF") == nil || f.row(t, "GONE") == nil {
		t.Fatal("recovery took a row whose lease had not run out")
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	// Another realm's recovery does not take them.
	if n, err := f.svc.Recover(ctx, []string{"elsewhere"}); n != 0 || err != nil {
		t.Fatalf("recover of another realm: %d, %v", n, err)
	}
	if n, err := f.svc.Recover(ctx, []string{realm}); n != 2 || err != nil {
		t.Fatalf("recover: %d, %v", n, err)
	}
	if after := f.idp.Artefacts(realm); !slices.Equal(after, before) {
		t.Errorf("recovery left\n%s", strings.Join(slices.DeleteFunc(after, func(a string) bool { return slices.Contains(before, a) }), "\n"))
	}
	if f.row(t, "HALF") != nil || f.row(t, "GONE") != nil {
		t.Error("recovery left rows")
	}
	var recovered []string
	for _, ev := range f.store.Events() {
		if ev.Action == "recover" && ev.Outcome == "success" {
			recovered = append(recovered, ev.Label)
		}
	}
	slices.Sort(recovered)
	if !slices.Equal(recovered, []string{"GONE", "HALF"}) {
		t.Errorf("recoveries audited: %v", recovered)
	}
	if n, err := f.svc.Recover(ctx, []string{realm}); n != 0 || err != nil {
		t.Errorf("recover again: %d, %v", n, err)
	}
}

// TestReconcile: drift is reported without a single change; repair
// recreates what is missing and records the new ids; a community group
// without a row is an orphan, removed by repair when it carries this
// service's marker and only reported when it does not; an operation in
// flight is not an orphan.
func TestReconcile(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	ndd := f.create(t, f.desk, "NDD")
	f.create(t, f.desk, "OK")

	reports, ran, err := f.svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || !ran || len(reports) != 1 || reports[0].Communities != 2 || reports[0].DriftCount() != 0 {
		t.Fatalf("reconcile of a clean realm: %+v %v %v", reports, ran, err)
	}

	// Drift: someone deleted the author group (and with it its role
	// mappings).
	f.idp.Delete(realm, fakeidp.Group, "/Communities/NDD/author")
	// Orphans: a community's artefacts whose row is gone, and a group made
	// by hand under the root. An operation in flight has a row.
	orphan := uuid.NewString()
	if _, err := f.idp.Provision(ctx, community.Spec{ID: orphan, Realm: realm, Root: root, Label: "ORPHAN", Name: "Orphan",
		FHIRClients: []string{fhir}}); err != nil {
		t.Fatal(err)
	}
	f.idp.Add(realm, fakeidp.Group, "/Communities/HAND", "")
	// A marker that is no registry id was set by someone else: the group
	// is foreign, and the check of the realm goes on.
	f.idp.Add(realm, fakeidp.Group, "/Communities/ODD", "not-a-uuid")
	// So was a UUID in another form than the canonical one this service
	// writes (PostgreSQL refuses "urn:uuid:…", failing the whole pass).
	f.idp.Add(realm, fakeidp.Group, "/Communities/BRACED", "{"+uuid.NewString()+"}")
	f.idp.Add(realm, fakeidp.Group, "/Communities/URN", "urn:uuid:"+uuid.NewString())
	until := time.Now().Add(time.Minute)
	flight := &community.Community{ID: uuid.NewString(), Realm: realm, Label: "FLIGHT", LabelKey: "flight", Name: "Flight",
		NameKey: "flight", State: community.StateCreating, LeaseUntil: &until}
	if err := f.store.Reserve(ctx, flight, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.idp.Provision(ctx, community.Spec{ID: flight.ID, Realm: realm, Root: root, Label: "FLIGHT", Name: "Flight",
		FHIRClients: []string{fhir}}); err != nil {
		t.Fatal(err)
	}

	// Report only: any mutating call would fail, and none is made.
	before := f.idp.Artefacts(realm)
	f.idp.FailAt(1, true)
	reports, _, err = f.svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || f.idp.Steps() != 0 || !slices.Equal(f.idp.Artefacts(realm), before) {
		t.Fatalf("report-only reconcile: %v, %d mutating calls", err, f.idp.Steps())
	}
	f.idp.FailAt(0, false)
	rep := reports[0]
	want := []community.Drift{
		{What: "group /Communities/NDD/author", Problem: "missing"},
	}
	if !slices.Equal(rep.Drift["NDD"], want) || len(rep.Drift) != 1 {
		t.Errorf("drift %v, want %v", rep.Drift, want)
	}
	wantOrphans := []community.Orphan{{Label: "BRACED"}, {Label: "HAND"}, {Label: "ODD"}, {Label: "ORPHAN", ID: orphan}, {Label: "URN"}}
	if !slices.Equal(rep.Orphans, wantOrphans) || rep.OrphansRemoved != 0 || rep.Repair {
		t.Errorf("orphans %+v removed %d, want %+v", rep.Orphans, rep.OrphansRemoved, wantOrphans)
	}
	if r := f.row(t, "NDD"); r.Artifacts != ndd.Artifacts {
		t.Errorf("report-only reconcile changed the row's artefacts: %+v", r.Artifacts)
	}

	reports, _, err = f.svc.Reconcile(ctx, []string{realm}, true)
	if err != nil {
		t.Fatal(err)
	}
	rep = reports[0]
	for i := range want {
		want[i].Repaired = true
	}
	want = append(want,
		community.Drift{What: "role mapping /Communities/NDD/author → PERM_NDD_READ", Problem: "missing", Repaired: true},
		community.Drift{What: "role mapping /Communities/NDD/author → PERM_NDD_WRITE", Problem: "missing", Repaired: true})
	if !slices.Equal(rep.Drift["NDD"], want) {
		t.Errorf("repair: drift %v, want %v", rep.Drift["NDD"], want)
	}
	if !slices.Equal(rep.Orphans, wantOrphans) || rep.OrphansRemoved != 1 {
		t.Errorf("repair: orphans %+v, removed %d", rep.Orphans, rep.OrphansRemoved)
	}
	if left := f.of("ORPHAN"); len(left) > 0 {
		t.Errorf("repair left the orphan's %v", left)
	}
	for _, hand := range []string{"HAND", "BRACED", "URN"} {
		if f.idp.ID(realm, fakeidp.Group, "/Communities/"+hand) == "" {
			t.Errorf("repair removed group %s, made by hand", hand)
		}
	}
	if len(f.of("FLIGHT")) != len(artefactsOfNDD) {
		t.Errorf("repair touched an operation in flight: %v", f.of("FLIGHT"))
	}
	row := f.row(t, "NDD")
	author := f.idp.ID(realm, fakeidp.Group, "/Communities/NDD/author")
	if author == "" || author == ndd.Artifacts.AuthorGroupID || row.Artifacts.AuthorGroupID != author ||
		row.Artifacts.OwnerGroupID != ndd.Artifacts.OwnerGroupID {
		t.Errorf("the row's artefacts after repair %+v; the author group is now %s", row.Artifacts, author)
	}
	if ev := f.last(t, "repair"); ev.Label != "NDD" || ev.Outcome != "success" || ev.ActorClient != "communities-reconciler" {
		t.Errorf("audit %+v", ev)
	}
	if ev := f.last(t, "remove-orphan"); ev.Label != "ORPHAN" || ev.Outcome != "success" || ev.ActorClient != "communities-reconciler" {
		t.Errorf("audit %+v", ev)
	}
	// The row names the recreated group: a member can be added to it.
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleAuthor, "service-account-service-desk", true); err != nil {
		t.Errorf("add an author after repair: %v", err)
	}

	reports, _, err = f.svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || reports[0].Drift["NDD"] != nil || !slices.Equal(reports[0].Orphans, []community.Orphan{{Label: "BRACED"}, {Label: "HAND"}, {Label: "ODD"}, {Label: "URN"}}) {
		t.Errorf("after repair: %+v %v", reports, err)
	}

	// Check reports one community's drift; Repair mends it the same way,
	// audited as its caller's (apply's, from the command line).
	f.idp.Delete(realm, fakeidp.Role, "PERM_OK_WRITE")
	drift, err := f.svc.Check(ctx, realm, "ok")
	if err != nil || len(drift) == 0 || drift[0].What != "realm role PERM_OK_WRITE" || drift[0].Repaired {
		t.Errorf("check: %v %v", drift, err)
	}
	cli := community.Actor{ClientID: "communities-cli", Username: "pipeline"}
	drift, err = f.svc.Repair(ctx, realm, "ok", cli)
	if err != nil || len(drift) == 0 || drift[0].What != "realm role PERM_OK_WRITE" || !drift[0].Repaired {
		t.Errorf("repair: %v %v", drift, err)
	}
	if ev := f.last(t, "repair"); ev.Label != "OK" || ev.ActorClient != cli.ClientID || ev.ActorUsername != cli.Username {
		t.Errorf("repair audited as %+v", ev)
	}
	if f.row(t, "OK").Artifacts.WriteRoleID != f.idp.ID(realm, fakeidp.Role, "PERM_OK_WRITE") {
		t.Error("check did not record the recreated role")
	}
}

// TestEnsureDefaults: the default communities are made dormant by service
// desk, their consumer groups become default groups, and a second run
// changes nothing.
func TestEnsureDefaults(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	defaults, err := community.ParseDefaults([]string{"Open=Open", "Restricted=Restricted"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.EnsureDefaults(ctx, realm, defaults); err != nil {
		t.Fatal(err)
	}
	var consumers []string
	for _, l := range []string{"Open", "Restricted"} {
		r := f.row(t, l)
		if r == nil || r.State != community.StateActive {
			t.Fatalf("%s: %+v", l, r)
		}
		if got := f.owners(t, l); len(got) != 0 {
			t.Errorf("%s has owners %v; a default community is dormant", l, got)
		}
		consumers = append(consumers, r.Artifacts.ConsumerGroupID)
	}
	slices.Sort(consumers)
	if got := f.idp.DefaultGroups(realm); !slices.Equal(got, consumers) {
		t.Errorf("default groups %v, want the consumer groups %v", got, consumers)
	}
	before := f.idp.Artefacts(realm)
	if err := f.svc.EnsureDefaults(ctx, realm, defaults); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.idp.Artefacts(realm), before) || !slices.Equal(f.idp.DefaultGroups(realm), consumers) {
		t.Error("a second run changed something")
	}
}

// racingIDP is the fake with hooks: its survey suspects more than it finds
// (as a bulk read whose pages moved would), and something can happen
// while a suspect is confirmed.
type racingIDP struct {
	*fakeidp.IDP
	suspect     []string // community ids the survey suspects besides
	onEnsure    func(community.Spec)
	afterSurvey func()
	// late makes Provision fail as a call the service gave up waiting for,
	// keeping its spec in held for the test to commit late.
	late bool
	held []community.Spec
}

func (r *racingIDP) Provision(ctx context.Context, s community.Spec) (community.Artifacts, error) {
	if r.late {
		r.held = append(r.held, s)
		return community.Artifacts{}, fault.New(fault.Unavailable, "Keycloak did not answer in time", context.DeadlineExceeded)
	}
	return r.IDP.Provision(ctx, s)
}

// racing is a service over a racingIDP, with a service desk actor.
func racing() (*memstore.Store, *racingIDP, *community.Service, community.Actor) {
	store, idp := memstore.New(), &racingIDP{IDP: fakeidp.New()}
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	return store, idp, community.New(store, idp, options(time.Minute)), desk
}

func (r *racingIDP) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	sv, err := r.IDP.Survey(ctx, realm, root, specs)
	for _, id := range r.suspect {
		if sv.Suspects == nil {
			sv.Suspects = map[string][]community.Drift{}
		}
		sv.Suspects[id] = append(sv.Suspects[id], community.Drift{What: "group /Communities/?", Problem: "missing"})
	}
	if r.afterSurvey != nil {
		r.afterSurvey()
	}
	return sv, err
}

func (r *racingIDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	if r.onEnsure != nil {
		r.onEnsure(s)
	}
	return r.IDP.Ensure(ctx, s, repair)
}

// TestReconcileConfirmsSuspects: a bulk survey only suspects. What Ensure
// does not confirm is not drift, and neither is what a community lacks
// because a delete began while it was being confirmed; a real drift beside
// them is still reported. A group whose row a delete removed after the
// survey read it is no orphan; a real orphan still is.
func TestReconcileConfirmsSuspects(t *testing.T) {
	store, idp, svc, desk := racing()
	ctx := t.Context()
	rows := map[string]*community.Community{}
	for _, l := range []string{"NDD", "OK", "GONE", "CLEAN", "DONE", "LOST"} {
		c, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: "Community " + l})
		if err != nil {
			t.Fatal(err)
		}
		rows[l] = c
	}
	idp.Delete(realm, fakeidp.Group, "/Communities/NDD/consumer")
	idp.Delete(realm, fakeidp.Group, "/Communities/GONE/author")
	idp.suspect = []string{rows["OK"].ID}
	// LOST's row is gone, its artefacts are not: an orphan.
	if err := store.Remove(ctx, rows["LOST"].ID, community.StateActive); err != nil {
		t.Fatal(err)
	}
	// DONE's delete has begun before the pass, and ends, artefacts and
	// row, just after the survey read its group.
	done, lease := rows["DONE"].ID, time.Now().Add(time.Minute)
	if err := store.Transition(ctx, done, community.StateActive, community.StateDeleting, nil, &lease, nil, ""); err != nil {
		t.Fatal(err)
	}
	// Two groups without a marker of this service: HAND stays (someone
	// else's, reported), VANISHED is deleted just after the survey read it
	// (the bulk survey could once see such a group without its marker).
	idp.Add(realm, fakeidp.Group, "/Communities/HAND", "")
	idp.Add(realm, fakeidp.Group, "/Communities/VANISHED", "")
	idp.afterSurvey = func() {
		if _, err := idp.Cleanup(ctx, realm, root, "DONE", done, []string{fhir}); err != nil {
			t.Error(err)
		}
		idp.Delete(realm, fakeidp.Group, "/Communities/VANISHED")
		if err := store.Remove(ctx, done, community.StateDeleting); err != nil {
			t.Error(err)
		}
	}
	var confirmed []string
	idp.onEnsure = func(s community.Spec) {
		confirmed = append(confirmed, s.Label)
		if s.Label == "GONE" { // a delete begins
			lease := time.Now().Add(time.Minute)
			if err := store.Transition(ctx, s.ID, community.StateActive, community.StateDeleting, nil, &lease, nil, ""); err != nil {
				t.Error(err)
			}
		}
	}
	reports, _, err := svc.Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(confirmed)
	if !slices.Equal(confirmed, []string{"GONE", "NDD", "OK"}) {
		t.Errorf("confirmed %v, want every suspect and nothing else (CLEAN is not one)", confirmed)
	}
	want := map[string][]community.Drift{"NDD": {{What: "group /Communities/NDD/consumer", Problem: "missing"}}}
	if got := reports[0].Drift; len(got) != 1 || !slices.Equal(got["NDD"], want["NDD"]) {
		t.Errorf("drift %v, want %v", got, want)
	}
	slices.SortFunc(reports[0].Orphans, func(a, b community.Orphan) int { return strings.Compare(a.Label, b.Label) })
	if got := reports[0].Orphans; !slices.Equal(got, []community.Orphan{{Label: "HAND"}, {Label: "LOST", ID: rows["LOST"].ID}}) {
		t.Errorf("orphans %+v, want HAND and LOST", got)
	}
}

// TestRepairAndDeleteDoNotInterleave: a delete that arrives while a repair
// makes a community's missing artefacts waits for it, then removes all of
// them; it never lets the repair re-make what it removed, which left
// artefacts without a row that blocked the label (the review of
// 2026-11-24). The same holds for Check with repair, which apply uses.
func TestRepairAndDeleteDoNotInterleave(t *testing.T) {
	for _, via := range []string{"Reconcile", "Check"} {
		t.Run(via, func(t *testing.T) {
			_, idp, svc, desk := racing()
			ctx := t.Context()
			if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "NDD", Name: "N"}); err != nil {
				t.Fatal(err)
			}
			idp.Delete(realm, fakeidp.Group, "/Communities/NDD/consumer")
			deleted := make(chan error, 1)
			idp.onEnsure = func(community.Spec) {
				idp.onEnsure = nil
				go func() {
					_, err := svc.Delete(ctx, realm, desk, community.DeleteRequest{Label: "NDD"})
					deleted <- err
				}()
				// Let the delete run to its end if nothing holds it back
				// (as before the fix); with the lock it waits for the
				// repair, and this only waits a little.
				select {
				case err := <-deleted:
					deleted <- err
				case <-time.After(200 * time.Millisecond):
				}
			}
			var err error
			if via == "Reconcile" {
				_, _, err = svc.Reconcile(ctx, []string{realm}, true)
			} else {
				_, err = svc.Repair(ctx, realm, "NDD", desk)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := <-deleted; err != nil {
				t.Fatalf("delete: %v", err)
			}
			if left := slices.DeleteFunc(idp.Artefacts(realm), func(a string) bool { return !strings.Contains(a, "NDD") }); len(left) > 0 {
				t.Errorf("after the delete, Keycloak holds %v", left)
			}
			if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "NDD", Name: "N again"}); err != nil {
				t.Errorf("create NDD again: %v", err)
			}
		})
	}
}

// TestReconcileFindsOrphanRolesAndPermissions: roles and admin permissions
// whose group and row are gone (a create Keycloak committed after its
// undo, a delete while the realm's admin permissions were off) once went
// unreported and blocked their label for good. They are reported, removed
// with repair, and the label can be used again; what a delete removes
// after the survey read it is no orphan.
func TestReconcileFindsOrphanRolesAndPermissions(t *testing.T) {
	store, idp, svc, desk := racing()
	ctx := t.Context()
	var lost, gone *community.Community
	for _, l := range []string{"LOST", "GONE", "KEPT"} {
		c, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: "Community " + l})
		if err != nil {
			t.Fatal(err)
		}
		switch l {
		case "LOST":
			lost = c
		case "GONE":
			gone = c
		}
	}
	// LOST: its row and its group went, its roles and permissions stayed.
	for _, c := range []*community.Community{lost, gone} {
		if err := store.Remove(ctx, c.ID, community.StateActive); err != nil {
			t.Fatal(err)
		}
		idp.Delete(realm, fakeidp.Group, "/Communities/"+c.Label)
	}
	// GONE: its roles and permissions are removed after the survey read them.
	idp.afterSurvey = func() {
		if _, err := idp.Cleanup(ctx, realm, root, "GONE", gone.ID, []string{fhir}); err != nil {
			t.Error(err)
		}
	}
	reps, _, err := svc.Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := reps[0].Orphans; len(o) != 1 || o[0].Label != "LOST" || o[0].ID != lost.ID || !strings.HasPrefix(o[0].Artefact, "admin permission community:LOST:") {
		t.Fatalf("orphans %+v; want one of LOST, named by an artefact", o)
	}
	if len(reps[0].Drift) != 0 {
		t.Errorf("drift %v", reps[0].Drift)
	}
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "LOST", Name: "Again"}); !errors.Is(err, community.ErrKeycloakClash) {
		t.Fatalf("re-create before repair: %v, want the clash the orphans cause", err)
	}

	idp.afterSurvey = nil
	reps, _, err = svc.Reconcile(ctx, []string{realm}, true)
	if err != nil || len(reps[0].Orphans) != 1 || reps[0].OrphansRemoved != 1 {
		t.Fatalf("repair: %+v %v", reps, err)
	}
	if left := idp.Artefacts(realm); slices.ContainsFunc(left, func(a string) bool { return strings.Contains(a, lost.ID) }) {
		t.Errorf("repair left %v", left)
	}
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "LOST", Name: "Again"}); err != nil {
		t.Errorf("re-create after repair: %v", err)
	}
	if reps, _, err = svc.Reconcile(ctx, []string{realm}, false); err != nil || reps[0].DriftCount() != 0 {
		t.Errorf("after the repair: %+v %v", reps, err)
	}
}

// TestLateCommitAfterUndoIsFinished: Keycloak commits a create's call
// after the service gave up waiting for it and undid the create (which
// found nothing to remove). What it made carries the undone row's id: the
// next drift check removes it even when it only reports, as the rest of
// the undo, without calling it drift, and the label can be used again.
func TestLateCommitAfterUndoIsFinished(t *testing.T) {
	store, idp, svc, desk := racing()
	ctx := t.Context()
	idp.late = true
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "LATE", Name: "Late"}); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("create whose call went unanswered: %v, want unavailable", err)
	}
	idp.late = false
	if _, err := store.Get(ctx, realm, "late"); !errors.Is(err, community.ErrNoRecord) {
		t.Fatalf("the undo left the row: %v", err)
	}
	undone := idp.held[0].ID
	if tr, err := store.Trace(ctx, realm, "late", undone); err != nil || tr != community.TraceUndone {
		t.Fatalf("trace of the undone create: %v %v", tr, err)
	}
	if _, err := idp.IDP.Provision(ctx, idp.held[0]); err != nil {
		t.Fatal(err)
	}
	carries := func() bool {
		return slices.ContainsFunc(idp.Artefacts(realm), func(a string) bool { return strings.Contains(a, undone) })
	}
	if !carries() {
		t.Fatal("the late commit made nothing")
	}

	// Keycloak refusing the removal does not fail the pass: the leftovers
	// are reported as an orphan, and the next pass removes them.
	idp.FailAt(1, true)
	reps, _, err := svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || len(reps[0].Orphans) != 1 || len(reps[0].UndoneFinished) != 0 || !carries() {
		t.Fatalf("pass whose removal failed: %+v %v", reps, err)
	}
	idp.FailAt(0, false)
	reps, _, err = svc.Reconcile(ctx, []string{realm}, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := reps[0]; !slices.Equal(r.UndoneFinished, []string{"LATE"}) || len(r.Orphans) != 0 || r.DriftCount() != 0 {
		t.Errorf("report %+v; want the undone create finished, and no drift", r)
	}
	if carries() {
		t.Errorf("a drift check left what the late commit made: %v", idp.Artefacts(realm))
	}
	if !slices.ContainsFunc(store.Events(), func(e community.AuditEvent) bool {
		return e.Action == "recover" && e.Label == "LATE" && e.Outcome == "success"
	}) {
		t.Errorf("no recover event in %+v", store.Events())
	}
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "LATE", Name: "Late"}); err != nil {
		t.Errorf("create again: %v", err)
	}
	if reps, _, err = svc.Reconcile(ctx, []string{realm}, false); err != nil || reps[0].DriftCount() != 0 || len(reps[0].UndoneFinished) != 0 {
		t.Errorf("after the second create: %+v %v", reps, err)
	}
}

// TestRetriedCreateFinishesALateUndo: a create of a label whose earlier
// create was undone, and then committed late by Keycloak, finishes that
// undo and is made at once, without waiting for the drift check. A clash
// with what no undone create of the label made stays a clash, and so does
// one whose leftovers cannot be removed now.
func TestRetriedCreateFinishesALateUndo(t *testing.T) {
	store, idp, svc, desk := racing()
	desk.RequestID = "req-retry"
	ctx := t.Context()
	create := func() error {
		_, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "LATE", Name: "Late"})
		return err
	}
	idp.late = true
	if err := create(); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("create whose call went unanswered: %v, want unavailable", err)
	}
	idp.late = false
	undone := idp.held[0].ID
	if _, err := idp.IDP.Provision(ctx, idp.held[0]); err != nil {
		t.Fatal(err)
	}
	carries := func(id string) bool {
		return slices.ContainsFunc(idp.Artefacts(realm), func(a string) bool { return strings.Contains(a, id) })
	}

	// Keycloak refusing the removal: the clash is answered as it is.
	idp.FailAt(2, false) // the create's call clashes, then the removal fails
	if err := create(); !errors.Is(err, community.ErrKeycloakClash) {
		t.Fatalf("create while the removal fails: %v, want the clash", err)
	}
	if !carries(undone) {
		t.Fatal("the failed removal removed something")
	}
	idp.FailAt(0, false)

	if err := create(); err != nil {
		t.Fatalf("create again: %v", err)
	}
	row, err := store.Get(ctx, realm, "late")
	if err != nil || row.State != community.StateActive {
		t.Fatalf("row after the retry: %+v %v", row, err)
	}
	if carries(undone) || !carries(row.ID) {
		t.Errorf("Keycloak holds %v; want only the artefacts of %s", idp.Artefacts(realm), row.ID)
	}
	if !slices.ContainsFunc(store.Events(), func(e community.AuditEvent) bool {
		// The retry's request id: the removal is part of that request.
		return e.Action == "recover" && e.Label == "LATE" && e.Outcome == "success" && e.RequestID == "req-retry"
	}) {
		t.Errorf("no recover event in %+v", store.Events())
	}
	if reps, _, err := svc.Reconcile(ctx, []string{realm}, false); err != nil || reps[0].DriftCount() != 0 || len(reps[0].UndoneFinished) != 0 {
		t.Errorf("drift check after the retry: %+v %v", reps, err)
	}

	// A clash with what someone made by hand: no undone create of the
	// label made it, so nothing is removed and the create is refused.
	idp.Add(realm, "group", "/Communities/HAND", "")
	_, err = svc.Create(ctx, realm, desk, community.CreateRequest{Label: "HAND", Name: "Hand"})
	if !errors.Is(err, community.ErrKeycloakClash) {
		t.Fatalf("create over a hand-made group: %v, want the clash", err)
	}
	_, err = svc.Create(ctx, realm, desk, community.CreateRequest{Label: "HAND", Name: "Hand"})
	if !errors.Is(err, community.ErrKeycloakClash) || !slices.Contains(idp.Artefacts(realm), "group /Communities/HAND") {
		t.Errorf("second create over a hand-made group: %v; Keycloak holds %v", err, idp.Artefacts(realm))
	}
}

// TestMemberChangeOnAMissingGroupIsAConflict: adding to a member group
// deleted by hand meets drift that a repair restores, not an outage: the answer says so
// instead of inviting a retry (503) that cannot help.
func TestMemberChangeOnAMissingGroupIsAConflict(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	f.create(t, f.desk, "NDD")
	f.user("alice")
	if !f.idp.Delete(realm, fakeidp.Group, "/Communities/NDD/consumer") {
		t.Fatal("no consumer group to delete")
	}
	err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleConsumer, "alice", true)
	if fault.KindOf(err) != fault.Conflict || !strings.Contains(err.Error(), "reconcile --repair") {
		t.Errorf("adding to a missing group: %v, want a conflict naming the repair", err)
	}
	// Removal is idempotent: no one is a member of a group that is gone.
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "NDD", community.RoleConsumer, "alice", false); err != nil {
		t.Errorf("removing from a missing group: %v", err)
	}
}

// TestMembersOfManyIsForServiceDesk: the bulk read of members, which plan
// and export use, is service desk's alone, confirmed in Keycloak: not an
// owner's (who lists their own community's), nor a token's whose service
// desk role was taken away.
func TestMembersOfManyIsForServiceDesk(t *testing.T) {
	_, idp, svc, desk := racing()
	ctx := t.Context()
	c, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "NDD", Name: "National data dictionary"})
	if err != nil {
		t.Fatal(err)
	}
	owner := community.Actor{Subject: idp.AddUser(realm, "owner")}
	if err := svc.ChangeMember(ctx, realm, desk, "NDD", community.RoleOwner, owner.Subject, true); err != nil {
		t.Fatal(err)
	}
	former := community.Actor{Subject: idp.AddUser(realm, "former"), ServiceDesk: true}
	for who, a := range map[string]community.Actor{"an owner": owner, "a token whose role was taken away": former} {
		if _, err := svc.MembersOfMany(ctx, realm, a, []community.Community{*c}); !errors.Is(err, community.ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", who, err)
		}
	}
	got, err := svc.MembersOfMany(ctx, realm, desk, []community.Community{*c})
	if err != nil || len(got["NDD"][community.RoleOwner]) != 1 || got["NDD"][community.RoleOwner][0].ID != owner.Subject ||
		got["NDD"][community.RoleConsumer] == nil {
		t.Errorf("service desk: %v %v", got, err)
	}
}

// TestFind: a search keeps label or name matches ignoring case; mine keeps
// the caller's memberships now, searched and paged alike.
func TestFind(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	alice := f.creator("alice")
	f.create(t, alice, "NDD")
	f.create(t, alice, "Dict")
	f.create(t, f.desk, "SNOMED")
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "SNOMED", community.RoleConsumer, "alice", true); err != nil {
		t.Fatal(err)
	}
	f.create(t, f.desk, "Other")
	for _, c := range []struct {
		a          community.Actor
		filter     community.ListFilter
		first, max int
		want       []string
	}{
		{f.desk, community.ListFilter{}, 0, 0, []string{"Dict", "NDD", "Other", "SNOMED"}},
		{f.desk, community.ListFilter{Search: "DI"}, 0, 0, []string{"Dict"}},
		{f.desk, community.ListFilter{Search: "community ndd"}, 0, 0, []string{"NDD"}},
		{f.desk, community.ListFilter{Search: "Y S"}, 0, 0, []string{"SNOMED"}},
		{f.desk, community.ListFilter{Mine: true}, 0, 0, nil},
		{alice, community.ListFilter{Mine: true}, 0, 0, []string{"Dict", "NDD", "SNOMED"}},
		{alice, community.ListFilter{Mine: true, Search: "nd"}, 0, 0, []string{"NDD"}},
		{alice, community.ListFilter{Mine: true, Search: "other"}, 0, 0, nil},
		{alice, community.ListFilter{Mine: true}, 1, 1, []string{"NDD"}},
		{alice, community.ListFilter{Mine: true}, 5, 0, nil},
	} {
		got, err := f.svc.Find(ctx, realm, c.a, c.filter, c.first, c.max)
		var labels []string
		for _, r := range got {
			labels = append(labels, r.Label)
		}
		if err != nil || !slices.Equal(labels, c.want) {
			t.Errorf("%s %+v first %d max %d: %v %v, want %v", c.a.Username, c.filter, c.first, c.max, labels, err, c.want)
		}
	}
}

// stuckIDP refuses the clean-up of one label (a delete Keycloak keeps
// refusing to finish), and is the fake otherwise.
type stuckIDP struct {
	*fakeidp.IDP
	label string
}

func (s stuckIDP) Cleanup(ctx context.Context, realm, root, l, id string, fhirClients []string) (community.CleanupReport, error) {
	if l == s.label {
		return community.CleanupReport{}, errors.New("keycloak refused the clean-up of " + l)
	}
	return s.IDP.Cleanup(ctx, realm, root, l, id, fhirClients)
}

// TestReconcileGoesOnPastAStuckRecovery: an abandoned operation that
// cannot be recovered yet is reported as the error it is, after the drift
// check of everything else, which it once stopped (nothing was checked or
// repaired while it stayed stuck).
func TestReconcileGoesOnPastAStuckRecovery(t *testing.T) {
	ctx := t.Context()
	store, idp := memstore.New(), fakeidp.New()
	svc := community.New(store, stuckIDP{IDP: idp, label: "STUCK"}, options(50*time.Millisecond))
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	for _, l := range []string{"NDD", "STUCK"} {
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
	}
	stuck, err := store.Get(ctx, realm, "stuck")
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Second)
	if err := store.Transition(ctx, stuck.ID, community.StateActive, community.StateDeleting, nil, &past, nil, ""); err != nil {
		t.Fatal(err)
	}
	idp.Delete(realm, fakeidp.Group, "/Communities/NDD/author")

	reports, ran, err := svc.Reconcile(ctx, []string{realm}, true)
	if err == nil || !strings.Contains(err.Error(), "STUCK") || !ran || len(reports) != 1 {
		t.Fatalf("reconcile: %+v ran=%v err=%v; want NDD's report and STUCK's error", reports, ran, err)
	}
	if d := reports[0].Drift["NDD"]; len(d) == 0 || !d[0].Repaired {
		t.Errorf("NDD's missing author group: %+v", reports[0].Drift)
	}
}

// TestMemberCallsRecordStaleIdsAnew: a member group whole at its path but
// recorded under an id naming no group (a repair whose record failed, a
// group made again by hand) is recorded anew by the next member call of
// someone who may manage the community, which then goes on; the drift
// check, reading by path, never sees such a record, so the old answer
// ("restore it with reconcile --repair") pointed at a repair that found
// nothing to do. A group missing indeed is still that conflict, and a
// caller who may not manage the community changes no record.
func TestMemberCallsRecordStaleIdsAnew(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, time.Minute)
	olive := f.user("olive")
	f.user("bob")
	mallory := f.user("mallory")
	if _, err := f.svc.Create(ctx, realm, f.desk, community.CreateRequest{Label: "NDD", Name: "Community NDD", Owners: []string{"olive"}}); err != nil {
		t.Fatal(err)
	}
	whole := f.row(t, "NDD").Artifacts
	stale := whole
	stale.OwnerGroupID, stale.ConsumerGroupID = uuid.NewString(), uuid.NewString()
	if err := f.store.SetArtifacts(ctx, f.row(t, "NDD").ID, stale); err != nil {
		t.Fatal(err)
	}

	err := f.svc.ChangeMember(ctx, realm, mallory, "NDD", community.RoleConsumer, "bob", true)
	if !errors.Is(err, fault.Forbidden) {
		t.Errorf("a non-owner adding a member over a stale record: %v, want forbidden", err)
	}
	if got := f.row(t, "NDD").Artifacts; got != stale {
		t.Errorf("a non-owner's call changed the record to %+v", got)
	}
	if ev := f.last(t, "add-member"); ev.ActorUsername != "mallory" || ev.Outcome != "denied" {
		t.Errorf("the non-owner's attempt audited %+v", ev)
	}

	if err := f.svc.ChangeMember(ctx, realm, olive, "NDD", community.RoleConsumer, "bob", true); err != nil {
		t.Fatalf("the owner adding a member over a stale record: %v", err)
	}
	if got := f.row(t, "NDD").Artifacts; got != whole {
		t.Errorf("recorded %+v, want %+v", got, whole)
	}
	if ev := f.last(t, "repair"); ev.ActorUsername != "olive" || ev.Outcome != "success" || !strings.Contains(ev.Detail, "anew") {
		t.Errorf("repair audit event %+v", ev)
	}
	ms, err := f.svc.Members(ctx, realm, olive, "NDD", community.FirstMembers)
	if err != nil || len(ms[community.RoleConsumer]) != 1 || ms[community.RoleConsumer][0].Username != "bob" {
		t.Errorf("members %+v, %v: want bob a consumer", ms, err)
	}

	// Listing members records anew too.
	stale = whole
	stale.AuthorGroupID = uuid.NewString()
	if err := f.store.SetArtifacts(ctx, f.row(t, "NDD").ID, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Members(ctx, realm, olive, "NDD", community.FirstMembers); err != nil || f.row(t, "NDD").Artifacts != whole {
		t.Errorf("members over a stale author id: %v, recorded %+v", err, f.row(t, "NDD").Artifacts)
	}

	// A removal over a stale record removes from the group itself: it
	// answered done, and left the member in it with the privileges.
	stale = whole
	stale.ConsumerGroupID = uuid.NewString()
	if err := f.store.SetArtifacts(ctx, f.row(t, "NDD").ID, stale); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ChangeMember(ctx, realm, olive, "NDD", community.RoleConsumer, "bob", false); err != nil {
		t.Fatalf("removing over a stale record: %v", err)
	}
	if ms, err := f.svc.Members(ctx, realm, olive, "NDD", community.FirstMembers); err != nil || len(ms[community.RoleConsumer]) != 0 {
		t.Errorf("consumers after the removal %+v, %v: want none", ms, err)
	}

	// A group gone from its path is missing indeed: adding to it is a
	// repair's work; removing from it is done, as no one is in it.
	if !f.idp.Delete(realm, "group", "/Communities/NDD/author") {
		t.Fatal("no author group to delete")
	}
	err = f.svc.ChangeMember(ctx, realm, olive, "NDD", community.RoleAuthor, "bob", true)
	if !errors.Is(err, fault.Conflict) || !strings.Contains(err.Error(), "reconcile --repair") {
		t.Errorf("adding to a missing group: %v, want the conflict naming the repair", err)
	}
	if ev := f.last(t, "add-member"); ev.Outcome != "failed" {
		t.Errorf("add to a missing group audited %+v", ev)
	}
	if err := f.svc.ChangeMember(ctx, realm, olive, "NDD", community.RoleAuthor, "bob", false); err != nil {
		t.Errorf("removing from a missing group: %v", err)
	}
	if ev := f.last(t, "remove-member"); ev.Outcome != "success" || !strings.Contains(ev.Detail, "missing") {
		t.Errorf("removal from a missing group audited %+v", ev)
	}
	if got := f.row(t, "NDD").Artifacts; got != whole {
		t.Errorf("a missing group changed the record to %+v", got)
	}

	// A group made by hand in the place of the consumer group is not the
	// community's: not taken for it by a member call, and a repair, which
	// cannot mend it, keeps the recorded id instead of recording none.
	if !f.idp.Delete(realm, "group", "/Communities/NDD/consumer") {
		t.Fatal("no consumer group to delete")
	}
	f.idp.Add(realm, "group", "/Communities/NDD/consumer", "somebody else")
	err = f.svc.ChangeMember(ctx, realm, olive, "NDD", community.RoleConsumer, "bob", true)
	if !errors.Is(err, fault.Conflict) {
		t.Errorf("adding to a group made by hand: %v, want a conflict", err)
	}
	if drift, err := f.svc.Repair(ctx, realm, "NDD", f.desk); err != nil || len(drift) == 0 {
		t.Errorf("repair beside a group made by hand: %v, %v: want it reported", drift, err)
	}
	if got := f.row(t, "NDD").Artifacts; got.ConsumerGroupID != whole.ConsumerGroupID || got.OwnerGroupID != whole.OwnerGroupID {
		t.Errorf("recorded %+v, want the consumer group's recorded id kept", got)
	}
}

// slowFailingCleanup fails every clean-up after took, as a Keycloak that
// hangs does.
type slowFailingCleanup struct {
	*fakeidp.IDP
	calls atomic.Int64
	took  time.Duration
}

func (s *slowFailingCleanup) Cleanup(ctx context.Context, realm, root, label, id string, fc []string) (community.CleanupReport, error) {
	s.calls.Add(1)
	time.Sleep(s.took)
	return community.CleanupReport{}, errors.New("keycloak: no answer")
}

// TestRecoveryPassTriesEachRowOnce: clean-ups that fail slowly enough to
// outlast a lease together do not hand the first rows back to the same
// pass, which then ended only when Keycloak came back, holding up the
// drift check that runs after it (review of the registry and server,
// 2026-11-24: 60 clean-ups of 5 rows in 3 s).
func TestRecoveryPassTriesEachRowOnce(t *testing.T) {
	lease := 200 * time.Millisecond
	st := memstore.New()
	idp := &slowFailingCleanup{IDP: fakeidp.New(), took: lease / 4}
	svc := community.New(st, idp, options(lease))
	past := time.Now().UTC().Add(-time.Hour)
	for _, l := range []string{"A", "B", "C", "D", "E"} {
		c := &community.Community{ID: uuid.NewString(), Realm: realm, Label: l, LabelKey: strings.ToLower(l), Name: l, NameKey: strings.ToLower(l),
			State: community.StateFailed, LeaseUntil: &past, CreatedAt: past, UpdatedAt: past}
		if err := st.Reserve(t.Context(), c, false); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	n, err := svc.Recover(ctx, []string{realm})
	if ctx.Err() != nil || n != 0 || err == nil || idp.calls.Load() != 5 {
		t.Errorf("a pass over 5 rows whose clean-ups fail: %d recovered, %d clean-ups, context %v, %v: want each tried once and the failures returned",
			n, idp.calls.Load(), ctx.Err(), err)
	}
	// The next pass tries them again.
	time.Sleep(lease)
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := svc.Recover(ctx, []string{realm}); err == nil || idp.calls.Load() != 10 {
		t.Errorf("the next pass: %d clean-ups in all, %v", idp.calls.Load(), err)
	}
}

// failingEnsureIDP fails the check of the labels in fail with err, and is
// the fake otherwise.
type failingEnsureIDP struct {
	*fakeidp.IDP
	fail map[string]error
}

func (f failingEnsureIDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	if err := f.fail[s.Label]; err != nil {
		return nil, community.Artifacts{}, err
	}
	return f.IDP.Ensure(ctx, s, repair)
}

// TestDriftCheckGoesOnPastAFailingCommunity: one community whose check
// fails (Keycloak refusing it, or erring on its data) once stopped its
// realm's pass, so the communities after it went unchecked and unrepaired
// for as long as it failed. The pass now goes on, names it, and ends with
// its error; an outage (Keycloak unreachable for two checks in a row)
// still stops it, as every later check would wait to fail alike.
func TestDriftCheckGoesOnPastAFailingCommunity(t *testing.T) {
	ctx := t.Context()
	store, idp := memstore.New(), fakeidp.New()
	fail := map[string]error{}
	svc := community.New(store, failingEnsureIDP{IDP: idp, fail: fail}, options(time.Minute))
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	labels := []string{"AAA", "BBB", "CCC", "DDD"}
	for _, l := range labels {
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
		// Every community drifts, so that every one is checked in turn.
		idp.Delete(realm, fakeidp.Group, "/Communities/"+l+"/author")
	}
	refused := fault.New(fault.Refused, "Keycloak refused", errors.New("HTTP 403"))
	fail["BBB"] = refused

	reports, ran, err := svc.Reconcile(ctx, []string{realm}, true)
	if err == nil || !strings.Contains(err.Error(), "BBB") || ran || len(reports) != 1 {
		t.Fatalf("reconcile: %+v ran=%v err=%v; want the realm's report and BBB's error", reports, ran, err)
	}
	rep := reports[0]
	if !rep.Incomplete || !slices.Equal(rep.Unchecked, []string{"BBB"}) {
		t.Errorf("report: incomplete=%v unchecked=%v; want incomplete, BBB unchecked", rep.Incomplete, rep.Unchecked)
	}
	for _, l := range []string{"AAA", "CCC", "DDD"} {
		if d := rep.Drift[l]; len(d) == 0 || !d[0].Repaired {
			t.Errorf("%s, after the failing BBB or before it, was not repaired: %+v", l, rep.Drift[l])
		}
	}

	// Keycloak unreachable for two checks in a row stops the pass; one
	// success between two such failures does not.
	down := fault.New(fault.Unavailable, "Keycloak could not check", errors.New("HTTP 500"))
	pass := func(failing ...string) community.Report {
		t.Helper()
		clear(fail)
		for _, l := range labels {
			idp.Delete(realm, fakeidp.Group, "/Communities/"+l+"/author")
		}
		for _, l := range failing {
			fail[l] = down
		}
		reports, _, err := svc.Reconcile(ctx, []string{realm}, true)
		if (err == nil) != (len(failing) == 0) || len(reports) != 1 {
			t.Fatalf("reconcile with %v failing: %+v err=%v", failing, reports, err)
		}
		slices.Sort(reports[0].Unchecked)
		return reports[0]
	}
	repaired := func(rep community.Report) (out []string) {
		for _, l := range labels {
			if len(rep.Drift[l]) > 0 {
				out = append(out, l)
			}
		}
		return out
	}
	if rep := pass("BBB", "DDD"); !slices.Equal(rep.Unchecked, []string{"BBB", "DDD"}) || !slices.Equal(repaired(rep), []string{"AAA", "CCC"}) {
		t.Errorf("BBB and DDD failing: unchecked %v, repaired %v; want the pass to go on past both", rep.Unchecked, repaired(rep))
	}
	// AAA and BBB keep failing, side by side: the first pass stops at them;
	// the next checks them last, so CCC and DDD are not starved.
	pass()
	if rep := pass("AAA", "BBB"); !slices.Equal(rep.Unchecked, []string{"AAA", "BBB"}) || len(repaired(rep)) != 0 {
		t.Errorf("AAA and BBB failing: unchecked %v, repaired %v; want a stop after both", rep.Unchecked, repaired(rep))
	}
	if rep := pass("AAA", "BBB"); !rep.Incomplete || !slices.Equal(repaired(rep), []string{"CCC", "DDD"}) {
		t.Errorf("AAA and BBB failing again: unchecked %v, repaired %v; want CCC and DDD checked first", rep.Unchecked, repaired(rep))
	}

	// A plan needs every answer: Drift fails on any failed check.
	fail = map[string]error{"CCC": refused}
	svc = community.New(store, failingEnsureIDP{IDP: idp, fail: fail}, options(time.Minute))
	idp.Delete(realm, fakeidp.Group, "/Communities/CCC/author")
	if _, _, _, err := svc.Drift(ctx, realm); err == nil || !strings.Contains(err.Error(), "CCC") {
		t.Errorf("drift with CCC failing: %v", err)
	}
}

// countingEnsureIDP counts the per-community checks the service asks for.
type countingEnsureIDP struct {
	*fakeidp.IDP
	ensures *atomic.Int32
}

func (c countingEnsureIDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	c.ensures.Add(1)
	return c.IDP.Ensure(ctx, s, repair)
}

// TestAdminPermissionsOffAreTheRealmsDrift: a realm whose admin
// permissions were switched off made every community a suspect, each
// confirmed in its own calls (about ten), on every pass: at 10,000
// communities, 100,000 calls a pass. It is now the realm's drift, said
// and confirmed once; a repair switches them on and checks the
// communities again; a plan's drift gives it apart from the communities'
// (since the twenty-second session; it gave it to each).
func TestAdminPermissionsOffAreTheRealmsDrift(t *testing.T) {
	ctx := t.Context()
	store, idp := memstore.New(), fakeidp.New()
	var ensures atomic.Int32
	svc := community.New(store, countingEnsureIDP{IDP: idp, ensures: &ensures}, options(time.Minute))
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	for _, l := range []string{"AAA", "BBB", "CCC"} {
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
	}
	idp.SwitchPermissionsOff(realm)
	off := community.Drift{What: "admin permissions of realm " + realm, Problem: "not enabled"}

	reports, _, err := svc.Reconcile(ctx, []string{realm}, false)
	if err != nil || len(reports) != 1 {
		t.Fatalf("check: %+v %v", reports, err)
	}
	if rep := reports[0]; !slices.Equal(rep.RealmDrift, []community.Drift{off}) || len(rep.Drift) != 0 || rep.DriftCount() != 1 || ensures.Load() != 0 {
		t.Errorf("check: realm drift %v, communities' %v, count %d, %d per-community checks; want the realm's once and none",
			rep.RealmDrift, rep.Drift, rep.DriftCount(), ensures.Load())
	}

	// A community that drifted besides: its own drift, not the realm's
	// again. A plan says the realm's once too, not with every community
	// (it did, until the twenty-second session: 10,000 lines).
	idp.Delete(realm, fakeidp.Group, "/Communities/BBB/author")
	_, drift, realmDrift, err := svc.Drift(ctx, realm)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(realmDrift, []community.Drift{off}) || len(drift) != 1 {
		t.Errorf("plan's drift: the realm's %v, the communities' %v; want the realm's once and BBB's", realmDrift, drift)
	}
	if len(drift["BBB"]) != 1 || slices.Contains(drift["BBB"], off) || ensures.Load() != 1 {
		t.Errorf("plan's drift of BBB: %v, %d per-community checks; want its author group alone, one check", drift["BBB"], ensures.Load())
	}

	events := len(store.Events())
	reports, _, err = svc.Reconcile(ctx, []string{realm}, true)
	if err != nil || len(reports) != 1 {
		t.Fatalf("repair: %+v %v", reports, err)
	}
	repaired := off
	repaired.Repaired = true
	if rep := reports[0]; !slices.Equal(rep.RealmDrift, []community.Drift{repaired}) || len(rep.Drift) != 1 || len(rep.Drift["BBB"]) == 0 ||
		slices.ContainsFunc(rep.Drift["BBB"], func(d community.Drift) bool { return !d.Repaired || d.What == off.What }) {
		t.Errorf("repair: realm drift %v, communities' %v; want the realm's repaired and BBB's author group", rep.RealmDrift, rep.Drift)
	}
	// The realm's repair is audited once, with no label, as the
	// reconciler's (it was not audited at all).
	var realmRepairs []string
	for _, ev := range store.Events()[events:] {
		if ev.Action == "repair" && ev.Label == "" {
			realmRepairs = append(realmRepairs, ev.ActorClient+": "+ev.Detail)
		}
	}
	if want := "communities-reconciler: " + fmt.Sprint([]community.Drift{repaired}); !slices.Equal(realmRepairs, []string{want}) {
		t.Errorf("the realm's repair audited as %q, want %q", realmRepairs, want)
	}
	if reports, _, err = svc.Reconcile(ctx, []string{realm}, false); err != nil || reports[0].DriftCount() != 0 {
		t.Errorf("after the repair: %+v %v", reports, err)
	}
}

// heldIDP holds Provision until release is closed, saying when it began.
type heldIDP struct {
	*fakeidp.IDP
	began, release chan struct{}
}

func (h heldIDP) Provision(ctx context.Context, s community.Spec) (community.Artifacts, error) {
	close(h.began)
	<-h.release
	return h.IDP.Provision(ctx, s)
}

// TestLeasesAreTheRegistrysTime: a replica whose clock is an hour behind
// the registry's wrote its create's lease an hour in the registry's past,
// so another replica's recovery took the create, still running, for
// abandoned and undid it; the create then failed. Leases are now the
// registry's time, so the running create is left alone and succeeds.
func TestLeasesAreTheRegistrysTime(t *testing.T) {
	ctx := t.Context()
	store, idp := memstore.New(), fakeidp.New()
	store.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	held := heldIDP{IDP: idp, began: make(chan struct{}), release: make(chan struct{})}
	slow := community.New(store, held, options(time.Minute))
	other := community.New(store, idp, options(time.Minute))
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)

	created := make(chan error, 1)
	go func() {
		_, err := slow.Create(ctx, realm, desk, community.CreateRequest{Label: "SKEW", Name: "Skewed clocks"})
		created <- err
	}()
	<-held.began
	n, err := other.Recover(ctx, []string{realm})
	close(held.release)
	if err != nil || n != 0 {
		t.Errorf("recovery during the create: %d recovered, %v; want none", n, err)
	}
	if err := <-created; err != nil {
		t.Errorf("create: %v", err)
	}
	if c, err := store.Get(ctx, realm, "skew"); err != nil || c.State != community.StateActive {
		t.Errorf("row: %+v %v; want active", c, err)
	}
}

// sharedIDP counts the per-community checks and the bulk mends the service
// asks for, runs afterSurvey once after each survey, and with stuck adds
// realm drift that neither a check nor a repair mends (a realm-wide policy
// whose type was changed, left to an administrator).
type sharedIDP struct {
	*fakeidp.IDP
	ensures, mends int
	asked          []string // the labels of the communities mended in bulk
	afterSurvey    func()
	stuck          *community.Drift
	mendErr        error  // the bulk mend fails, changing nothing
	afterMend      func() // runs once the bulk mend has changed what it changes
}

// newSharedFixture is a service over a sharedIDP, and service desk.
func newSharedFixture() (*memstore.Store, *sharedIDP, *community.Service, community.Actor) {
	store, idp := memstore.New(), &sharedIDP{IDP: fakeidp.New()}
	svc := community.New(store, idp, options(time.Minute))
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	return store, idp, svc, desk
}

// Ensure leaves the community as it is while the realm's drift is stuck,
// as internal/keycloak's leaves a community's own admin permissions.
func (r *sharedIDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	r.ensures++
	return r.IDP.Ensure(ctx, s, repair && r.stuck == nil)
}

func (r *sharedIDP) MendShared(ctx context.Context, realm, root string, shared []community.SharedDrift) (map[string][]string, error) {
	r.mends++
	for _, sd := range shared {
		r.asked = append(r.asked, sd.Spec.Label)
	}
	if r.mendErr != nil {
		return nil, r.mendErr
	}
	mended, err := r.IDP.MendShared(ctx, realm, root, shared)
	if r.afterMend != nil {
		r.afterMend()
	}
	return mended, err
}

func (r *sharedIDP) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	sv, err := r.IDP.Survey(ctx, realm, root, specs)
	if r.stuck != nil {
		sv.Realm = append(sv.Realm, *r.stuck)
	}
	if f := r.afterSurvey; f != nil {
		r.afterSurvey = nil
		f()
	}
	return sv, err
}

func (r *sharedIDP) EnsureRealm(ctx context.Context, realm, root string, repair bool) ([]community.Drift, error) {
	d, err := r.IDP.EnsureRealm(ctx, realm, root, repair)
	if r.stuck != nil {
		d = append(d, *r.stuck)
	}
	return d, err
}

// TestSharedDriftIsMendedTogether: role:service-desk deleted by hand is
// taken out of every community's aggregate, and community-owner deleted
// (and made again) off every owner group. Each community was a suspect,
// confirmed and mended in its own calls (about 14): 140,000 at 10,000
// communities, on every pass that only reports too. Now a check reports
// them without a per-community check, leaving out one deleted since the
// survey; a repair mends them all in one bulk mend and audits each; a
// community with other drift besides is still checked and mended on its
// own; and nothing is mended while the realm's own drift is not.
func TestSharedDriftIsMendedTogether(t *testing.T) {
	ctx := t.Context()
	store, idp, svc, desk := newSharedFixture()
	for _, l := range []string{"AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG"} {
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
	}
	// AAA's aggregate is unlinked, FFF's owner group without
	// community-owner, CCC's both; BBB has other drift besides; EEE is
	// deleted during the check, GGG during the repair.
	for _, l := range []string{"AAA", "BBB", "CCC", "EEE"} {
		idp.Unlink(realm, l)
	}
	for _, l := range []string{"CCC", "FFF", "EEE", "GGG"} {
		idp.Delete(realm, fakeidp.RoleMapping, "/Communities/"+l+"/owner → "+fakeidp.OwnerRole)
	}
	idp.Delete(realm, fakeidp.Group, "/Communities/BBB/author")
	unlinked := func(l string, repaired bool) community.Drift {
		return community.Drift{What: fakeidp.Permission + " community:" + l + ":membership-admins", Problem: "does not name role:service-desk",
			Repaired: repaired}
	}
	ungranted := func(l string, repaired bool) community.Drift {
		return community.Drift{What: fakeidp.RoleMapping + " /Communities/" + l + "/owner → " + fakeidp.OwnerRole, Problem: "missing",
			Repaired: repaired}
	}
	shared := func(repaired bool) map[string][]community.Drift {
		return map[string][]community.Drift{
			"AAA": {unlinked("AAA", repaired)},
			"CCC": {ungranted("CCC", repaired), unlinked("CCC", repaired)},
			"FFF": {ungranted("FFF", repaired)},
		}
	}
	pass := func(repair bool) community.Report {
		t.Helper()
		reports, _, err := svc.Reconcile(ctx, []string{realm}, repair)
		if err != nil || len(reports) != 1 {
			t.Fatalf("reconcile (repair %v): %+v %v", repair, reports, err)
		}
		return reports[0]
	}
	sharedAsWanted := func(what string, rep community.Report, repaired bool) {
		t.Helper()
		for l, want := range shared(repaired) {
			if !slices.Equal(rep.Drift[l], want) {
				t.Errorf("%s: %s's drift %v, want %v", what, l, rep.Drift[l], want)
			}
		}
	}

	// EEE is deleted after the survey read it: not reported.
	steps := idp.Steps()
	idp.afterSurvey = func() {
		before := idp.Steps()
		if _, err := svc.Delete(ctx, realm, desk, community.DeleteRequest{Label: "EEE"}); err != nil {
			t.Error(err)
		}
		steps += idp.Steps() - before
	}
	rep := pass(false)
	sharedAsWanted("check", rep, false)
	if !slices.Contains(rep.Drift["BBB"], unlinked("BBB", false)) || len(rep.Drift["BBB"]) < 2 {
		t.Errorf("check: BBB's drift %v, want its author group and its aggregate", rep.Drift["BBB"])
	}
	if _, ok := rep.Drift["EEE"]; ok || len(rep.Drift) != 5 {
		t.Errorf("check: drift %v, want AAA's, BBB's, CCC's, FFF's and GGG's (EEE was deleted meanwhile)", rep.Drift)
	}
	if idp.ensures != 1 || idp.mends != 0 || idp.Steps() != steps {
		t.Errorf("check: %d per-community checks, %d mends, %d changes; want BBB's check alone", idp.ensures, idp.mends, idp.Steps()-steps)
	}

	// Realm drift a repair cannot mend: nothing is mended in bulk, and
	// BBB, checked on its own, waits too.
	idp.stuck = &community.Drift{What: "admin permission role:service-desk", Problem: "type changed; take it off by hand"}
	idp.ensures = 0
	rep = pass(true)
	if idp.mends != 0 {
		t.Errorf("repair with the realm's drift left: %d mends, want none", idp.mends)
	}
	sharedAsWanted("repair with the realm's drift left", rep, false)
	if d := rep.Drift["BBB"]; idp.ensures != 1 || len(d) < 2 || slices.ContainsFunc(d, func(d community.Drift) bool { return d.Repaired }) {
		t.Errorf("repair with the realm's drift left: %d per-community checks, BBB's drift %v; want BBB's, none of it mended", idp.ensures, d)
	}
	idp.stuck = nil

	// GGG is deleted after the survey read it: neither mended nor
	// reported.
	idp.ensures = 0
	idp.afterSurvey = func() {
		if _, err := svc.Delete(ctx, realm, desk, community.DeleteRequest{Label: "GGG"}); err != nil {
			t.Error(err)
		}
	}
	events := len(store.Events())
	rep = pass(true)
	sharedAsWanted("repair", rep, true)
	if slices.Sort(idp.asked); !slices.Equal(idp.asked, []string{"AAA", "CCC", "FFF"}) {
		t.Errorf("repair: mended %v in bulk, want AAA, CCC and FFF", idp.asked)
	}
	if d := rep.Drift["BBB"]; len(d) < 2 || slices.ContainsFunc(d, func(d community.Drift) bool { return !d.Repaired }) {
		t.Errorf("repair: BBB's drift %v, want all of it mended", d)
	}
	if idp.ensures != 1 || idp.mends != 1 || len(rep.Drift) != 4 {
		t.Errorf("repair: %d per-community checks and %d mends, drift %v; want BBB's check and one mend of AAA, CCC and FFF", idp.ensures, idp.mends, rep.Drift)
	}
	var repairs []string
	for _, ev := range store.Events()[events:] {
		if ev.Action == "repair" && ev.ActorClient == "communities-reconciler" {
			repairs = append(repairs, ev.Label)
		}
	}
	if slices.Sort(repairs); !slices.Equal(repairs, []string{"AAA", "BBB", "CCC", "FFF"}) {
		t.Errorf("repair events for %v, want AAA, BBB, CCC and FFF", repairs)
	}
	if rep := pass(false); rep.DriftCount() != 0 {
		t.Errorf("after the repair: %+v", rep)
	}
}

// TestFailedMendStillLooksForOrphans: a bulk mend that fails (Keycloak
// gone, or a realm-wide policy changed meanwhile) leaves what it was to
// mend reported as not repaired and the pass incomplete, but the pass
// goes on to the orphans, as past a community whose check failed: before,
// an orphan waited as long as the mend kept failing.
func TestFailedMendStillLooksForOrphans(t *testing.T) {
	ctx := t.Context()
	_, idp, svc, desk := newSharedFixture()
	for _, l := range []string{"AAA", "BBB"} {
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
		idp.Unlink(realm, l)
	}
	orphan := uuid.NewString()
	if _, err := idp.Provision(ctx, community.Spec{ID: orphan, Realm: realm, Root: root, Label: "ORPHAN", Name: "Orphan",
		FHIRClients: []string{fhir}}); err != nil {
		t.Fatal(err)
	}
	idp.mendErr = errors.New("keycloak went away")
	reports, _, err := svc.Reconcile(ctx, []string{realm}, true)
	if err == nil || !strings.Contains(err.Error(), "keycloak went away") || len(reports) != 1 || !reports[0].Incomplete {
		t.Fatalf("repair with the mend failing: %+v, %v; want an incomplete report and the mend's error", reports, err)
	}
	rep := reports[0]
	for _, l := range []string{"AAA", "BBB"} {
		if d := rep.Drift[l]; len(d) != 1 || d[0].Repaired {
			t.Errorf("%s's drift %v, want its aggregate, not repaired", l, d)
		}
	}
	if !slices.Equal(rep.Orphans, []community.Orphan{{Label: "ORPHAN", ID: orphan}}) || rep.OrphansRemoved != 1 {
		t.Errorf("orphans %+v, %d removed; want ORPHAN, removed", rep.Orphans, rep.OrphansRemoved)
	}
	if left := slices.DeleteFunc(idp.Artefacts(realm), func(a string) bool { return !strings.Contains(a, "ORPHAN") }); len(left) > 0 {
		t.Errorf("the orphan's artefacts left: %v", left)
	}

	idp.mendErr = nil
	if reports, _, err = svc.Reconcile(ctx, []string{realm}, true); err != nil || reports[0].Incomplete || len(reports[0].Orphans) != 0 {
		t.Fatalf("repair after: %+v, %v", reports, err)
	}
	for _, l := range []string{"AAA", "BBB"} {
		if d := reports[0].Drift[l]; len(d) != 1 || !d[0].Repaired {
			t.Errorf("after: %s's drift %v, want its aggregate, repaired", l, d)
		}
	}
}

// TestInterruptedRepairReportsWhatTheMendChanged: `reconcile --repair`
// interrupted while the bulk mend's page is under way: that page runs to
// its end in Keycloak, and what it changed is reported and audited, though
// the pass's context has ended. Before, the registry reads after the mend
// used the ended context: nothing was reported, and no repair audited.
func TestInterruptedRepairReportsWhatTheMendChanged(t *testing.T) {
	store, idp, svc, desk := newSharedFixture()
	for _, l := range []string{"AAA", "BBB"} {
		if _, err := svc.Create(t.Context(), realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
		idp.Unlink(realm, l)
	}
	events := len(store.Events())
	ctx, cancel := context.WithCancel(t.Context())
	idp.afterMend = cancel
	reports, _, _ := svc.Reconcile(ctx, []string{realm}, true)
	if len(reports) != 1 {
		t.Fatalf("reports %+v", reports)
	}
	for _, l := range []string{"AAA", "BBB"} {
		if d := reports[0].Drift[l]; len(d) != 1 || !d[0].Repaired {
			t.Errorf("%s's drift %v, want its aggregate, repaired", l, d)
		}
	}
	var repaired []string
	for _, ev := range store.Events()[events:] {
		if ev.Action == "repair" && ev.Label != "" {
			repaired = append(repaired, ev.Label)
		}
	}
	if slices.Sort(repaired); !slices.Equal(repaired, []string{"AAA", "BBB"}) {
		t.Errorf("repairs audited: %v, want AAA's and BBB's", repaired)
	}
}

// What a realm-wide policy deleted by hand takes from every community is
// one warning for them all, on every pass, not one a community; a
// community's own drift is still its own line.
func TestSharedDriftIsLoggedOnce(t *testing.T) {
	ctx := t.Context()
	var logged strings.Builder
	opts := options(time.Minute)
	opts.Logger = slog.New(slog.NewJSONHandler(&logged, nil))
	store, idp := memstore.New(), fakeidp.New()
	svc := community.New(store, idp, opts)
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", Username: "desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	var labels []string
	for i := range 12 {
		l := fmt.Sprintf("S%02d", i)
		labels = append(labels, l)
		if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: l, Name: l}); err != nil {
			t.Fatal(err)
		}
		idp.Unlink(realm, l)
	}
	if _, err := svc.Create(ctx, realm, desk, community.CreateRequest{Label: "OWN", Name: "Own"}); err != nil {
		t.Fatal(err)
	}
	idp.Delete(realm, fakeidp.Group, "/Communities/OWN/author")

	type line struct {
		Msg          string   `json:"msg"`
		Label        string   `json:"label"`
		Communities  int      `json:"communities"`
		NotRepaired  int      `json:"not_repaired"`
		First        []string `json:"first"`
		DriftOfFirst string   `json:"drift_of_first"`
		Repair       bool     `json:"repair"`
	}
	pass := func(repair bool) []line {
		t.Helper()
		logged.Reset()
		reports, _, err := svc.Reconcile(ctx, []string{realm}, repair)
		if err != nil || len(reports) != 1 || len(reports[0].Drift) != 13 {
			t.Fatalf("reconcile (repair %v): %+v %v; want the drift of 13 communities", repair, reports, err)
		}
		var out []line
		for _, s := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
			var l line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("log line %q: %v", s, err)
			}
			if strings.Contains(l.Msg, "drifted") || strings.Contains(l.Msg, "alike") {
				out = append(out, l)
			}
		}
		return out
	}
	for _, repair := range []bool{false, true} {
		lines := pass(repair)
		left := 12
		if repair {
			left = 0
		}
		want := []line{
			{Msg: "community drifted from its definition", Label: "OWN", Repair: repair},
			{Msg: "communities lack alike what a realm-wide policy or role deleted by hand took from each",
				Communities: 12, NotRepaired: left, First: labels[:10], Repair: repair},
		}
		if len(lines) != 2 || !strings.Contains(lines[1].DriftOfFirst, "S00") {
			t.Fatalf("repair %v: logged %+v, want OWN's line and one for S00 to S11, with S00's drift", repair, lines)
		}
		lines[1].DriftOfFirst = ""
		if !slices.EqualFunc(lines, want, func(a, b line) bool {
			return a.Msg == b.Msg && a.Label == b.Label && a.Communities == b.Communities && a.NotRepaired == b.NotRepaired &&
				slices.Equal(a.First, b.First) && a.Repair == b.Repair
		}) {
			t.Errorf("repair %v: logged %+v, want %+v", repair, lines, want)
		}
	}
}
