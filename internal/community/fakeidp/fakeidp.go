// Package fakeidp is an in-memory community.IdentityProvider for the
// domain's unit tests: realms with users and their realm roles, groups
// with members, and each community's artefacts as named entries that carry
// the community's marker.
//
// It keeps to what internal/keycloak promises the domain: Provision makes a
// community's artefacts in a sequence of mutating calls and leaves what it
// made when one fails; Cleanup removes only what carries the community's
// marker, skips what is missing, and takes a foreign client scope of the
// community's name off the FHIR clients; Ensure reports what is missing or
// not the community's and with repair makes what is missing; an artefact of
// a needed name that is not the community's makes Provision fail with a
// conflict. Like test/harness's FaultTransport it can fail chosen mutating
// calls. What Keycloak itself does is proved against Keycloak by the
// integration suite; this fake stands in for it only where the domain's
// own logic is under test.
package fakeidp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// Kinds of artefact, the first words of an artefact's description (as in
// community.Drift.What: "realm role PERM_NDD_READ").
const (
	Role         = "realm role"
	Group        = "group"
	Scope        = "client scope"
	RoleMapping  = "role mapping"         // name: "<group path> → <role>"
	ScopeMapping = "scope mapping"        // name: "<scope> → <role>"
	DefaultScope = "default client scope" // name: "<scope> of client <clientId>"
	Permission   = "admin permission"
)

// Errors the fake answers with, of the kinds internal/keycloak's are.
var (
	ErrInjected = fault.Sentinel(fault.Unavailable, "injected fault: connection refused")
	ErrRefused  = fault.Sentinel(fault.Refused, "injected refusal: HTTP 400")
	ErrNotFound = fault.Sentinel(fault.NotFound, "not found in fake keycloak")
	ErrConflict = fault.Sentinel(fault.Conflict, "already exists in fake keycloak")
	ErrGone     = fault.Sentinel(fault.Unavailable, "fake keycloak: request abandoned")
)

// IDP is the fake. Its zero value is not usable; call New.
type IDP struct {
	mu     sync.Mutex
	realms map[string]*realm
	failAt int
	sticky bool
	refuse bool
	steps  int
}

type realm struct {
	users    map[string]*user     // by id
	things   map[string]*artefact // by key: kind + " " + name
	defaults map[string]bool      // default group ids
	// permissionsOff: the realm's admin permissions are switched off.
	permissionsOff bool
}

type user struct {
	username         string
	roles            map[string]bool
	disabled         bool
	serviceAccountOf string // the client whose service account it is
}

type artefact struct {
	id      string
	marker  string
	deps    []string        // keys of what it hangs on; it goes with them
	members map[string]bool // groups: user ids
	// unlinked: a community's membership-admins aggregate that Keycloak
	// took a deleted role:service-desk out of.
	unlinked bool
}

// New returns an empty fake.
func New() *IDP { return &IDP{realms: map[string]*realm{}} }

func (f *IDP) realm(name string) *realm {
	r, ok := f.realms[name]
	if !ok {
		r = &realm{users: map[string]*user{}, things: map[string]*artefact{}, defaults: map[string]bool{}}
		f.realms[name] = r
	}
	return r
}

// AddUser makes a user of realm and returns its id.
func (f *IDP) AddUser(realm, username string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := uuid.NewString()
	f.realm(realm).users[id] = &user{username: username, roles: map[string]bool{}}
	return id
}

// AddServiceAccount makes the service account user of client in realm,
// as Keycloak does for a client with service accounts enabled, and
// returns its id.
func (f *IDP) AddServiceAccount(realm, client string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := uuid.NewString()
	f.realm(realm).users[id] = &user{username: "service-account-" + client, roles: map[string]bool{}, serviceAccountOf: client}
	return id
}

// DisableUser disables user userID of realm: it stays in its groups.
func (f *IDP) DisableUser(realm, userID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.realm(realm).users[userID]; ok {
		u.disabled = true
	}
}

