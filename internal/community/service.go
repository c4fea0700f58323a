// Package community carries out creating, listing and deleting communities
// across the registry (PostgreSQL) and Keycloak, and decides who may.
//
// A change spans two systems without a shared transaction, so every change
// is a saga over a registry row: the row is written first (its unique
// indexes settle races), Keycloak is changed next, and the row is finished
// last. Any failure undoes what Keycloak got; whatever cannot be undone at
// once is left to Recover, which claims rows whose lease ran out.
package community

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/label"
)

// The domain's errors, each of a kind of the service's one vocabulary
// (internal/fault), which the API maps to statuses in one place.
var (
	ErrNotFound      = fault.Sentinel(fault.NotFound, "community not found")
	ErrForbidden     = fault.Sentinel(fault.Forbidden, "forbidden")
	ErrDuplicate     = fault.Sentinel(fault.Conflict, "duplicate")
	ErrMismatch      = fault.Sentinel(fault.Conflict, "representation does not match the registry")
	ErrUnknownUser   = fault.Sentinel(fault.Invalid, "unknown user")
	ErrInvalid       = label.ErrInvalid
	ErrKeycloakClash = fault.Sentinel(fault.Conflict, "keycloak already holds a conflicting artefact")
	ErrLastOwner     = fault.Sentinel(fault.Conflict, "last owner")
	// ErrSystemAccount refuses a system account's service account user as
	// a member: it holds its profile's roles and nothing else, which only
	// service desk chooses (docs/system-accounts.md).
	ErrSystemAccount = fault.Sentinel(fault.Unprocessable, "a system account cannot be a member of a community")
)

// systemAccount says which user was refused and why.
func systemAccount(ref, client string) error {
	return fmt.Errorf("%w: user %q is the service account of client %q, whose privileges are its profile's alone",
		ErrSystemAccount, ref, client)
}

// Actor is the verified caller of an operation.
type Actor struct {
	Subject     string
	ClientID    string
	Username    string
	RequestID   string
	ServiceDesk bool
	// Creator holds the creator role, granted on purpose; APIAuthor has
	// API-level write. Creating a community needs both (or service desk).
	Creator   bool
	APIAuthor bool
	// Claims are the token's provenance claims, kept in the audit trail.
	Claims map[string]string
	// Confirmed: ServiceDesk and Creator are known to hold now, not only
	// when the token was issued (Roles.Confirm), or the actor's authority
	// is not a token (a pipeline's apply, with the service's own
	// credentials).
	Confirmed bool
}

// Options configures a Service.
type Options struct {
	RootGroup   string
	FHIRClients []string
	// Roles are the realm roles of service desk and of community
	// creators; an operation that relies on one confirms it in Keycloak.
	Roles Roles
	// Lease bounds one operation; a row left unfinished longer than this is
	// recovered by whichever replica claims it first.
	Lease  time.Duration
	Logger *slog.Logger
	// Guard, if set, refuses deletes while the community's labels remain
	// on FHIR resources.
	Guard Guard
}

// Service carries out community operations.
type Service struct {
	store Store
	kc    IdentityProvider
	opts  Options
	log   *slog.Logger

	// unchecked holds, by realm, the labels whose check failed in this
	// process's last drift pass: the next pass checks them last, so that
	// communities that keep failing never starve the ones after them.
	mu        sync.Mutex
	unchecked map[string]map[string]bool
}

// New builds a Service.
func New(store Store, kc IdentityProvider, o Options) *Service {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, kc: kc, opts: o, log: log}
}

// List returns the active communities of realm, by label.
func (s *Service) List(ctx context.Context, realm string, first, max int) ([]Community, error) {
	return s.Find(ctx, realm, Actor{}, ListFilter{}, first, max)
}

// ListFilter narrows a list of communities: at 10,000, nobody pages to
// theirs.
type ListFilter struct {
	// Search keeps the communities whose label or name contains it,
	// ignoring case.
	Search string
	// Mine keeps the communities the caller is in one of the groups of now.
	Mine bool
}

// Find returns the active communities of realm that f keeps, by label. Mine
// costs one paged read of the caller's groups and one registry query,
// whatever the number of communities.
func (s *Service) Find(ctx context.Context, realm string, a Actor, f ListFilter, first, max int) ([]Community, error) {
	// Names and labels are matched as they are keyed (labels are ASCII,
	// where NameKey is Key with spaces collapsed).
	key := label.NameKey(f.Search)
	var (
		cs  []Community
		err error
	)
	switch {
	case f.Mine:
		return s.mine(ctx, realm, a, key, first, max)
	case key != "":
		cs, err = s.store.Search(ctx, realm, key, first, max)
	default:
		cs, err = s.store.List(ctx, realm, first, max)
	}
	if err != nil {
		return nil, fault.Upstream("the registry is unavailable", err)
	}
	return cs, nil
}

