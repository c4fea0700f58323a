// Package memstore keeps the registry and audit trail in memory: the
// community.Store that the domain's unit tests run against in
// milliseconds. storetest holds it to the same contract as the PostgreSQL
// store (internal/registry), so what passes here is what production does.
//
// It mirrors the database where callers could tell the difference: labels
// and names are unique per realm by key whatever the other row's state, ids
// are UUIDs, states are the four the schema allows, times keep microseconds
// (as timestamptz does), and a call on a finished context fails and changes
// nothing. Values are copied in and out, so no caller holds its state.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
)

// Store is an in-memory community.Store, safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	rows    map[string]*community.Community // by id; never handed out
	undone  map[string]undone               // undone creates, by id
	retired map[string]bool                 // realm + "\x00" + label key of deleted communities
	events  []community.AuditEvent
	locks   map[string]*communityLock // by community id, while wanted
	leaders map[string]bool           // realms whose leader lock is held
	clock   func() time.Time          // leases are compared by it
}

// undone is an undone create: its realm, label key and when.
type undone struct {
	realm, labelKey string
	at              time.Time
}

// communityLock is one community's mutex; refs counts holders and waiters
// so the entry goes once nobody wants it.
type communityLock struct {
	held chan struct{} // a token in the channel is the lock being held
	refs int
}

// SetClock makes now the store's clock (time.Now by default), which its
// leases are compared by: a test of replicas whose clocks disagree with
// the registry's.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
}

// Now is the time by the store's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("read the clock: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return micro(s.clock()), nil
}

// New returns an empty store.
func New() *Store {
	return &Store{
		clock:   time.Now,
		rows:    map[string]*community.Community{},
		undone:  map[string]undone{},
		retired: map[string]bool{},
		locks:   map[string]*communityLock{},
		leaders: map[string]bool{},
	}
}

var _ community.Store = (*Store)(nil)

// Reserve inserts a copy of c. A clash on the label is reported before one
// on the name, as the database checks its unique indexes in that order,
// and both before a retired label, as the database inserts first.
func (s *Store) Reserve(ctx context.Context, c *community.Community, reuseRetired bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reserve community %s: %w", c.Label, err)
	}
	id, err := canonicalID(c.ID)
	if err != nil {
		return fmt.Errorf("reserve community %s: %w", c.Label, err)
	}
	if err := validState(c.State); err != nil {
		return fmt.Errorf("reserve community %s: %w", c.Label, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rows[id]; ok {
		return fmt.Errorf("reserve community %s: id %s is already used", c.Label, id)
	}
	for _, r := range s.rows {
		if r.Realm == c.Realm && r.LabelKey == c.LabelKey {
			return community.ErrLabelTaken
		}
	}
	for _, r := range s.rows {
		if r.Realm == c.Realm && r.NameKey == c.NameKey {
			return community.ErrNameTaken
		}
	}
	if !reuseRetired && s.retired[c.Realm+"\x00"+c.LabelKey] {
		return community.ErrLabelRetired
	}
	row := clone(c)
	row.ID = id
	now := micro(time.Now())
	if row.CreatedAt.IsZero() {
		row.CreatedAt = now
	}
	if row.UpdatedAt.IsZero() {
		row.UpdatedAt = now
	}
	s.rows[row.ID] = row
	return nil
}

// Get finds a community of realm by label key, in any state.
func (s *Store) Get(ctx context.Context, realm, labelKey string) (*community.Community, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read community %s: %w", labelKey, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rows {
		if r.Realm == realm && r.LabelKey == labelKey {
			return clone(r), nil
		}
	}
	return nil, community.ErrNoRecord
}

// List returns the active communities of realm ordered by label key,
// skipping first; max <= 0 means no limit.
func (s *Store) List(ctx context.Context, realm string, first, max int) ([]community.Community, error) {
	return s.list(ctx, realm, func(*community.Community) bool { return true }, first, max)
}

// Search is List of the communities whose label key or name key contains
// key.
func (s *Store) Search(ctx context.Context, realm, key string, first, max int) ([]community.Community, error) {
	return s.list(ctx, realm, func(c *community.Community) bool {
		return strings.Contains(c.LabelKey, key) || strings.Contains(c.NameKey, key)
	}, first, max)
}

func (s *Store) list(ctx context.Context, realm string, keep func(*community.Community) bool, first, max int) ([]community.Community, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list communities of %s: %w", realm, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.active(realm, keep)
	if first > 0 {
		out = out[min(first, len(out)):]
	}
	if max > 0 && max < len(out) {
		out = out[:max]
	}
	return out, nil
}