// GrantRole grants user userID of realm the realm role role directly (the
// fake knows no composite roles, and roles through groups do not count).
func (f *IDP) GrantRole(realm, userID, role string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.realm(realm).users[userID]; ok {
		u.roles[role] = true
	}
}

// FailAt resets the count of mutating calls and makes the nth from now
// fail (0: none); with sticky, that call and every later one fail.
func (f *IDP) FailAt(n int, sticky bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt, f.sticky, f.steps = n, sticky, 0
}

// Refuse makes injected failures refusals (kind fault.Refused, as a 4xx
// from Keycloak) instead of failures to reach it (fault.Unavailable).
func (f *IDP) Refuse(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = on
}

// Steps is the number of mutating calls since the last FailAt.
func (f *IDP) Steps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// Add makes an artefact by hand, as an administrator might in the console,
// with marker (empty: none), and returns its id. It is not a step.
func (f *IDP) Add(realm, kind, name, marker string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.realm(realm).put(kind+" "+name, marker, nil)
}

// Delete removes an artefact by hand, with everything that hangs on it (a
// group's children and role mappings, a scope's mappings and places among
// default scopes), reporting whether it existed. It is not a step.
func (f *IDP) Delete(realm, kind, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.realm(realm)
	if _, ok := r.things[kind+" "+name]; !ok {
		return false
	}
	r.remove(kind + " " + name)
	return true
}

// Artefacts describes everything realm holds, sorted: one "kind name" per
// artefact, with " #marker" when it carries one and " members=[ids]" for
// groups with members.
func (f *IDP) Artefacts(realm string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for key, a := range f.realm(realm).things {
		s := key
		if a.marker != "" {
			s += " #" + a.marker
		}
		if len(a.members) > 0 {
			ids := make([]string, 0, len(a.members))
			for id := range a.members {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			s += " members=" + fmt.Sprint(ids)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// ID is the id of an artefact, "" if realm has none of that name.
func (f *IDP) ID(realm, kind, name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.realm(realm).things[kind+" "+name]; ok {
		return a.id
	}
	return ""
}

// step counts a mutating call and fails it if it is the one chosen.
func (f *IDP) step(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrGone, err)
	}
	f.steps++
	if f.failAt > 0 && (f.steps == f.failAt || f.sticky && f.steps > f.failAt) {
		if f.refuse {
			return fmt.Errorf("%s: %w", op, ErrRefused)
		}
		return fmt.Errorf("%s: %w", op, ErrInjected)
	}
	return nil
}

// read checks a read-only call may run.
func read(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, ErrGone, err)
	}
	return nil
}

func (r *realm) put(key, marker string, deps []string) string {
	a := &artefact{id: uuid.NewString(), marker: marker, deps: deps}
	if strings.HasPrefix(key, Group+" ") {
		a.members = map[string]bool{}
	}
	r.things[key] = a
	return a.id
}

// remove deletes key and, until none is left, whatever hangs on something
// no longer there.
func (r *realm) remove(key string) {
	delete(r.things, key)
	for gone := true; gone; {
		gone = false
		for k, a := range r.things {
			if slices.ContainsFunc(a.deps, func(d string) bool { return r.things[d] == nil }) {
				delete(r.things, k)
				gone = true
			}
		}
	}
	for id := range r.defaults {
		if r.group(id) == nil {
			delete(r.defaults, id)
		}
	}
}

// detach takes client scope name off the default scopes of clients, one
// mutating call each, and returns what it took off.
func (f *IDP) detach(ctx context.Context, r *realm, name string, clients []string) ([]string, error) {
	var done []string
	for _, client := range clients {
		attached := DefaultScope + " " + name + " of client " + client
		if _, ok := r.things[attached]; !ok {
			continue
		}
		if err := f.step(ctx, "detach "+attached); err != nil {
			return done, err
		}
		r.remove(attached)
		done = append(done, attached)
	}
	return done, nil
}