func (s *Service) mine(ctx context.Context, realm string, a Actor, key string, first, max int) ([]Community, error) {
	rows, _, err := s.memberships(ctx, realm, a.Subject)
	if err != nil {
		return nil, err
	}
	rows = slices.DeleteFunc(rows, func(c Community) bool {
		return !strings.Contains(c.LabelKey, key) && !strings.Contains(c.NameKey, key)
	})
	rows = rows[min(first, len(rows)):]
	if max > 0 && max < len(rows) {
		rows = rows[:max]
	}
	return rows, nil
}

// Get returns the active community of realm labelled l (ignoring case).
// l is held to the rule labels are made by, so that case folding can only
// ever map ASCII letters (the Kelvin sign once reached community "k").
func (s *Service) Get(ctx context.Context, realm, l string) (*Community, error) {
	c, err := s.Holder(ctx, realm, l)
	if err == nil && c.State != StateActive {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, l)
	}
	return c, err
}

// Holder returns the community of realm that holds label l (ignoring
// case) in any state: a label is taken from a create's first step to a
// delete's last, and a failed create holds it until recovery undoes it.
func (s *Service) Holder(ctx context.Context, realm, l string) (*Community, error) {
	if err := label.ValidateLabel(l); err != nil {
		return nil, err
	}
	c, err := s.store.Get(ctx, realm, label.Key(l))
	if errors.Is(err, ErrNoRecord) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, l)
	}
	if err != nil {
		return nil, fault.Upstream("the registry is unavailable", err)
	}
	return c, nil
}

// CreateRequest is a validated-by-Create request to make a community.
type CreateRequest struct {
	Label  string
	Name   string
	Owners []string // user ids or usernames; service desk only
	// Dormant makes the community without owners (service desk only):
	// service desk appoints them later.
	Dormant bool
}

