package community

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nhs-terminology/communities/internal/fault"
)

// The domain's own types, and the two interfaces it needs: a Store for the
// registry and audit trail (internal/registry implements it over PostgreSQL,
// memstore in memory) and an IdentityProvider for what a community is in
// Keycloak (internal/keycloak implements it). Those packages convert to and from
// these types at their edge; nothing here knows GORM or gocloak.

// Member roles of a community, which are also its child group names.
const (
	RoleOwner    = "owner"
	RoleAuthor   = "author"
	RoleConsumer = "consumer"
)

// MemberRoles lists the member roles in display order.
var MemberRoles = []string{RoleOwner, RoleAuthor, RoleConsumer}

// States of a community's registry record: creating → active → deleting
// → (gone); failed is a create whose undo is still owed.
const (
	StateCreating = "creating"
	StateActive   = "active"
	StateDeleting = "deleting"
	StateFailed   = "failed"
)

// Trace is what the registry holds of a community id, for the drift
// check to tell what an artefact carrying it is.
type Trace int

const (
	// TraceNone: no row, and no create undone within UndoneKept.
	TraceNone Trace = iota
	// TraceRow: a row, in any state.
	TraceRow
	// TraceUndone: a create of the realm and label asked about, undone
	// within UndoneKept. Keycloak may commit a call the create gave up
	// waiting for after the undo, and what it makes then carries this id.
	TraceUndone
)

// UndoneKept is how long the registry remembers an undone create's id:
// far longer than Keycloak takes to commit a call (its transactions time
// out after 5 minutes) plus the drift checks that find what it made,
// even with the service stopped for a few days.
const UndoneKept = 7 * 24 * time.Hour

// MaxUndoneAsked bounds the undone creates a create whose label clashes in
// Keycloak looks at (Store.Undone): each costs a Keycloak call, and older
// ones are left to the drift check.
const MaxUndoneAsked = 5

// Community is a community as the registry holds it.
type Community struct {
	ID                string
	Realm             string
	Label             string
	LabelKey          string // Label folded for uniqueness (label.Key)
	Name              string
	NameKey           string
	State             string
	Artifacts         Artifacts
	CreatedBySub      string
	CreatedByUsername string
	CreatedByClient   string
	// LeaseUntil bounds an operation in flight; a row not active whose
	// lease ran out was abandoned.
	LeaseUntil *time.Time
	LastError  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Artifacts are the identity provider's ids of what a community owns, for
// operators and drift checks; artefacts are found by name, not by these.
type Artifacts struct {
	GroupID         string `json:"groupId,omitempty"`
	OwnerGroupID    string `json:"ownerGroupId,omitempty"`
	AuthorGroupID   string `json:"authorGroupId,omitempty"`
	ConsumerGroupID string `json:"consumerGroupId,omitempty"`
	ReadRoleID      string `json:"readRoleId,omitempty"`
	WriteRoleID     string `json:"writeRoleId,omitempty"`
}

// Or is a with each id it lacks taken from b.
func (a Artifacts) Or(b Artifacts) Artifacts {
	return Artifacts{
		GroupID: cmp.Or(a.GroupID, b.GroupID), OwnerGroupID: cmp.Or(a.OwnerGroupID, b.OwnerGroupID),
		AuthorGroupID: cmp.Or(a.AuthorGroupID, b.AuthorGroupID), ConsumerGroupID: cmp.Or(a.ConsumerGroupID, b.ConsumerGroupID),
		ReadRoleID: cmp.Or(a.ReadRoleID, b.ReadRoleID), WriteRoleID: cmp.Or(a.WriteRoleID, b.WriteRoleID),
	}
}

// Claims are the provenance claims of the caller's token (seed 004:
// requesting_system, requesting_organization, requesting_user,
// reason_for_request) kept with an audit event.
type Claims map[string]string

// AuditEvent is one entry of the audit trail: a change or an attempt, who
// asked, and how it ended.
type AuditEvent struct {
	At            time.Time
	Realm         string
	Action        string
	Label         string
	Name          string
	ActorSub      string
	ActorClient   string
	ActorUsername string
	Outcome       string
	Detail        string
	RequestID     string
	Claims        Claims
}

// Spec is what the identity provider makes for a community.
type Spec struct {
	ID          string // registry id, the marker on every artefact
	Realm       string
	Root        string // root group name
	Label       string
	Name        string
	Owners      []string // user ids
	FHIRClients []string // clientIds that get the scopes as defaults
}

// User is a realm's user as a membership needs it.
type User struct {
	ID string
	// ServiceAccountOf is the client whose service account the user is
	// (by the username Keycloak gives service accounts), "" for a person.
	// A system account holds its profile's roles and nothing else
	// (docs/system-accounts.md), so it joins no community.
	ServiceAccountOf string
}

// Member is a user in one of a community's groups. A disabled member
// keeps the membership but cannot sign in, and the live owner checks
// take it for no owner.
type Member struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Enabled  bool   `json:"enabled"`
}