// dropScope deletes client scope name and, as Keycloak does, its role
// mapping and its place among clients' default scopes.
func (r *realm) dropScope(name string) {
	for k := range r.things {
		if k == Scope+" "+name || strings.HasPrefix(k, ScopeMapping+" "+name+" → ") || strings.HasPrefix(k, DefaultScope+" "+name+" of client ") {
			delete(r.things, k)
		}
	}
}

// group finds a group by id.
func (r *realm) group(id string) *artefact {
	for k, a := range r.things {
		if a.id == id && strings.HasPrefix(k, Group+" ") {
			return a
		}
	}
	return nil
}

// want is one artefact of a community: marked ones carry its marker, the
// others (mappings, default scopes) hang on deps. set records its id.
type want struct {
	key    string
	marked bool
	deps   []string
	set    func(*community.Artifacts) *string
}

// describe lists community s's artefacts in batches, each made by one
// mutating call of Provision, in internal/keycloak's order: each role,
// label group, each member group and its role mappings, the admin
// permissions.
func describe(s community.Spec) [][]want {
	read, write := "PERM_"+s.Label+"_READ", "PERM_"+s.Label+"_WRITE"
	path := "/" + s.Root + "/" + s.Label
	out := [][]want{{
		{key: Role + " " + read, marked: true, set: func(a *community.Artifacts) *string { return &a.ReadRoleID }},
	}, {
		{key: Role + " " + write, marked: true, set: func(a *community.Artifacts) *string { return &a.WriteRoleID }},
	}, {
		{key: Group + " " + path, marked: true, set: func(a *community.Artifacts) *string { return &a.GroupID }},
	}}
	children := []struct {
		member string
		grants []string
		set    func(*community.Artifacts) *string
	}{
		{community.RoleOwner, []string{OwnerRole}, func(a *community.Artifacts) *string { return &a.OwnerGroupID }},
		{community.RoleAuthor, []string{read, write}, func(a *community.Artifacts) *string { return &a.AuthorGroupID }},
		{community.RoleConsumer, []string{read}, func(a *community.Artifacts) *string { return &a.ConsumerGroupID }},
	}
	for _, c := range children {
		g := Group + " " + path + "/" + c.member
		out = append(out, []want{{key: g, marked: true, deps: []string{Group + " " + path}, set: c.set}})
		var maps []want
		for _, role := range c.grants {
			var deps []string
			if role != OwnerRole { // the realm's role, always there
				deps = []string{Role + " " + role}
			}
			maps = append(maps, want{key: RoleMapping + " " + path + "/" + c.member + " → " + role, deps: append([]string{g}, deps...)})
		}
		out = append(out, maps)
	}
	p := "community:" + s.Label + ":"
	for _, name := range []string{p + "owners", p + "membership-admins", p + "view", p + "membership"} {
		out = append(out, []want{{key: Permission + " " + name, marked: true}})
	}
	return out
}

// Earlier is the drift problem of what an earlier version made.
const Earlier = "made by an earlier version; the realm's community-privileges token mapper replaces it"

// OwnerRole is the realm's role every owner group maps.
const OwnerRole = "community-owner"

// legacy is what earlier versions made for community s and internal/keycloak
// now removes: the owner role, and the two client scopes with the roles
// they were mapped to.
func legacy(s community.Spec) (roles []string, scopes map[string]string) {
	return []string{Role + " PERM_" + s.Label + "_OWNER"}, map[string]string{
		"grouping/" + s.Label + ".read":  "PERM_" + s.Label + "_READ",
		"grouping/" + s.Label + ".write": "PERM_" + s.Label + "_WRITE",
	}
}