// ByLabels returns the active communities of realm among labelKeys.
func (s *Store) ByLabels(ctx context.Context, realm string, labelKeys []string) ([]community.Community, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read communities of %s: %w", realm, err)
	}
	if len(labelKeys) == 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active(realm, func(r *community.Community) bool { return slices.Contains(labelKeys, r.LabelKey) }), nil
}

// active returns copies of realm's active rows that keep, in the
// database's order (label key, then label). Call with s.mu held.
func (s *Store) active(realm string, keep func(*community.Community) bool) []community.Community {
	var out []community.Community
	for _, r := range s.rows {
		if r.Realm == realm && r.State == community.StateActive && keep(r) {
			out = append(out, *clone(r))
		}
	}
	slices.SortFunc(out, func(a, b community.Community) int {
		return cmp.Or(cmp.Compare(a.LabelKey, b.LabelKey), cmp.Compare(a.Label, b.Label))
	})
	return out
}

// Transition moves row id from state from to to if it is there (and, with
// expect, still holds exactly that lease).
func (s *Store) Transition(ctx context.Context, id, from, to string, expect, lease *time.Time, a *community.Artifacts, lastErr string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("move community %s from %s to %s: %w", id, from, to, err)
	}
	id, err := canonicalID(id)
	if err != nil {
		return fmt.Errorf("move community %s from %s to %s: %w", id, from, to, err)
	}
	if err := validState(to); err != nil {
		return fmt.Errorf("move community %s from %s to %s: %w", id, from, to, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	if !ok || r.State != from {
		return community.ErrStateChanged
	}
	if expect != nil && (r.LeaseUntil == nil || !r.LeaseUntil.Equal(micro(*expect))) {
		return community.ErrStateChanged
	}
	r.State, r.LeaseUntil, r.LastError, r.UpdatedAt = to, microPtr(lease), lastErr, micro(time.Now())
	if a != nil {
		r.Artifacts = *a
	}
	return nil
}

// Remove deletes row id if it is still in state, keeping the id of a
// create (creating or failed) for UndoneKept.
func (s *Store) Remove(ctx context.Context, id, state string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove community %s: %w", id, err)
	}
	id, err := canonicalID(id)
	if err != nil {
		return fmt.Errorf("remove community %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	if !ok || r.State != state {
		return community.ErrStateChanged
	}
	delete(s.rows, id)
	now := time.Now()
	switch state {
	case community.StateCreating, community.StateFailed:
		s.undone[id] = undone{realm: r.Realm, labelKey: r.LabelKey, at: now}
	case community.StateDeleting:
		s.retired[r.Realm+"\x00"+r.LabelKey] = true
	}
	for u, c := range s.undone {
		if now.Sub(c.at) > community.UndoneKept {
			delete(s.undone, u)
		}
	}
	return nil
}

// ClaimAbandoned takes the row of realms, not active, whose lease is
// missing or ran out longest ago, and extends its lease to now+lease.
func (s *Store) ClaimAbandoned(ctx context.Context, realms []string, lease time.Duration) (*community.Community, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim abandoned community: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	var best *community.Community
	for _, r := range s.rows {
		if r.State == community.StateActive || !slices.Contains(realms, r.Realm) ||
			r.LeaseUntil != nil && !r.LeaseUntil.Before(now) {
			continue
		}
		if best == nil || claimsBefore(r, best) {
			best = r
		}
	}
	if best == nil {
		return nil, nil
	}
	until := micro(now.Add(lease))
	best.LeaseUntil, best.UpdatedAt = &until, micro(now)
	return clone(best), nil
}

// claimsBefore orders abandoned rows as the database does, missing leases
// first, then oldest lease; ids break ties so the order is stable.
func claimsBefore(a, b *community.Community) bool {
	switch {
	case a.LeaseUntil == nil && b.LeaseUntil == nil:
		return a.ID < b.ID
	case a.LeaseUntil == nil || b.LeaseUntil == nil:
		return a.LeaseUntil == nil
	case !a.LeaseUntil.Equal(*b.LeaseUntil):
		return a.LeaseUntil.Before(*b.LeaseUntil)
	}
	return a.ID < b.ID
}

// SetArtifacts records the artefacts of row id if it is active; a row in
// any other state, or none, is left as it is without error, as the
// database's conditional update does.
func (s *Store) SetArtifacts(ctx context.Context, id string, a community.Artifacts) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("record artefacts of %s: %w", id, err)
	}
	id, err := canonicalID(id)
	if err != nil {
		return fmt.Errorf("record artefacts of %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rows[id]; ok && r.State == community.StateActive {
		r.Artifacts, r.UpdatedAt = a, micro(time.Now())
	}
	return nil
}