// MemberPage asks for part of a community's members: those of Role alone
// (all three roles when empty), at most Max of each role from First, by
// username. A read is always bounded, because a consumer group may hold
// every user of the realm (a default community's does).
type MemberPage struct {
	Role       string
	First, Max int
}

// What one read of members answers for each role: DefaultMembersPerRole
// unless asked otherwise (as Keycloak's own admin API), at most
// MaxMembersPerRole; MaxFirstMember bounds First (Keycloak's int).
const (
	DefaultMembersPerRole = 100
	MaxMembersPerRole     = 1000
	MaxFirstMember        = 1<<31 - 1
)

// FirstMembers is the first page of every role's members.
var FirstMembers = MemberPage{Max: DefaultMembersPerRole}

// Check says what is wrong with p, if anything.
func (p MemberPage) Check() error {
	switch {
	case p.Role != "" && !slices.Contains(MemberRoles, p.Role):
		return noRole(ErrInvalid, p.Role)
	case p.First < 0 || p.First > MaxFirstMember:
		return fmt.Errorf("%w first: give a whole number from 0 to %d", ErrInvalid, MaxFirstMember)
	case p.Max < 1 || p.Max > MaxMembersPerRole:
		return fmt.Errorf("%w max: give a whole number from 1 to %d", ErrInvalid, MaxMembersPerRole)
	}
	return nil
}

// noRole refuses, as kind, a role that is none of a community's.
func noRole(kind error, role string) error {
	return fmt.Errorf("%w: %q is not a community role; use owner, author or consumer", kind, role)
}

// GroupRef is a group a user is in.
type GroupRef struct {
	ID   string
	Path string
}

// Drift is one way a community's artefacts differ from what they should be.
type Drift struct {
	What     string `json:"what"`               // e.g. "realm role PERM_NDD_READ"
	Problem  string `json:"problem"`            // "missing", "not this community's", ...
	Repaired bool   `json:"repaired,omitempty"` // set when the check fixed it
	// Critical drift widened access: a community scope was on a FHIR
	// client without its role mapping, so in every user's token.
	Critical bool `json:"critical,omitempty"`
}

func (d Drift) String() string {
	s := d.What + ": " + d.Problem
	if d.Critical {
		s = "CRITICAL " + s
	}
	if d.Repaired {
		s += " (repaired)"
	}
	return s
}

// Orphan is a community group in the identity provider, or a community
// role or admin permission whose group is gone.
type Orphan struct {
	Label string `json:"label"`
	ID    string `json:"id"` // the marker on it; empty if none
	// Artefact names a role or admin permission ("realm role
	// PERM_NDD_READ"); empty for the community's group.
	Artefact string `json:"artefact,omitempty"`
}

// SharedDrift is a community's Shared differences, as a survey found them.
type SharedDrift struct {
	Spec  Spec
	Drift []Drift
}

// Survey is what a bulk read of a realm found. A bulk read is not a
// snapshot (its parts are read at different moments, while communities are
// created and deleted), so Suspects are to be confirmed one by one with
// Ensure, and Groups that look orphaned looked up again, before anything is
// reported or repaired.
type Survey struct {
	Suspects map[string][]Drift // by community id
	// Shared are the communities, by id, whose only differences are ones
	// Keycloak makes to every community at once when something realm-wide
	// is deleted by hand: their admin permissions no longer name the
	// realm-wide service-desk policy (a deleted policy goes from every
	// policy that names it), or their owner group no longer maps the
	// realm's community-owner role (a deleted role goes from every group
	// that maps it). No create or delete passes through those states, so
	// they need no check community by community, only that each is still
	// active; MendShared mends them all at once.
	Shared map[string][]Drift
	// Realm are differences of the realm itself (its admin permissions
	// switched off), said once rather than of each community: every
	// community would otherwise be a suspect, each confirmed in its own
	// calls, on every pass until someone switched them on.
	Realm  []Drift
	Groups []Orphan // every community group under the root
	// Marked are the realm's community roles and admin permissions that
	// carry a marker, one per marker (with the label of its name), where
	// an orphan whose group is gone is found.
	Marked []Orphan
}