// Provision makes community s's artefacts, batch by batch, then makes each
// owner a member of the owner group. On error what was made stays.
func (f *IDP) Provision(ctx context.Context, s community.Spec) (community.Artifacts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var a community.Artifacts
	r := f.realm(s.Realm)
	if _, ok := r.things[Group+" /"+s.Root]; !ok {
		if err := f.step(ctx, "create root group /"+s.Root); err != nil {
			return a, err
		}
		r.put(Group+" /"+s.Root, "", nil)
	}
	for _, batch := range describe(s) {
		if err := f.step(ctx, "create "+batch[0].key); err != nil {
			return a, err
		}
		for _, w := range batch {
			if t, ok := r.things[w.key]; ok && w.marked && t.marker != s.ID {
				return a, fmt.Errorf("%s: %w", w.key, ErrConflict)
			}
		}
		for _, w := range batch {
			t := r.things[w.key]
			if t == nil {
				marker := ""
				if w.marked {
					marker = s.ID
				}
				r.put(w.key, marker, w.deps)
				t = r.things[w.key]
			}
			if w.set != nil {
				*w.set(&a) = t.id
			}
		}
	}
	for _, u := range s.Owners {
		if err := f.addMember(ctx, r, a.OwnerGroupID, u); err != nil {
			return a, err
		}
	}
	return a, nil
}

// Cleanup removes the artefacts of community id that carry its marker,
// those earlier versions made (legacy) included: legacy scopes first, the
// permissions next and the roles last, each in one mutating call (a
// group's children and the mappings go with what they hang on). What is
// missing is skipped; what is someone else's is reported and left, but a
// foreign client scope of a legacy scope's name is taken off fhirClients.
func (f *IDP) Cleanup(ctx context.Context, realm, root, label, id string, fhirClients []string) (community.CleanupReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rep community.CleanupReport
	r := f.realm(realm)
	spec := community.Spec{ID: id, Realm: realm, Root: root, Label: label}
	roles, scopes := legacy(spec)
	for _, name := range slices.Sorted(maps.Keys(scopes)) {
		key := Scope + " " + name
		t, ok := r.things[key]
		switch {
		case !ok:
		case t.marker == id:
			if err := f.step(ctx, "delete "+key); err != nil {
				return rep, err
			}
			r.dropScope(name)
			rep.Deleted = append(rep.Deleted, key)
		default:
			if _, err := f.detach(ctx, r, name, fhirClients); err != nil {
				return rep, err
			}
			rep.Foreign = append(rep.Foreign, key)
		}
	}
	batches := describe(spec)
	for i := len(batches) - 1; i >= 0; i-- {
		for _, w := range batches[i] {
			t, ok := r.things[w.key]
			if !w.marked || len(w.deps) > 0 || !ok {
				continue
			}
			if t.marker != id {
				rep.Foreign = append(rep.Foreign, w.key)
				continue
			}
			if err := f.step(ctx, "delete "+w.key); err != nil {
				return rep, err
			}
			r.remove(w.key)
			rep.Deleted = append(rep.Deleted, w.key)
		}
	}
	for _, key := range roles {
		if t, ok := r.things[key]; ok && t.marker == id {
			if err := f.step(ctx, "delete "+key); err != nil {
				return rep, err
			}
			r.remove(key)
			rep.Deleted = append(rep.Deleted, key)
		}
	}
	return rep, nil
}