// Create makes a community in realm and makes its owners (the caller,
// unless service desk names others) members of its owner group.
func (s *Service) Create(ctx context.Context, realm string, a Actor, req CreateRequest) (*Community, error) {
	if err := label.ValidateLabel(req.Label); err != nil {
		return nil, err
	}
	name, err := label.NormalizeName(req.Name)
	if err != nil {
		return nil, err
	}
	ev := s.event(realm, "create", a, req.Label, name)
	if !(a.Creator && a.APIAuthor) && !a.ServiceDesk {
		s.audit(ctx, ev, "denied", "caller is neither an API-level author granted the community creator role nor service desk")
		return nil, fmt.Errorf("%w: creating communities needs API-level author access and the community creator role, or the service desk role", ErrForbidden)
	}
	if (len(req.Owners) > 0 || req.Dormant) && !a.ServiceDesk {
		s.audit(ctx, ev, "denied", "owners named by a caller who is not service desk")
		return nil, fmt.Errorf("%w: only service desk may name the owners of a new community", ErrForbidden)
	}
	// Both roles are granted on purpose and may have been taken away since
	// the token was issued: ask Keycloak, not the token.
	held, err := s.opts.Roles.Confirm(ctx, s.kc, realm, a)
	if err != nil {
		return nil, err
	}
	if !(held.Creator && held.APIAuthor) && !held.ServiceDesk || (len(req.Owners) > 0 || req.Dormant) && !held.ServiceDesk {
		lost := takenAway(a, held)
		s.audit(ctx, ev, "denied", lost)
		return nil, fmt.Errorf("%w: %s", ErrForbidden, lost)
	}
	a = held
	// Service desk manages every community by its role: made an owner of
	// what it creates, it would carry each community's owner privilege in
	// its tokens until they grew too large to send. Without named owners
	// its community is dormant until it appoints some (seed 000).
	var owners []string
	if !req.Dormant && !(a.ServiceDesk && len(req.Owners) == 0) {
		if owners, err = s.resolveOwners(ctx, realm, a, req.Owners); err != nil {
			if errors.Is(err, ErrSystemAccount) {
				s.audit(ctx, ev, "denied", err.Error())
			}
			return nil, err
		}
	}

	// The lease is the registry's time; the saga's deadline, half the
	// lease, runs from before that time was read, whatever waits follow.
	started := time.Now()
	now, err := s.registryNow(ctx)
	if err != nil {
		return nil, fault.Upstream("the registry is unavailable; nothing was created", err)
	}
	lease := now.Add(s.opts.Lease)
	row := &Community{
		ID: uuid.NewString(), Realm: realm,
		Label: req.Label, LabelKey: label.Key(req.Label),
		Name: name, NameKey: label.NameKey(name),
		State:        StateCreating,
		CreatedBySub: a.Subject, CreatedByUsername: a.Username, CreatedByClient: a.ClientID,
		LeaseUntil: &lease, CreatedAt: now, UpdatedAt: now,
	}
	// A deleted community's label may still be on resources (a delete
	// does not remove labels, seed 000): a new community of it would give
	// its members them. Only service desk, who may see and relabel every
	// resource, may give it out again.
	switch err := s.store.Reserve(ctx, row, a.ServiceDesk); {
	case errors.Is(err, ErrLabelRetired):
		s.audit(ctx, ev, "conflict", "security label of a deleted community")
		return nil, fmt.Errorf("%w (%s): resources may still carry it, and a new community of that label would give its members them; "+
			"only service desk may reuse it", ErrLabelRetired, req.Label)
	case errors.Is(err, ErrLabelTaken):
		s.audit(ctx, ev, "conflict", "security label taken")
		return nil, fmt.Errorf("%w: a community labelled %q already exists (labels are unique ignoring case)", ErrDuplicate, req.Label)
	case errors.Is(err, ErrNameTaken):
		s.audit(ctx, ev, "conflict", "name taken")
		return nil, fmt.Errorf("%w: a community named %q already exists (names are unique ignoring case, spacing, character width and accents written either way)", ErrDuplicate, name)
	case err != nil:
		return nil, fault.Upstream("the registry is unavailable; nothing was created", err)
	}

	// The saga runs to its end even if the caller goes away, within a
	// deadline well inside the lease so no other replica recovers it
	// while it still runs.
	opCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), started.Add(s.opts.Lease/2))
	defer cancel()
	spec := Spec{
		ID: row.ID, Realm: realm, Root: s.opts.RootGroup, Label: row.Label, Name: row.Name,
		Owners: owners, FHIRClients: s.opts.FHIRClients,
	}
	art, err := s.kc.Provision(opCtx, spec)
	// The clash may be what an earlier create of this label, undone,
	// made when Keycloak committed it late: the rest of that undo clears
	// the way (the drift check would, minutes later). What this attempt
	// made before its clash (an admin permission can clash after the
	// extension's call) goes first, as the extension refuses what exists.
	if errors.Is(err, fault.Conflict) && s.finishUndone(opCtx, row, ev.RequestID) {
		if _, err = s.kc.Cleanup(opCtx, realm, s.opts.RootGroup, row.Label, row.ID, s.opts.FHIRClients); err == nil {
			art, err = s.kc.Provision(opCtx, spec)
		}
	}
	if err != nil {
		s.undoCreate(opCtx, row, err)
		s.audit(ctx, ev, "failed", err.Error())
		if errors.Is(err, fault.Conflict) {
			return nil, fmt.Errorf("%w: %s; nothing was created", ErrKeycloakClash, err.Error())
		}
		return nil, fault.Upstream("Keycloak could not make community "+row.Label+"'s groups, roles and scopes; nothing was kept", err)
	}
	row.Artifacts = art
	if err := s.store.Transition(opCtx, row.ID, StateCreating, StateActive, &lease, nil, &row.Artifacts, ""); err != nil {
		// The row stays "creating" with its lease: Recover undoes the
		// Keycloak side once the lease runs out.
		s.log.ErrorContext(ctx, "could not activate community; recovery will undo it", "realm", realm, "label", row.Label, "error", err)
		s.audit(ctx, ev, "failed", "registry update failed: "+err.Error())
		return nil, fault.Upstream("the registry could not record community "+row.Label+"; it will be undone automatically", err)
	}
	row.State, row.LeaseUntil = StateActive, nil
	s.audit(ctx, ev, "success", fmt.Sprintf("owners %v", owners))
	return row, nil
}

// registryNow is the registry's time, as leases are written in it.
func (s *Service) registryNow(ctx context.Context) (time.Time, error) {
	now, err := s.store.Now(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the registry's clock: %w", err)
	}
	return now.UTC().Truncate(time.Microsecond), nil
}

func (s *Service) resolveOwners(ctx context.Context, realm string, a Actor, refs []string) ([]string, error) {
	if len(refs) == 0 {
		// A creator becomes the owner, but not a system account, even one
		// granted the creator role by hand. Its tokens need not carry a
		// username to tell it by, so Keycloak is asked: one call more.
		refs = []string{a.Subject}
	}
	if len(refs) > MaxOwners {
		return nil, fmt.Errorf("%w owners: at most %d may be named", ErrInvalid, MaxOwners)
	}
	seen := map[string]bool{}
	var ids []string
	for _, ref := range refs {
		if err := ValidateUserRef(ref); err != nil {
			return nil, err
		}
		u, err := s.kc.ResolveUser(ctx, realm, ref)
		if errors.Is(err, fault.NotFound) {
			return nil, fmt.Errorf("%w: owner %q is not a user of realm %s", ErrUnknownUser, ref, realm)
		}
		if err != nil {
			return nil, fault.Upstream("Keycloak could not look up the owners; nothing was created", err)
		}
		if u.ServiceAccountOf != "" {
			return nil, systemAccount(ref, u.ServiceAccountOf)
		}
		if !seen[u.ID] {
			seen[u.ID] = true
			ids = append(ids, u.ID)
		}
	}
	return ids, nil
}