// Undone returns the ids of realm's creates of labelKey undone within
// UndoneKept, newest first, at most community.MaxUndoneAsked.
func (s *Store) Undone(ctx context.Context, realm, labelKey string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("look up undone creates of %s: %w", labelKey, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type at struct {
		id string
		at time.Time
	}
	var found []at
	for id, c := range s.undone {
		if c.realm == realm && c.labelKey == labelKey && time.Since(c.at) <= community.UndoneKept {
			found = append(found, at{id, c.at})
		}
	}
	slices.SortFunc(found, func(a, b at) int { return b.at.Compare(a.at) })
	ids := []string{}
	for _, f := range found[:min(len(found), community.MaxUndoneAsked)] {
		ids = append(ids, f.id)
	}
	return ids, nil
}

// AgeUndone makes the undone create id older by d, as if it had been
// undone d earlier (storetest's check of UndoneKept).
func (s *Store) AgeUndone(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.undone[id]; ok {
		c.at = c.at.Add(-d)
		s.undone[id] = c
	}
}

// HoldsUndone reports whether the store still keeps the undone create id
// at all, expired or not (storetest's check that old ones are dropped).
func (s *Store) HoldsUndone(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.undone[id]
	return ok
}

// Trace says what the store holds of community id: a row, or the undone
// create of that id in realm with labelKey.
func (s *Store) Trace(ctx context.Context, realm, labelKey, id string) (community.Trace, error) {
	if err := ctx.Err(); err != nil {
		return community.TraceNone, fmt.Errorf("look up community %s: %w", id, err)
	}
	id, err := canonicalID(id)
	if err != nil {
		return community.TraceNone, fmt.Errorf("look up community %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rows[id]; ok {
		return community.TraceRow, nil
	}
	if c, ok := s.undone[id]; ok && c.realm == realm && c.labelKey == labelKey && time.Since(c.at) <= community.UndoneKept {
		return community.TraceUndone, nil
	}
	return community.TraceNone, nil
}

// Audit appends a copy of ev to the trail; like the PostgreSQL store it
// stamps ev.At with the time when the caller left it zero.
func (s *Store) Audit(ctx context.Context, ev *community.AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write audit event %s %s: %w", ev.Action, ev.Label, err)
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	e := *ev
	e.At = micro(e.At)
	e.Claims = maps.Clone(e.Claims)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	return nil
}

// Events returns a copy of the audit trail, oldest first.
func (s *Store) Events() []community.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]community.AuditEvent, len(s.events))
	for i, e := range s.events {
		e.Claims = maps.Clone(e.Claims)
		out[i] = e
	}
	return out
}

// WithCommunityLock runs fn holding community id's lock, waiting for any
// other holder until ctx ends.
func (s *Store) WithCommunityLock(ctx context.Context, id string, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lock community %s: %w", id, err)
	}
	s.mu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &communityLock{held: make(chan struct{}, 1)}
		s.locks[id] = l
	}
	l.refs++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, id)
		}
		s.mu.Unlock()
	}()
	select {
	case l.held <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("lock community %s: %w", id, ctx.Err())
	}
	defer func() { <-l.held }()
	return fn(ctx)
}

// AsLeader runs fn unless another caller is running it for realm; it does
// not wait.
func (s *Store) AsLeader(ctx context.Context, realm string, fn func(context.Context) error) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("take reconciler lock of %s: %w", realm, err)
	}
	s.mu.Lock()
	if s.leaders[realm] {
		s.mu.Unlock()
		return false, nil
	}
	s.leaders[realm] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.leaders, realm)
		s.mu.Unlock()
	}()
	return true, fn(ctx)
}

// clone copies c so that neither side shares its lease with the other, with
// times cut to the microseconds the database keeps.
func clone(c *community.Community) *community.Community {
	out := *c
	out.LeaseUntil = microPtr(c.LeaseUntil)
	out.CreatedAt, out.UpdatedAt = micro(c.CreatedAt), micro(c.UpdatedAt)
	return &out
}

func micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

func microPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	m := micro(*t)
	return &m
}

// canonicalID refuses what the database's uuid column refuses, and spells
// the rest as it does (lower case, with hyphens).
func canonicalID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		// The id comes back as given, so callers' messages still name it.
		return id, fmt.Errorf("id %q is not a UUID: %w", id, err)
	}
	return u.String(), nil
}

// validState refuses what the database's check constraint refuses.
func validState(state string) error {
	switch state {
	case community.StateCreating, community.StateActive, community.StateDeleting, community.StateFailed:
		return nil
	}
	return fmt.Errorf("state %q is not one of creating, active, deleting, failed", state)
}