// Ensure compares community s's artefacts with what Provision makes. What
// hangs on something missing or foreign is not checked (it cannot be
// there); with repair each missing artefact is made in one mutating call.
// Owners are not checked.
func (f *IDP) Ensure(ctx context.Context, s community.Spec, repair bool) ([]community.Drift, community.Artifacts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		drift []community.Drift
		a     community.Artifacts
	)
	if err := read(ctx, "ensure "+s.Label); err != nil {
		return nil, a, err
	}
	r := f.realm(s.Realm)
	unusable := map[string]bool{}
	for _, batch := range describe(s) {
		for _, w := range batch {
			if slices.ContainsFunc(w.deps, func(d string) bool { return unusable[d] }) {
				unusable[w.key] = true
				continue
			}
			t, ok := r.things[w.key]
			switch {
			case ok && w.marked && t.marker != s.ID:
				drift = append(drift, community.Drift{What: w.key, Problem: "exists but is not this community's"})
				unusable[w.key] = true
				continue
			case !ok && !repair:
				drift = append(drift, community.Drift{What: w.key, Problem: "missing"})
				unusable[w.key] = true
				continue
			case !ok:
				if err := f.step(ctx, "recreate "+w.key); err != nil {
					return drift, a, err
				}
				marker := ""
				if w.marked {
					marker = s.ID
				}
				r.put(w.key, marker, w.deps)
				t = r.things[w.key]
				drift = append(drift, community.Drift{What: w.key, Problem: "missing", Repaired: true})
			}
			if w.set != nil {
				*w.set(&a) = t.id
			}
		}
	}
	if t, ok := r.things[admins(s.Label)]; ok && t.marker == s.ID && t.unlinked {
		d := unlinkedDrift(s)
		if repair {
			if err := f.step(ctx, "mend "+admins(s.Label)); err != nil {
				return drift, a, err
			}
			t.unlinked, d.Repaired = false, true
		}
		drift = append(drift, d)
	}
	if r.permissionsOff {
		d, err := f.ensurePermissions(ctx, r, s.Realm, repair)
		drift = append(drift, d...)
		if err != nil {
			return drift, a, err
		}
	}
	roles, scopes := legacy(s)
	for _, name := range slices.Sorted(maps.Keys(scopes)) {
		key := Scope + " " + name
		t, ok := r.things[key]
		if !ok {
			continue
		}
		if _, mapped := r.things[ScopeMapping+" "+name+" → "+scopes[name]]; !mapped {
			detached, err := f.detach(ctx, r, name, s.FHIRClients)
			for _, key := range detached {
				drift = append(drift, community.Drift{What: key, Critical: true, Repaired: true,
					Problem: "attached without its role mapping, so in every user's token; detached"})
			}
			if err != nil {
				return drift, a, err
			}
		}
		if t.marker == s.ID {
			roles = append(roles, key)
		}
	}
	for _, key := range roles {
		if t, ok := r.things[key]; !ok || t.marker != s.ID {
			continue
		}
		drift = append(drift, community.Drift{What: key, Problem: Earlier, Repaired: repair})
		if repair {
			if err := f.step(ctx, "delete "+key); err != nil {
				return drift, a, err
			}
			if name, ok := strings.CutPrefix(key, Scope+" "); ok {
				r.dropScope(name)
			} else {
				r.remove(key)
			}
		}
	}
	return drift, a, nil
}

