package community_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/fakeidp"
	"github.com/nhs-terminology/communities/internal/community/memstore"
	"github.com/nhs-terminology/communities/internal/fault"
)

// roleReader holds the roles of one user and counts the questions asked.
type roleReader struct {
	held  []string
	asked [][]string
	err   error
}

func (r *roleReader) HeldRoles(_ context.Context, _, _ string, roles []string) ([]string, error) {
	r.asked = append(r.asked, slices.Clone(roles))
	if r.err != nil {
		return nil, r.err
	}
	var out []string
	for _, role := range roles {
		if slices.Contains(r.held, role) {
			out = append(out, role)
		}
	}
	return out, nil
}

// TestConfirm: a token's service desk and creator roles count only while
// Keycloak still grants them; a role the token does not claim is never
// added; a token that claims neither costs no call; one call asks both.
func TestConfirm(t *testing.T) {
	roles := community.Roles{ServiceDesk: "service-desk", Creator: "community-creator"}
	both := []string{"service-desk", "community-creator"}
	for _, c := range []struct {
		name        string
		token       community.Actor
		held        []string
		desk, maker bool
		asked       [][]string
	}{
		{name: "claims neither", token: community.Actor{Subject: "u"}, held: both},
		{name: "service desk still held", token: community.Actor{Subject: "u", ServiceDesk: true}, held: both,
			desk: true, asked: [][]string{{"service-desk"}}},
		{name: "service desk taken away", token: community.Actor{Subject: "u", ServiceDesk: true},
			asked: [][]string{{"service-desk"}}},
		{name: "both claimed, creator taken away", token: community.Actor{Subject: "u", ServiceDesk: true, Creator: true},
			held: []string{"service-desk"}, desk: true, asked: [][]string{both}},
		{name: "granted since, but not in the token", token: community.Actor{Subject: "u", Creator: true}, held: both,
			maker: true, asked: [][]string{{"community-creator"}}},
		{name: "already confirmed", token: community.Actor{Subject: "u", ServiceDesk: true, Confirmed: true},
			desk: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := &roleReader{held: c.held}
			got, err := roles.Confirm(t.Context(), kc, "r", c.token)
			if err != nil {
				t.Fatal(err)
			}
			if got.ServiceDesk != c.desk || got.Creator != c.maker {
				t.Errorf("service desk %v, creator %v; want %v, %v", got.ServiceDesk, got.Creator, c.desk, c.maker)
			}
			if !slices.EqualFunc(kc.asked, c.asked, slices.Equal) {
				t.Errorf("asked %v, want %v", kc.asked, c.asked)
			}
			if len(c.asked) > 0 && !got.Confirmed {
				t.Error("a confirmed actor is not marked so")
			}
		})
	}

	// Keycloak unreachable: the caller keeps nothing it could not confirm.
	kc := &roleReader{err: errors.New("connection refused")}
	if _, err := roles.Confirm(t.Context(), kc, "r", community.Actor{Subject: "u", ServiceDesk: true}); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("unreachable Keycloak: %v, want unavailable", err)
	}
}

// TestServiceDeskIsConfirmedLive: a service desk token whose role has been
// taken away since it was issued manages nothing; as an owner it keeps
// what owners may do, and the last-owner rule applies to it again.
func TestServiceDeskIsConfirmedLive(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := t.Context()
	f.create(t, f.desk, "NDD")
	alice := f.creator("alice")
	f.create(t, alice, "OWNED")
	stale := f.user("former-desk")
	stale.ServiceDesk = true // in the token, no longer in Keycloak

	const why = "the service desk role has been taken away since this token was issued"
	mustRefuse := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, community.ErrForbidden) || !strings.Contains(err.Error(), why) {
			t.Errorf("%s with a stale service desk token: %v", what, err)
		}
	}
	_, err := f.svc.Create(ctx, realm, stale, community.CreateRequest{Label: "NEW", Name: "New"})
	mustRefuse("create", err)
	_, err = f.svc.Delete(ctx, realm, stale, community.DeleteRequest{Label: "NDD"})
	mustRefuse("delete", err)
	_, err = f.svc.Members(ctx, realm, stale, "NDD", community.FirstMembers)
	mustRefuse("members", err)
	mustRefuse("add a member", f.svc.ChangeMember(ctx, realm, stale, "NDD", community.RoleConsumer, "alice", true))
	if f.row(t, "NEW") != nil || f.row(t, "NDD") == nil {
		t.Error("a refused change changed the registry")
	}
	acc, err := f.svc.Access(ctx, realm, stale)
	if err != nil || acc.ServiceDesk || acc.CanCreate || acc.Console() {
		t.Errorf("access of a stale service desk token: %+v, %v", acc, err)
	}

	// Made an owner while service desk, it remains one: it may manage
	// OWNED's members as an owner, but not remove the last owner.
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "OWNED", community.RoleOwner, stale.Username, true); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ChangeMember(ctx, realm, f.desk, "OWNED", community.RoleOwner, "alice", false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Members(ctx, realm, stale, "OWNED", community.FirstMembers); err != nil {
		t.Errorf("an owner whose service desk role was taken away: %v", err)
	}
	err = f.svc.ChangeMember(ctx, realm, stale, "OWNED", community.RoleOwner, stale.Username, false)
	if !errors.Is(err, community.ErrLastOwner) {
		t.Errorf("the last owner removed itself on a stale service desk token: %v", err)
	}
}

// unsure is an identity provider that cannot say which roles a user holds.
type unsure struct{ *fakeidp.IDP }

func (unsure) HeldRoles(context.Context, string, string, []string) ([]string, error) {
	return nil, errors.New("connection refused")
}

// TestUnconfirmedIsNotDenied: when Keycloak cannot confirm service desk's
// role, the change fails as unavailable and the audit trail says it
// failed; it does not record a refusal that never happened.
func TestUnconfirmedIsNotDenied(t *testing.T) {
	store, idp := memstore.New(), fakeidp.New()
	desk := community.Actor{Subject: idp.AddUser(realm, "desk"), ClientID: "service-desk", ServiceDesk: true}
	idp.GrantRole(realm, desk.Subject, deskRole)
	if _, err := community.New(store, idp, options(time.Minute)).Create(t.Context(), realm, desk,
		community.CreateRequest{Label: "NDD", Name: "N"}); err != nil {
		t.Fatal(err)
	}
	idp.AddUser(realm, "alice")
	svc := community.New(store, unsure{idp}, options(time.Minute))
	err := svc.ChangeMember(t.Context(), realm, desk, "NDD", community.RoleConsumer, "alice", true)
	if fault.KindOf(err) != fault.Unavailable {
		t.Errorf("add a member: %v, want unavailable", err)
	}
	events := store.Events()
	if ev := events[len(events)-1]; ev.Action != "add-member" || ev.Outcome != "failed" {
		t.Errorf("audited as %s %s, want add-member failed", ev.Action, ev.Outcome)
	}
	if _, err := svc.Delete(t.Context(), realm, desk, community.DeleteRequest{Label: "NDD"}); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("delete: %v, want unavailable", err)
	}
}