// finishUndone removes what Keycloak made late for the creates of row's
// label undone lately, and reports whether it removed anything. requestID
// is the create's, whose audit trail the removal joins.
func (s *Service) finishUndone(ctx context.Context, row *Community, requestID string) bool {
	ids, err := s.store.Undone(ctx, row.Realm, row.LabelKey)
	if err != nil {
		s.log.WarnContext(ctx, "could not look up undone creates of a clashing label", "realm", row.Realm, "label", row.Label,
			"error", err)
		return false
	}
	removed := false
	for _, id := range ids {
		cr, err := s.kc.Cleanup(ctx, row.Realm, s.opts.RootGroup, row.Label, id, s.opts.FHIRClients)
		if err != nil {
			s.log.WarnContext(ctx, "could not finish the undo of an earlier create of a clashing label", "realm", row.Realm,
				"label", row.Label, "undone_id", id, "error", err)
			return removed
		}
		if len(cr.Deleted) == 0 {
			continue
		}
		removed = true
		s.lateUndoFinished(ctx, row.Realm, row.Label, requestID, cr)
	}
	return removed
}

// lateUndoFinished logs and audits what Cleanup removed of a create that
// Keycloak completed after its undo; requestID is the request that found
// it, if a request did (a create of the same label).
func (s *Service) lateUndoFinished(ctx context.Context, realm, label, requestID string, cr CleanupReport) {
	s.log.WarnContext(ctx, "removed what Keycloak made for a create after the create was undone", "realm", realm,
		"label", label, "deleted", cr.Deleted, "kept_foreign", cr.Foreign)
	s.audit(ctx, &AuditEvent{Realm: realm, Action: "recover", Label: label, ActorClient: "communities-recovery",
		RequestID: requestID},
		"success", fmt.Sprintf("finished the undo of a failed create, which Keycloak completed late: deleted %v", cr.Deleted))
}

// undoCreate removes what Provision made. If Keycloak cannot be reached to
// undo it, the row is marked failed with an expired lease, so Recover
// retries the undo as soon as Keycloak is back.
func (s *Service) undoCreate(ctx context.Context, row *Community, cause error) {
	rep, err := s.kc.Cleanup(ctx, row.Realm, s.opts.RootGroup, row.Label, row.ID, s.opts.FHIRClients)
	if err == nil {
		if err := s.store.Remove(ctx, row.ID, StateCreating); err != nil {
			s.log.ErrorContext(ctx, "could not remove registry row of undone create", "label", row.Label, "error", err)
		}
		s.log.WarnContext(ctx, "create failed and was undone", "realm", row.Realm, "label", row.Label,
			"cause", cause.Error(), "deleted", rep.Deleted, "kept_foreign", rep.Foreign)
		return
	}
	// Expired by the registry's clock: the lease's start.
	expired := row.LeaseUntil.Add(-s.opts.Lease)
	if terr := s.store.Transition(ctx, row.ID, StateCreating, StateFailed, nil, &expired, nil, cause.Error()); terr != nil {
		s.log.ErrorContext(ctx, "could not mark failed create", "label", row.Label, "error", terr)
	}
	s.log.ErrorContext(ctx, "create failed and could not be undone yet; recovery will retry", "realm", row.Realm,
		"label", row.Label, "cause", cause.Error(), "undo_error", err.Error())
}

// DeleteRequest names the community to delete. With Match set (the seed's
// DELETE with a body) the label and name must both equal the registry's.
type DeleteRequest struct {
	Label string
	Match *Representation
	// AcceptLabelled deletes even if the community's labels remain on
	// resources (service desk only).
	AcceptLabelled bool
}

// Representation is a community as the seeds show it.
type Representation struct {
	SecurityLabel string `json:"securityLabel"`
	CommunityName string `json:"communityName"`
}