// Survey reads every community of specs at once, as internal/keycloak's
// does in bulk, and changes nothing: a community is a suspect when an
// artefact of its description is missing or not its own, or something of
// an earlier version's names is there. It also lists the groups directly
// under root, by name, with their markers.
func (f *IDP) Survey(ctx context.Context, realm, root string, specs []community.Spec) (community.Survey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out community.Survey
	if err := read(ctx, "survey "+realm); err != nil {
		return out, err
	}
	r := f.realm(realm)
	if r.permissionsOff {
		out.Realm = []community.Drift{{What: "admin permissions of realm " + realm, Problem: "not enabled"}}
	}
	for _, s := range specs {
		var drift, shared []community.Drift
		owners := r.things[ownerGroup(s)]
		for _, batch := range describe(s) {
			for _, w := range batch {
				// As internal/keycloak's: while the realm's admin
				// permissions are off, no community's are compared.
				if r.permissionsOff && strings.HasPrefix(w.key, Permission+" ") {
					continue
				}
				switch t, ok := r.things[w.key]; {
				case !ok && w.key == ownerGrant(s) && owners != nil && owners.marker == s.ID:
					shared = append(shared, community.Drift{What: w.key, Problem: "missing"})
				case !ok:
					drift = append(drift, community.Drift{What: w.key, Problem: "missing"})
				case w.marked && t.marker != s.ID:
					drift = append(drift, community.Drift{What: w.key, Problem: "exists but is not this community's"})
				}
			}
		}
		roles, scopes := legacy(s)
		for _, key := range roles {
			if t, ok := r.things[key]; ok && t.marker == s.ID {
				drift = append(drift, community.Drift{What: key, Problem: Earlier})
			}
		}
		for name := range scopes {
			if _, ok := r.things[Scope+" "+name]; ok {
				drift = append(drift, community.Drift{What: Scope + " " + name, Problem: "exists"})
			}
		}
		if t, ok := r.things[admins(s.Label)]; ok && t.marker == s.ID && t.unlinked && !r.permissionsOff {
			shared = append(shared, unlinkedDrift(s))
		}
		switch {
		case len(drift) == 0 && len(shared) > 0:
			if out.Shared == nil {
				out.Shared = map[string][]community.Drift{}
			}
			out.Shared[s.ID] = shared
		case len(drift) > 0:
			drift = append(drift, shared...)
			if out.Suspects == nil {
				out.Suspects = map[string][]community.Drift{}
			}
			out.Suspects[s.ID] = drift
		}
	}
	prefix := Group + " /" + root + "/"
	for key, a := range r.things {
		if l, ok := strings.CutPrefix(key, prefix); ok && !strings.Contains(l, "/") {
			out.Groups = append(out.Groups, community.Orphan{Label: l, ID: a.marker})
		}
	}
	slices.SortFunc(out.Groups, func(x, y community.Orphan) int { return strings.Compare(x.Label, y.Label) })
	for key, a := range r.things {
		if l, ok := labelOf(key); ok && a.marker != "" {
			out.Marked = append(out.Marked, community.Orphan{Label: l, ID: a.marker, Artefact: key})
		}
	}
	slices.SortFunc(out.Marked, func(x, y community.Orphan) int { return strings.Compare(x.Artefact, y.Artefact) })
	return out, nil
}

// admins is the key of community label's membership-admins aggregate.
func admins(label string) string {
	return Permission + " community:" + label + ":membership-admins"
}

// unlinkedDrift is community s's aggregate without role:service-desk.
func unlinkedDrift(s community.Spec) community.Drift {
	return community.Drift{What: admins(s.Label), Problem: "does not name role:service-desk"}
}

// Unlink takes role:service-desk out of community label's aggregate, as
// Keycloak does to every community's when that policy is deleted.
func (f *IDP) Unlink(realm, label string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.realm(realm).things[admins(label)].unlinked = true
}

// ownerGroup is the key of community s's owner group.
func ownerGroup(s community.Spec) string {
	return Group + " /" + s.Root + "/" + s.Label + "/" + community.RoleOwner
}

// ownerGrant is the key of community s's owner group's mapping of
// OwnerRole, which deleting that role takes off every owner group.
func ownerGrant(s community.Spec) string {
	return RoleMapping + " /" + s.Root + "/" + s.Label + "/" + community.RoleOwner + " → " + OwnerRole
}

// MendShared puts role:service-desk back into the aggregate of each of
// shared's communities still unlinked, and OwnerRole back onto each owner
// group still marked and without it, for the differences the survey found,
// in one mutating call.
func (f *IDP) MendShared(ctx context.Context, realm, _ string, shared []community.SharedDrift) (map[string][]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(ctx, "mend shared "+realm); err != nil {
		return nil, err
	}
	r := f.realm(realm)
	mended := map[string][]string{}
	for _, sd := range shared {
		s := sd.Spec
		for _, d := range sd.Drift {
			switch d.What {
			case admins(s.Label):
				if t, ok := r.things[d.What]; ok && t.marker == s.ID && t.unlinked {
					t.unlinked = false
					mended[s.ID] = append(mended[s.ID], d.What)
				}
			case ownerGrant(s):
				if g, ok := r.things[ownerGroup(s)]; ok && g.marker == s.ID && r.things[d.What] == nil {
					r.put(d.What, "", []string{ownerGroup(s)})
					mended[s.ID] = append(mended[s.ID], d.What)
				}
			}
		}
	}
	return mended, nil
}