// CleanupReport says what a clean-up removed and what it left because it
// belongs to someone else.
type CleanupReport struct {
	Deleted []string
	Foreign []string
}

// Errors a Store returns.
var (
	ErrNoRecord     = fault.Sentinel(fault.NotFound, "no such community record")
	ErrLabelTaken   = fault.Sentinel(fault.Conflict, "a community with this security label already exists")
	ErrNameTaken    = fault.Sentinel(fault.Conflict, "a community with this name already exists")
	ErrStateChanged = fault.Sentinel(fault.Conflict, "community changed state concurrently")
	// ErrLabelRetired: the label was a deleted community's. Resources may
	// still carry it (a delete does not remove labels, seed 000), and a
	// new community of the label would give its members them.
	ErrLabelRetired = fault.Sentinel(fault.Conflict, "the security label was a deleted community's")
)

// Store keeps the registry and the audit trail. Its contract, which every
// implementation passes (storetest), is what the sagas rely on: unique
// labels and names per realm ignoring case, conditional state transitions,
// leases, and locks that hold across replicas.
type Store interface {
	// Reserve inserts c; ErrLabelTaken or ErrNameTaken if either is used
	// in c's realm (by keys), whatever the other row's state;
	// ErrLabelRetired, inserting nothing, if c's label was a deleted
	// community's, unless reuseRetired.
	Reserve(ctx context.Context, c *Community, reuseRetired bool) error
	// Get finds a community of realm by label key, in any state.
	Get(ctx context.Context, realm, labelKey string) (*Community, error)
	// List returns the active communities of realm by label key; max <= 0
	// means all.
	List(ctx context.Context, realm string, first, max int) ([]Community, error)
	// Search returns, as List does, the active communities of realm whose
	// label key or name key contains key.
	Search(ctx context.Context, realm, key string, first, max int) ([]Community, error)
	// ByLabels returns the active communities of realm among labelKeys.
	ByLabels(ctx context.Context, realm string, labelKeys []string) ([]Community, error)
	// Now is the time by the registry's clock. Leases are written and
	// compared by it alone: replicas' own clocks may disagree, and one
	// slow by half a lease would write leases another takes for run out
	// while their operations still run.
	Now(ctx context.Context) (time.Time, error)
	// Transition moves row id from state from to to, setting its lease
	// (nil clears it), artefacts (nil keeps them) and last error; with
	// expect set the row must still hold exactly that lease.
	// ErrStateChanged when the row is not as expected.
	Transition(ctx context.Context, id, from, to string, expect, lease *time.Time, a *Artifacts, lastErr string) error
	// Remove deletes row id if it is still in state, else ErrStateChanged.
	// Removing a create (state creating or failed), which happens only
	// once its undo is done, keeps its id as TraceUndone for UndoneKept;
	// removing a delete (state deleting) retires its label for good, in
	// the same change.
	Remove(ctx context.Context, id, state string) error
	// ClaimAbandoned takes one row of realms, not active, whose lease ran
	// out, and extends its lease to now+lease so exactly one caller gets
	// it; nil, nil when there is none.
	ClaimAbandoned(ctx context.Context, realms []string, lease time.Duration) (*Community, error)
	// SetArtifacts records the artefacts of an active community.
	SetArtifacts(ctx context.Context, id string, a Artifacts) error
	// Trace says what the registry holds of community id: a row, in any
	// realm, or the undone create of that id in realm with labelKey.
	Trace(ctx context.Context, realm, labelKey, id string) (Trace, error)
	// Undone returns the ids of realm's creates of labelKey undone within
	// UndoneKept, newest first, at most MaxUndoneAsked.
	Undone(ctx context.Context, realm, labelKey string) ([]string, error)
	// Audit appends an event to the audit trail.
	Audit(ctx context.Context, ev *AuditEvent) error
	// WithCommunityLock runs fn while holding community id's lock, which
	// excludes every other holder in any replica. fn's context ends if
	// the lock is lost (its connection to the registry goes).
	WithCommunityLock(ctx context.Context, id string, fn func(context.Context) error) error
	// AsLeader runs fn unless another holder runs it for realm, reporting
	// whether it ran; fn's context ends if the lock is lost.
	AsLeader(ctx context.Context, realm string, fn func(context.Context) error) (bool, error)
}