// Delete removes a community's artefacts and registry row. Users are never
// deleted; they only lose the memberships.
func (s *Service) Delete(ctx context.Context, realm string, a Actor, req DeleteRequest) (*Community, error) {
	row, err := s.Get(ctx, realm, req.Label)
	ev := s.event(realm, "delete", a, req.Label, "")
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.audit(ctx, ev, "not-found", "")
		}
		return nil, err
	}
	ev.Label, ev.Name = row.Label, row.Name
	if m := req.Match; m != nil && (m.SecurityLabel != row.Label || m.CommunityName != row.Name) {
		s.audit(ctx, ev, "conflict", "representation mismatch")
		return nil, fmt.Errorf("%w: the registry holds {securityLabel: %q, communityName: %q}; send exactly that to delete it",
			ErrMismatch, row.Label, row.Name)
	}
	held, err := s.opts.Roles.Confirm(ctx, s.kc, realm, a)
	if err != nil {
		return nil, err
	}
	if err := s.mayDelete(ctx, a, held, row); err != nil {
		s.audit(ctx, ev, refusal(err), err.Error())
		return nil, err
	}
	a = held
	guarded, err := s.guardDelete(ctx, a, row, req.AcceptLabelled)
	if err != nil {
		s.audit(ctx, ev, "refused", err.Error())
		return nil, err
	}
	// Under the community's lock, so that a repair under way finishes
	// before the delete begins, and none begins after (ensureActive). The
	// lease, by the registry's clock, starts once the lock is held.
	var (
		started time.Time
		lease   time.Time
	)
	err = s.store.WithCommunityLock(ctx, row.ID, func(ctx context.Context) error {
		started = time.Now()
		now, err := s.registryNow(ctx)
		if err != nil {
			return err
		}
		lease = now.Add(s.opts.Lease)
		return s.store.Transition(ctx, row.ID, StateActive, StateDeleting, nil, &lease, nil, "")
	})
	switch {
	case errors.Is(err, ErrStateChanged):
		return nil, fmt.Errorf("%w: %s is being deleted by another request", ErrNotFound, row.Label)
	case err != nil:
		return nil, fault.Upstream("the registry is unavailable; nothing was deleted", err)
	}
	opCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), started.Add(s.opts.Lease/2))
	defer cancel()
	if _, err := s.kc.Cleanup(opCtx, realm, s.opts.RootGroup, row.Label, row.ID, s.opts.FHIRClients); err != nil {
		// Stays "deleting": it is gone from lists, and Recover finishes it
		// when Keycloak is back. Expired by the registry's clock: the
		// lease's start.
		expired := lease.Add(-s.opts.Lease)
		if terr := s.store.Transition(opCtx, row.ID, StateDeleting, StateDeleting, nil, &expired, nil, err.Error()); terr != nil {
			s.log.ErrorContext(ctx, "could not release delete lease", "label", row.Label, "error", terr)
		}
		s.audit(ctx, ev, "failed", err.Error())
		return nil, fault.Upstream("Keycloak could not delete community "+row.Label+"; the deletion will be finished automatically", err)
	}
	if err := s.store.Remove(opCtx, row.ID, StateDeleting); err != nil {
		s.audit(ctx, ev, "failed", err.Error())
		return nil, fault.Upstream("the registry could not remove community "+row.Label+"; the deletion will be finished automatically", err)
	}
	s.audit(ctx, ev, "success", guarded)
	return row, nil
}

// mayDelete: service desk may delete any community; a community creator
// only one whose owner group they are in now. token is the caller as its
// token says, a as Keycloak sees it now (Roles.Confirm): the roles and the
// ownership that count are those of now, not of when the token was issued.
func (s *Service) mayDelete(ctx context.Context, token, a Actor, row *Community) error {
	if a.ServiceDesk {
		return nil
	}
	if !a.Creator {
		if lost := takenAway(token, a); lost != "" {
			return fmt.Errorf("%w: %s", ErrForbidden, lost)
		}
		return fmt.Errorf("%w: deleting communities needs the service desk role, or the community creator role and ownership", ErrForbidden)
	}
	owner, err := s.isOwner(ctx, a, row)
	if err != nil {
		return err
	}
	if !owner {
		return fmt.Errorf("%w: only service desk or an owner of %s may delete it", ErrForbidden, row.Label)
	}
	return nil
}

// Recover undoes every abandoned operation of realms it can claim:
// half-made creates, creates whose undo failed, and half-done deletes all
// end with nothing in Keycloak and no row. A row it cannot recover now
// (Keycloak down, realm gone) keeps its renewed lease and is retried after
// it; the others are recovered meanwhile. A pass tries each row once:
// failures that together outlast a lease would otherwise hand the first
// rows back to it again, and the pass, which the drift check waits for,
// would end only when Keycloak came back. It returns how many it
// recovered.
func (s *Service) Recover(ctx context.Context, realms []string) (int, error) {
	n := 0
	var errs []error
	tried := map[string]bool{}
	again := 0 // rows tried before, claimed again in a row
	for {
		row, err := s.store.ClaimAbandoned(ctx, realms, s.opts.Lease)
		if err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		if row == nil {
			return n, errors.Join(errs...)
		}
		if tried[row.ID] {
			// Its lease ran out again while this pass tried others: the
			// claim renewed it, for the next pass. Once every row claimed
			// is one tried, none is left for this pass.
			if again++; again >= len(tried) {
				return n, errors.Join(errs...)
			}
			continue
		}
		tried[row.ID], again = true, 0
		rep, err := s.kc.Cleanup(ctx, row.Realm, s.opts.RootGroup, row.Label, row.ID, s.opts.FHIRClients)
		if err != nil {
			errs = append(errs, fmt.Errorf("recover %s/%s (%s): %w", row.Realm, row.Label, row.State, err))
			continue
		}
		if err := s.store.Remove(ctx, row.ID, row.State); err != nil && !errors.Is(err, ErrStateChanged) {
			errs = append(errs, fmt.Errorf("recover %s/%s: %w", row.Realm, row.Label, err))
			continue
		}
		n++
		s.log.InfoContext(ctx, "recovered abandoned operation", "realm", row.Realm, "label", row.Label,
			"state", row.State, "deleted", rep.Deleted, "kept_foreign", rep.Foreign)
		ev := &AuditEvent{Realm: row.Realm, Action: "recover", Label: row.Label, Name: row.Name,
			ActorClient: "communities-recovery"}
		s.audit(ctx, ev, "success", fmt.Sprintf("undid %s operation: deleted %v", row.State, rep.Deleted))
	}
}