// SwitchPermissionsOff switches realm's admin permissions off, as an
// administrator may in the console.
func (f *IDP) SwitchPermissionsOff(realm string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.realm(realm).permissionsOff = true
}

// EnsureRealm reports the realm's admin permissions switched off, and with
// repair switches them on (one mutating call).
func (f *IDP) EnsureRealm(ctx context.Context, realm, _ string, repair bool) ([]community.Drift, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "ensure realm "+realm); err != nil {
		return nil, err
	}
	r := f.realm(realm)
	if !r.permissionsOff {
		return nil, nil
	}
	return f.ensurePermissions(ctx, r, realm, repair)
}

func (f *IDP) ensurePermissions(ctx context.Context, r *realm, name string, repair bool) ([]community.Drift, error) {
	d := community.Drift{What: "admin permissions of realm " + name, Problem: "not enabled"}
	if repair {
		if err := f.step(ctx, "enable admin permissions of "+name); err != nil {
			return []community.Drift{d}, err
		}
		r.permissionsOff, d.Repaired = false, true
	}
	return []community.Drift{d}, nil
}

// labelOf is the label of a community role's or admin permission's key,
// if it is one.
func labelOf(key string) (string, bool) {
	if rest, ok := strings.CutPrefix(key, Role+" PERM_"); ok {
		for _, kind := range []string{"_READ", "_WRITE", "_OWNER"} {
			if l, cut := strings.CutSuffix(rest, kind); cut && l != "" {
				return l, true
			}
		}
	}
	if rest, ok := strings.CutPrefix(key, Permission+" community:"); ok {
		if l, _, cut := strings.Cut(rest, ":"); cut && l != "" {
			return l, true
		}
	}
	return "", false
}

// CarriesMarker reports whether a role or admin permission of label
// carries id's marker.
func (f *IDP) CarriesMarker(ctx context.Context, realm, root, label, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "survey "+label); err != nil {
		return false, err
	}
	for key, a := range f.realm(realm).things {
		if l, ok := labelOf(key); ok && l == label && a.marker == id {
			return true, nil
		}
	}
	return false, nil
}

// CommunityGroup finds the group of label under root, with its marker.
func (f *IDP) CommunityGroup(ctx context.Context, realm, root, label string) (community.Orphan, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "find group "+label); err != nil {
		return community.Orphan{}, false, err
	}
	a, ok := f.realm(realm).things[Group+" /"+root+"/"+label]
	if !ok {
		return community.Orphan{}, false, nil
	}
	return community.Orphan{Label: label, ID: a.marker}, true, nil
}

// ResolveUser finds a user of realm by id or, failing that, by exact
// username.
func (f *IDP) ResolveUser(ctx context.Context, realm, ref string) (community.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "find user "+ref); err != nil {
		return community.User{}, err
	}
	r := f.realm(realm)
	if u, ok := r.users[ref]; ok {
		return community.User{ID: ref, ServiceAccountOf: u.serviceAccountOf}, nil
	}
	for id, u := range r.users {
		if u.username == ref {
			return community.User{ID: id, ServiceAccountOf: u.serviceAccountOf}, nil
		}
	}
	return community.User{}, fmt.Errorf("user %q: %w", ref, ErrNotFound)
}

// HeldRoles returns which of roles user userID was granted; an unknown
// user holds nothing.
func (f *IDP) HeldRoles(ctx context.Context, realm, userID string, roles []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "read realm roles of "+userID); err != nil {
		return nil, err
	}
	u, ok := f.realm(realm).users[userID]
	var held []string
	for _, r := range roles {
		if ok && u.roles[r] {
			held = append(held, r)
		}
	}
	return held, nil
}

// Members lists the members of group groupID, by username.
func (f *IDP) Members(ctx context.Context, realm, groupID string) ([]community.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members(ctx, f.realm(realm), groupID)
}