// IdentityProvider is what the service needs of Keycloak. Failures to
// reach it are of kind fault.Unavailable, refusals fault.Refused, a user
// or client that does not exist fault.NotFound, an artefact held by
// someone else fault.Conflict.
type IdentityProvider interface {
	// Provision makes a community's artefacts; on error what was made
	// stays, for Cleanup to find by name and marker.
	Provision(ctx context.Context, s Spec) (Artifacts, error)
	// Cleanup removes what carries community id's marker; idempotent.
	Cleanup(ctx context.Context, realm, root, label, id string, fhirClients []string) (CleanupReport, error)
	// Ensure compares a community's artefacts with what Provision makes;
	// with repair it makes what is missing.
	Ensure(ctx context.Context, s Spec, repair bool) ([]Drift, Artifacts, error)
	// Survey compares every community of specs (all of realm's) with what
	// Provision makes, reading the realm in bulk: hundreds of communities a
	// call, not calls per community. It changes nothing, and lists the
	// community groups under root.
	Survey(ctx context.Context, realm, root string, specs []Spec) (Survey, error)
	// EnsureRealm confirms a survey's realm-wide differences by reading
	// the realm now, and with repair mends them (switches its admin
	// permissions on, makes the realm-wide ones, which name root, as
	// Provision makes them).
	EnsureRealm(ctx context.Context, realm, root string, repair bool) ([]Drift, error)
	// MendShared mends the differences of a survey's Shared communities
	// (all of realm under root) in bulk: hundreds of communities a call.
	// It changes only what is still as the survey found it, and returns,
	// by community id, the What of each difference it mended; while a
	// realm-wide policy says something else, nothing (fault.Conflict).
	MendShared(ctx context.Context, realm, root string, shared []SharedDrift) (map[string][]string, error)
	// CommunityGroup finds the group of label under root now, with its
	// marker; ok is false when there is none.
	CommunityGroup(ctx context.Context, realm, root, label string) (g Orphan, ok bool, err error)
	// CarriesMarker reports whether a role or admin permission of label's
	// names carries community id's marker now.
	CarriesMarker(ctx context.Context, realm, root, label, id string) (bool, error)
	// ResolveUser finds a user of realm by id or, failing that, by exact
	// username.
	ResolveUser(ctx context.Context, realm, ref string) (User, error)
	// IsMember reports whether user userID is a direct member of group
	// groupID now, and enabled: a membership confers nothing on a token
	// that outlived its user's disabling.
	IsMember(ctx context.Context, realm, groupID, userID string) (bool, error)
	RoleReader
	// Members lists all of group groupID's direct members (a call per
	// 100): for groups known to be small, such as owners.
	Members(ctx context.Context, realm, groupID string) ([]Member, error)
	// MembersPage lists at most max of group groupID's direct members from
	// first, by username: one call, however many the group holds.
	MembersPage(ctx context.Context, realm, groupID string, first, max int) ([]Member, error)
	// MembersOf lists the direct members of each of groupIDs in bulk (a
	// few calls for thousands of groups); a group that does not exist has
	// no entry.
	MembersOf(ctx context.Context, realm string, groupIDs []string) (map[string][]Member, error)
	AddMember(ctx context.Context, realm, groupID, userID string) error
	// RemoveMember is idempotent for a user who is not a member; a group
	// or user that does not exist is fault.NotFound.
	RemoveMember(ctx context.Context, realm, groupID, userID string) error
	AddDefaultGroup(ctx context.Context, realm, groupID string) error
	UserGroups(ctx context.Context, realm, userID string) ([]GroupRef, error)
}