func (s *Service) event(realm, action string, a Actor, l, name string) *AuditEvent {
	return &AuditEvent{Realm: realm, Action: action, Label: l, Name: name,
		ActorSub: a.Subject, ActorClient: a.ClientID, ActorUsername: a.Username, RequestID: a.RequestID,
		Claims: Claims(a.Claims)}
}

// audit records ev; a failure to audit is logged, never hidden, but does
// not turn a completed change into an error.
func (s *Service) audit(ctx context.Context, ev *AuditEvent, outcome, detail string) {
	e := *ev
	e.Outcome, e.Detail = outcome, detail
	if err := s.store.Audit(context.WithoutCancel(ctx), &e); err != nil {
		s.log.ErrorContext(ctx, "audit write failed", "action", e.Action, "label", e.Label, "outcome", outcome, "error", err)
	}
}

// Members lists part of a community's members by role (owner, author,
// consumer), as p asks: one Keycloak call for each role asked, however
// many members it has. Service desk and the community's owners may see
// them.
func (s *Service) Members(ctx context.Context, realm string, a Actor, l string, p MemberPage) (map[string][]Member, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	row, err := s.Get(ctx, realm, l)
	if err != nil {
		return nil, err
	}
	out, err := s.members(ctx, a, row, p)
	if row, err = s.recordAnewIfStale(ctx, row, a, err); row != nil {
		out, err = s.members(ctx, a, row, p)
	}
	return out, err
}

func (s *Service) members(ctx context.Context, a Actor, row *Community, p MemberPage) (map[string][]Member, error) {
	if _, err := s.mayManage(ctx, a, row); err != nil {
		return nil, err
	}
	out := map[string][]Member{}
	for role, gid := range memberGroups(row) {
		if p.Role != "" && role != p.Role {
			continue
		}
		ms, err := s.kc.MembersPage(ctx, row.Realm, gid, p.First, p.Max)
		if errors.Is(err, fault.NotFound) {
			return nil, missingGroup(row, role, nil, err)
		}
		if err != nil {
			return nil, fault.Upstream("Keycloak could not list the members", err)
		}
		if ms == nil {
			ms = []Member{}
		}
		out[role] = ms
	}
	return out, nil
}

// MembersOfMany lists the members of rows' communities by label and role,
// reading Keycloak in bulk: a few calls for thousands of communities,
// where Members takes three each (plan and export). Service desk only.
// A member group that is gone has no entry for its role.
func (s *Service) MembersOfMany(ctx context.Context, realm string, a Actor, rows []Community) (map[string]map[string][]Member, error) {
	held, err := s.opts.Roles.Confirm(ctx, s.kc, realm, a)
	if err != nil {
		return nil, err
	}
	if !held.ServiceDesk {
		return nil, fmt.Errorf("%w: only service desk may list the members of many communities at once", ErrForbidden)
	}
	var ids []string
	for i := range rows {
		for _, gid := range memberGroups(&rows[i]) {
			if gid != "" { // a group never recorded is a missing one
				ids = append(ids, gid)
			}
		}
	}
	byGroup, err := s.kc.MembersOf(ctx, realm, ids)
	if err != nil {
		return nil, fault.Upstream("Keycloak could not list the members", err)
	}
	out := make(map[string]map[string][]Member, len(rows))
	for i := range rows {
		roles := map[string][]Member{}
		for role, gid := range memberGroups(&rows[i]) {
			if ms, ok := byGroup[gid]; ok { // never asked, "" is never there
				if ms == nil {
					ms = []Member{}
				}
				roles[role] = ms
			}
		}
		out[rows[i].Label] = roles
	}
	return out, nil
}

// ChangeMember adds (add) or removes a user, named by id or username, to or
// from the community's group for role. Service desk and the community's
// owners may; the last owner can be removed only by service desk, so a
// community never loses its owners by accident. Both are idempotent.
func (s *Service) ChangeMember(ctx context.Context, realm string, a Actor, l, role, userRef string, add bool) error {
	action := "remove-member"
	if add {
		action = "add-member"
	}
	row, err := s.Get(ctx, realm, l)
	if err != nil {
		return err
	}
	if _, ok := memberGroups(row)[role]; !ok {
		return noRole(ErrNotFound, role)
	}
	if err := ValidateUserRef(userRef); err != nil {
		return err
	}
	ev := s.event(realm, action, a, row.Label, row.Name)
	err = s.changeMember(ctx, a, row, action, role, userRef, add)
	if isNoGroupByID(err) {
		var fresh *Community
		if fresh, err = s.recordAnewIfStale(ctx, row, a, err); fresh != nil {
			err = s.changeMember(ctx, a, fresh, action, role, userRef, add)
		} else if err != nil && !isNoGroupByID(err) {
			// The look at the stale record refused the caller or failed.
			s.audit(ctx, ev, refusal(err), err.Error())
			return err
		}
	}
	var gone *noGroupByID
	if !errors.As(err, &gone) {
		return err // audited by changeMember
	}
	if gone.removal {
		// The group is missing indeed (not a stale record of its id), or
		// the user was deleted meanwhile: no membership is left.
		s.audit(ctx, ev, "success", role+" "+gone.userID+": the group or the user is missing in Keycloak, so no membership is left")
		return nil
	}
	s.audit(ctx, ev, "failed", err.Error())
	return err
}