// MembersPage lists at most max of group groupID's members from first,
// by username.
func (f *IDP) MembersPage(ctx context.Context, realm, groupID string, first, max int) ([]community.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms, err := f.members(ctx, f.realm(realm), groupID)
	if err != nil {
		return nil, err
	}
	ms = ms[min(first, len(ms)):]
	return ms[:min(max, len(ms))], nil
}

func (f *IDP) members(ctx context.Context, r *realm, groupID string) ([]community.Member, error) {
	if err := read(ctx, "list members of group "+groupID); err != nil {
		return nil, err
	}
	g := r.group(groupID)
	if g == nil {
		return nil, fmt.Errorf("group %s: %w", groupID, ErrNotFound)
	}
	var out []community.Member
	for id := range g.members {
		u := r.users[id]
		out = append(out, community.Member{ID: id, Username: u.username, Enabled: !u.disabled})
	}
	slices.SortFunc(out, func(x, y community.Member) int { return strings.Compare(x.Username, y.Username) })
	return out, nil
}

// MembersOf lists the members of each of groupIDs that exists, by
// username; it is one read.
func (f *IDP) MembersOf(ctx context.Context, realm string, groupIDs []string) (map[string][]community.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "list members of groups"); err != nil {
		return nil, err
	}
	r := f.realm(realm)
	out := map[string][]community.Member{}
	for _, id := range groupIDs {
		ms, err := f.members(ctx, r, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			out[id] = ms
		}
	}
	return out, nil
}

// IsMember reports whether user userID is in group groupID and enabled.
func (f *IDP) IsMember(ctx context.Context, realm, groupID, userID string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms, err := f.members(ctx, f.realm(realm), groupID)
	return slices.ContainsFunc(ms, func(m community.Member) bool { return m.ID == userID && m.Enabled }), err
}

// AddMember makes user userID a member of group groupID (idempotent).
func (f *IDP) AddMember(ctx context.Context, realm, groupID, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addMember(ctx, f.realm(realm), groupID, userID)
}

func (f *IDP) addMember(ctx context.Context, r *realm, groupID, userID string) error {
	op := "add user " + userID + " to group " + groupID
	if err := f.step(ctx, op); err != nil {
		return err
	}
	g := r.group(groupID)
	if g == nil || r.users[userID] == nil {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	g.members[userID] = true
	return nil
}

// RemoveMember takes user userID out of group groupID (idempotent).
func (f *IDP) RemoveMember(ctx context.Context, realm, groupID, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(ctx, "remove user "+userID+" from group "+groupID); err != nil {
		return err
	}
	r := f.realm(realm)
	g := r.group(groupID)
	if g == nil {
		return fmt.Errorf("group %s: %w", groupID, ErrNotFound)
	}
	if _, ok := r.users[userID]; !ok {
		return fmt.Errorf("user %s: %w", userID, ErrNotFound)
	}
	delete(g.members, userID)
	return nil
}

// AddDefaultGroup makes group groupID a default group of realm.
func (f *IDP) AddDefaultGroup(ctx context.Context, realm, groupID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := "make group " + groupID + " a default group"
	if err := f.step(ctx, op); err != nil {
		return err
	}
	r := f.realm(realm)
	if r.group(groupID) == nil {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	r.defaults[groupID] = true
	return nil
}

// DefaultGroups lists the ids of realm's default groups, sorted.
func (f *IDP) DefaultGroups(realm string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.realm(realm).defaults {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// UserGroups lists the groups user userID is in, by path.
func (f *IDP) UserGroups(ctx context.Context, realm, userID string) ([]community.GroupRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := read(ctx, "list groups of user "+userID); err != nil {
		return nil, err
	}
	var out []community.GroupRef
	for key, a := range f.realm(realm).things {
		if path, ok := strings.CutPrefix(key, Group+" "); ok && a.members[userID] {
			out = append(out, community.GroupRef{ID: a.id, Path: path})
		}
	}
	slices.SortFunc(out, func(x, y community.GroupRef) int { return strings.Compare(x.Path, y.Path) })
	return out, nil
}

var _ community.IdentityProvider = (*IDP)(nil)