// changeMember is one try of ChangeMember with row's recorded group ids.
// It audits its outcome, except a group missing by its recorded id, which
// ChangeMember looks into first.
func (s *Service) changeMember(ctx context.Context, a Actor, row *Community, action, role, userRef string, add bool) error {
	realm := row.Realm
	ev := s.event(realm, action, a, row.Label, row.Name)
	gid := memberGroups(row)[role]
	var err error
	if a, err = s.mayManage(ctx, a, row); err != nil {
		if !isNoGroupByID(err) {
			s.audit(ctx, ev, refusal(err), err.Error())
		}
		return err
	}
	u, err := s.kc.ResolveUser(ctx, realm, userRef)
	if errors.Is(err, fault.NotFound) {
		return fmt.Errorf("%w: no user %q in realm %s", ErrNotFound, userRef, realm)
	}
	if err != nil {
		return fault.Upstream("Keycloak could not look up the user; nothing was changed", err)
	}
	// Taking one out stays possible: it may have been put in by hand, or
	// before the service refused it.
	if add && u.ServiceAccountOf != "" {
		err := systemAccount(userRef, u.ServiceAccountOf)
		s.audit(ctx, ev, "denied", role+" "+u.ID+": "+err.Error())
		return err
	}
	userID := u.ID
	detail := role + " " + userID
	switch {
	case add:
		err = s.kc.AddMember(ctx, realm, gid, userID)
	case role == RoleOwner && !a.ServiceDesk:
		// Check and removal run under a lock on the community held in
		// PostgreSQL, so two owners removing each other at once, on any
		// replicas, cannot both pass the check and leave none.
		err = s.store.WithCommunityLock(ctx, row.ID, func(ctx context.Context) error {
			owners, err := s.kc.Members(ctx, realm, gid)
			if err != nil {
				return err
			}
			if isLastOwner(owners, userID) {
				return errLastOwner
			}
			return s.kc.RemoveMember(ctx, realm, gid, userID)
		})
		if errors.Is(err, errLastOwner) {
			s.audit(ctx, ev, "denied", "last owner")
			return fmt.Errorf("%w: %s is the last owner of %s; only service desk may remove the last owner", ErrLastOwner, userRef, row.Label)
		}
	default:
		err = s.kc.RemoveMember(ctx, realm, gid, userID)
	}
	if errors.Is(err, fault.NotFound) {
		// The user was found a moment ago: the group is what is gone by
		// its recorded id (or the user was deleted just now).
		return missingGroup(row, role, &noGroupByID{removal: !add, userID: userID}, err)
	}
	if err != nil {
		s.audit(ctx, ev, "failed", detail+": "+err.Error())
		return fault.Upstream("the membership could not be changed", err)
	}
	s.audit(ctx, ev, "success", detail)
	return nil
}

var errLastOwner = errors.New("last owner")

// isLastOwner reports whether removing user userID from owners leaves no
// enabled owner while it is one: a disabled owner cannot manage the
// community, so it does not count as another.
func isLastOwner(owners []Member, userID string) bool {
	for _, o := range owners {
		if o.Enabled && o.ID != userID {
			return false
		}
	}
	return slices.ContainsFunc(owners, func(o Member) bool { return o.ID == userID && o.Enabled })
}

// refusal is the audit trail's word for err, which stopped an operation
// before it changed anything: "denied" when the caller may not, "failed"
// when Keycloak could not say whether they may.
func refusal(err error) string {
	if errors.Is(err, fault.Forbidden) {
		return "denied"
	}
	return "failed"
}

// usernamePattern is what Keycloak's default user profile allows in a
// username (letters, digits and . _ - @ +); user ids are UUIDs. A reference
// is checked before it reaches Keycloak, and only a UUID is ever put into
// an admin URL path (the identity provider's ResolveUser), so a reference such as
// "..%2F..%2Fterminology" can never steer the service's own credentials to
// another admin path.
var usernamePattern = regexp.MustCompile(`^[\p{L}\p{N}._@+-]{1,255}$`)

// MaxOwners is how many owners a create may name.
const MaxOwners = 50

// ValidateUserRef reports whether ref may name a user: a user id or a
// username Keycloak could hold.
func ValidateUserRef(ref string) error {
	if !usernamePattern.MatchString(ref) || strings.Trim(ref, ".") == "" {
		return fmt.Errorf("%w user: give a user id or a username (letters, digits and . _ - @ +)", ErrInvalid)
	}
	return nil
}

// mayManage: service desk now, or a current member of the owner group. It
// returns a with its service desk role confirmed.
func (s *Service) mayManage(ctx context.Context, a Actor, row *Community) (Actor, error) {
	held := a
	if a.ServiceDesk {
		var err error
		if held, err = s.opts.Roles.Confirm(ctx, s.kc, row.Realm, a); err != nil {
			return a, err
		}
		if held.ServiceDesk {
			return held, nil
		}
	}
	owner, err := s.isOwner(ctx, held, row)
	if err != nil {
		return held, err
	}
	if !owner {
		why := "only service desk or an owner of " + row.Label + " may manage its members"
		if lost := takenAway(a, held); lost != "" {
			why = lost + "; " + why
		}
		return held, fmt.Errorf("%w: %s", ErrForbidden, why)
	}
	return held, nil
}

// isOwner asks Keycloak, not the token, whether a is in row's owner group
// now. An owner group that is gone is drift, not an outage: trying again
// cannot help until a repair, so it is a conflict that says so.
func (s *Service) isOwner(ctx context.Context, a Actor, row *Community) (bool, error) {
	owner, err := s.kc.IsMember(ctx, row.Realm, row.Artifacts.OwnerGroupID, a.Subject)
	switch {
	case errors.Is(err, fault.NotFound):
		return false, missingGroup(row, RoleOwner, nil, err)
	case err != nil:
		return false, fault.Upstream("Keycloak could not confirm who owns "+row.Label, err)
	}
	return owner, nil
}

// missingGroup is the answer when Keycloak has no group by the id the
// registry records for row's member group of role: drift, which a repair
// restores, not an outage that retrying could help. recordAnewIfStale
// first tells it from a stale record. why says what looked the group up
// (nil: a check or a listing).
func missingGroup(row *Community, role string, why *noGroupByID, cause error) error {
	if why == nil {
		why = &noGroupByID{}
	}
	return fault.New(fault.Conflict, "community "+row.Label+"'s "+role+" group is missing in Keycloak; "+
		"service desk can restore it with 'communities reconcile --repair'", fmt.Errorf("%w: %w", why, cause))
}

// noGroupByID marks missingGroup's errors; removal says a removal of
// userID met it, which is done when the group is missing indeed.
type noGroupByID struct {
	removal bool
	userID  string
}

func (*noGroupByID) Error() string { return "no group by its recorded id" }

func isNoGroupByID(err error) bool {
	var n *noGroupByID
	return errors.As(err, &n)
}

// recordAnewIfStale handles err, a member call's failure, when it is
// missingGroup's: the group may be whole at its path with the registry's
// record of its id stale (a repair whose record failed, a group made again
// by hand), which the survey of a drift check, reading by path, never
// sees. Under the community's lock it checks the community as a repair
// does, without making anything; whole, and a may manage it, it records
// the ids anew (audited as a repair by a) and returns the row to try
// again with, once. Else err stands, or what the check met instead. Any
// other err is returned as it is, with no row.
func (s *Service) recordAnewIfStale(ctx context.Context, row *Community, a Actor, err error) (*Community, error) {
	if !isNoGroupByID(err) {
		return nil, err
	}
	var fresh *Community
	lockErr := s.store.WithCommunityLock(ctx, row.ID, func(ctx context.Context) error {
		switch active, aerr := s.stillActive(ctx, row); {
		case aerr != nil:
			return aerr
		case !active:
			return fmt.Errorf("%w: %s", ErrNotFound, row.Label)
		}
		drift, art, cerr := s.kc.Ensure(ctx, s.spec(row), false)
		if cerr != nil {
			return fault.Upstream("Keycloak could not check community "+row.Label, cerr)
		}
		if len(drift) > 0 || art == row.Artifacts {
			return err // missing indeed: a repair's work
		}
		c := *row
		c.Artifacts = art
		// Only who may manage the community has its record changed: the
		// owner check could not be made on the stale id.
		if _, merr := s.mayManage(ctx, a, &c); merr != nil {
			return merr
		}
		if serr := s.store.SetArtifacts(ctx, row.ID, art); serr != nil {
			return serr
		}
		s.audit(ctx, s.event(row.Realm, "repair", a, row.Label, row.Name), "success", "recorded the ids of its groups and roles anew")
		fresh = &c
		return nil
	})
	return fresh, lockErr
}

func memberGroups(row *Community) map[string]string {
	return map[string]string{
		RoleOwner:    row.Artifacts.OwnerGroupID,
		RoleAuthor:   row.Artifacts.AuthorGroupID,
		RoleConsumer: row.Artifacts.ConsumerGroupID,
	}
}
