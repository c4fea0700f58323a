// Package provision converges a realm's communities to a file, as CI
// pipelines provisioning realms need: plan (what would change), apply (make
// it so, through the same code paths as the REST API) and export (write the
// realm's communities in the same format).
package provision

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/label"
)

// File is the provisioning format (YAML or JSON).
type File struct {
	Realm       string      `json:"realm" yaml:"realm"`
	Communities []Community `json:"communities" yaml:"communities"`
}

// Community is one community of a File. Member lists name users by
// username (or id); a list left out is left alone, a list given is
// converged to (members missing are added; extra members are removed only
// with prune).
type Community struct {
	Label     string   `json:"label" yaml:"label"`
	Name      string   `json:"name" yaml:"name"`
	Owners    []string `json:"owners,omitempty" yaml:"owners"`
	Authors   []string `json:"authors,omitempty" yaml:"authors"`
	Consumers []string `json:"consumers,omitempty" yaml:"consumers"`
}

// MaxFileBytes bounds a communities file: 10,000 communities with a few
// dozen members each fit many times over.
const MaxFileBytes = 64 << 20

// Parse reads a File strictly: unknown keys (in any case) and keys given
// twice are errors, so a typo does not silently drop a setting; and as
// YAML 1.2, so every value is read as written: YAML 1.1 would read the
// label ON as "true" and the user 0123 as "83", and apply --prune would
// then delete the community ON for one it does not name. Everything that can be checked without the
// realm is checked here, before apply changes anything: labels, names
// (trimmed, as the registry stores them), user references (lower-cased,
// as Keycloak stores usernames; listed once), the number of owners, and
// that labels and names are each unique ignoring case. A file without a
// communities key is refused, so that a truncated file cannot prune a
// realm empty (write "communities: []" to mean none).
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("communities file: larger than %d bytes", MaxFileBytes)
	}
	var f File
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, errors.New("communities file: empty")
	} else if err != nil {
		return nil, fmt.Errorf("communities file: %w", err)
	}
	if err := dec.Decode(new(yaml3.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("communities file: more than one YAML document")
	}
	if f.Realm == "" {
		return nil, errors.New("communities file: realm is required")
	}
	if f.Communities == nil {
		return nil, errors.New(`communities file: communities is required ("communities: []" for none)`)
	}
	labels, names := map[string]bool{}, map[string]string{}
	for i := range f.Communities {
		c := &f.Communities[i]
		at := fmt.Sprintf("communities file: community %d (%s)", i+1, c.Label)
		if err := label.ValidateLabel(c.Label); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		name, err := label.NormalizeName(c.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		c.Name = name
		// Labels and names are unique as the registry keys them.
		if labels[label.Key(c.Label)] {
			return nil, fmt.Errorf("communities file: label %s appears twice", c.Label)
		}
		labels[label.Key(c.Label)] = true
		if other, ok := names[label.NameKey(name)]; ok {
			return nil, fmt.Errorf("communities file: %s and %s are both named %q", other, c.Label, name)
		}
		names[label.NameKey(name)] = c.Label
		if len(c.Owners) > community.MaxOwners {
			return nil, fmt.Errorf("%s: at most %d owners", at, community.MaxOwners)
		}
		for _, list := range []*[]string{&c.Owners, &c.Authors, &c.Consumers} {
			if *list, err = userRefs(*list); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
		}
	}
	return &f, nil
}

// userRefs checks refs and returns them lower-cased, each once, in order;
// a list left out stays nil (left alone), one given empty stays empty.
func userRefs(refs []string) ([]string, error) {
	if refs == nil {
		return nil, nil
	}
	out := []string{}
	for _, r := range refs {
		if err := community.ValidateUserRef(r); err != nil {
			return nil, fmt.Errorf("%q: %w", r, err)
		}
		if r = strings.ToLower(r); !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Marshal writes f as YAML.
func Marshal(f *File) ([]byte, error) { return yaml.Marshal(f) }

// Action is one change apply makes (or plan says it would make).
type Action struct {
	Kind string `json:"kind"` // repair-realm, create, repair, add-member, remove-member, delete, conflict
	// Label is the community's; a repair-realm has none.
	Label  string `json:"label"`
	Detail string `json:"detail,omitempty"`
	Role   string `json:"role,omitempty"`
	User   string `json:"user,omitempty"`
	// UserID is the Keycloak id of a member to remove: a username Keycloak
	// took from a directory may be one no reference can name (a space in
	// "john smith"), and the removal must still happen.
	UserID string `json:"userId,omitempty"`
	// Labelled counts the resources still labelled by a community to delete.
	Labelled int `json:"labelledResources,omitempty"`
	// alone marks a repair the realm's survey cannot see (a registry
	// record of a group's id that names no group: the survey finds groups
	// by path), made by the community's own check, not with the others.
	alone bool
	// takes are the labels of the listed communities a repair-realm takes
	// into apply's pass besides those with a repair of their own: their
	// admin permissions cannot be compared while the realm's are off.
	takes []string
}

func (a Action) String() string {
	s := a.Kind
	if a.Label != "" {
		s += " " + a.Label
	}
	if a.Role != "" {
		s += " " + a.Role + " " + a.User
	}
	if a.Detail != "" {
		s += ": " + a.Detail
	}
	return s
}

// Provisioner plans and applies files through the community service.
type Provisioner struct {
	svc   *community.Service
	actor community.Actor
	// AcceptLabelled deletes communities even while their labels remain
	// on FHIR resources (the delete guard's override).
	AcceptLabelled bool
}

// New returns a Provisioner acting as actor (service desk rights). Its
// authority is the service's own Keycloak credentials, which the pipeline
// holds, not a token: there is no role to confirm.
func New(svc *community.Service, actor community.Actor) *Provisioner {
	actor.ServiceDesk, actor.Confirmed = true, true
	return &Provisioner{svc: svc, actor: actor}
}

// Recover undoes the realm's abandoned operations whose lease has run
// out (a create or delete a killed run or replica left half-way), as
// serve and reconcile do: a pipeline with no service running would
// otherwise find their labels held for good. It returns how many it
// undid; one it cannot undo now stays for the next run.
func (p *Provisioner) Recover(ctx context.Context, realm string) (int, error) {
	return p.svc.Recover(ctx, []string{realm})
}

var roles = community.MemberRoles

// inProgress says what holds a label whose community is not active.
var inProgress = map[string]string{
	community.StateCreating: "being created",
	community.StateDeleting: "being deleted",
	community.StateFailed:   "whose failed create is yet to be undone by recovery (apply, serve and 'communities reconcile' run it)",
}

func wanted(c Community) map[string][]string {
	return map[string][]string{community.RoleOwner: c.Owners, community.RoleAuthor: c.Authors, community.RoleConsumer: c.Consumers}
}

// unrepaired names the drift a repair left as it was (a group of somebody
// else's where the community's should be, an admin role mapped by hand):
// only a person can mend it, and a repair that reported success would
// leave it in place behind a green pipeline.
func unrepaired(drift []community.Drift) error {
	var left []string
	for _, d := range drift {
		if !d.Repaired {
			left = append(left, d.String())
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("not repaired, to be mended by hand: %s", strings.Join(left, "; "))
	}
	return nil
}

// repaired is the outcome of one of RepairMany's repairs.
func repaired(r community.RepairResult) error {
	if r.Err != nil {
		return r.Err
	}
	return unrepaired(r.Drift)
}

// realmRepaired is the outcome of a repair-realm: the realm's own repair,
// and that of the communities it takes in (takes), which no other action
// reports: one that was not repaired, or not reached, fails it. At most
// maxNamed are named, so that one line does not hold 10,000 of them.
func realmRepaired(r community.Repairs, takes []string) error {
	if r.Err != nil {
		return r.Err
	}
	var problems, failed []string
	if err := unrepaired(r.Realm); err != nil {
		problems = append(problems, err.Error())
	}
	skipped := 0
	for _, l := range takes {
		c := r.Communities[l]
		switch {
		case c.NotAttempted:
			skipped++
		case errors.Is(c.Err, community.ErrNotFound):
			// Deleted since the plan: nothing of it to repair.
		default:
			if err := repaired(c); err != nil {
				failed = append(failed, l+": "+err.Error())
			}
		}
	}
	if len(failed) > 0 {
		named := strings.Join(failed[:min(len(failed), maxNamed)], "; ")
		if n := len(failed) - maxNamed; n > 0 {
			named += fmt.Sprintf("; and %d more", n)
		}
		problems = append(problems, fmt.Sprintf("%d of the %d communities it takes in not repaired: %s", len(failed), len(takes), named))
	}
	if skipped > 0 {
		problems = append(problems, fmt.Sprintf("interrupted before %d of the %d communities it takes in were repaired", skipped, len(takes)))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// maxNamed bounds the communities a repair-realm's failure names.
const maxNamed = 10

// Plan lists what Apply would change, in the order it would. It reads
// the realm as a drift check does, in bulk (3 + ⌈N/500⌉ Keycloak calls and
// a few for each community that drifted), then the members of the
// communities whose file entry lists members, in bulk too (⌈3N/1500⌉).
// The realm's own drift is one repair-realm, first, not a repair of each
// community (10,000 lines for one switch in the console).
func (p *Provisioner) Plan(ctx context.Context, f *File, prune bool) ([]Action, error) {
	existing, drift, realmDrift, err := p.svc.Drift(ctx, f.Realm)
	if err != nil {
		return nil, err
	}
	active := map[string]community.Community{}
	named := map[string]community.Community{}
	for _, e := range existing {
		active[e.LabelKey] = e
		named[e.NameKey] = e
	}
	var withMembers []community.Community
	for _, c := range f.Communities {
		if row, ok := active[label.Key(c.Label)]; ok && (c.Owners != nil || c.Authors != nil || c.Consumers != nil) {
			withMembers = append(withMembers, row)
		}
	}
	members := map[string]map[string][]community.Member{}
	if len(withMembers) > 0 {
		if members, err = p.svc.MembersOfMany(ctx, f.Realm, p.actor, withMembers); err != nil {
			return nil, err
		}
	}
	// A community the file names in another case is listed: it is a
	// conflict to fix, never one to prune.
	listed := map[string]bool{}
	for _, c := range f.Communities {
		listed[label.Key(c.Label)] = true
	}
	// The deletes of communities whose names the file gives to new ones
	// come first, so that those creates succeed in the same run (a delete
	// that will be refused frees nothing); the other deletes come last, so
	// that an interrupted apply has dropped as little as it can.
	wantedNames := map[string]bool{}
	for _, c := range f.Communities {
		if _, ok := active[label.Key(c.Label)]; !ok {
			wantedNames[label.NameKey(c.Name)] = true
		}
	}
	var plan, last []Action
	if prune {
		for _, e := range existing {
			if listed[e.LabelKey] {
				continue
			}
			a := Action{Kind: "delete", Label: e.Label, Detail: e.Name}
			u, guarded, err := p.svc.LabelledResources(ctx, e.Label)
			if err != nil {
				return nil, fmt.Errorf("community %s: %w", e.Label, err)
			}
			refused := false
			if guarded && u.Total > 0 {
				a.Labelled = u.Total
				a.Detail += "; its labels remain on " + u.String()
				if refused = !p.AcceptLabelled; refused {
					a.Detail += ", so the delete will be refused without --accept-labelled-resources"
				}
			}
			if !wantedNames[e.NameKey] {
				last = append(last, a)
				continue
			}
			if !refused {
				delete(named, e.NameKey)
			}
			plan = append(plan, a)
		}
	}
	realmRepair := Action{Kind: "repair-realm", Detail: fmt.Sprint(realmDrift)}
	for _, c := range f.Communities {
		actions, err := p.planOne(ctx, f.Realm, c, active, named, members, drift[c.Label], realmDrift, prune)
		if err != nil {
			return nil, fmt.Errorf("community %s: %w", c.Label, err)
		}
		plan = append(plan, actions...)
		// The realm's repair takes in the active communities with no
		// repair of their own, and none that apply will not touch (a
		// conflict) or that a create will make.
		if _, ok := active[label.Key(c.Label)]; ok && !slices.ContainsFunc(actions, func(a Action) bool {
			return a.Kind == "repair" || a.Kind == "conflict"
		}) {
			realmRepair.takes = append(realmRepair.takes, c.Label)
		}
	}
	if len(realmDrift) > 0 {
		plan = append(plan, realmRepair)
	}
	// The repairs come first, made together (Apply): the realm's own drift
	// is mended once before anything else changes, and each community's
	// before its members do.
	slices.SortStableFunc(plan, func(a, b Action) int { return cmp.Compare(rank(a), rank(b)) })
	return append(plan, last...), nil
}

// rank orders a plan: the realm's repair, then the communities' repairs
// made with it, then those made alone (after the realm's drift is
// mended), then the rest.
func rank(a Action) int {
	switch {
	case a.Kind == "repair-realm":
		return 0
	case a.Kind == "repair" && !a.alone:
		return 1
	case a.Kind == "repair":
		return 2
	}
	return 3
}

// planOne plans c against the realm's active communities (by label key
// and by name key), their members (by label and role; a member group that
// is gone has none), c's drift and the realm's.
func (p *Provisioner) planOne(ctx context.Context, realm string, c Community, active, named map[string]community.Community,
	members map[string]map[string][]community.Member, drift, realmDrift []community.Drift, prune bool) ([]Action, error) {
	conflict := func(format string, args ...any) []Action {
		return []Action{{Kind: "conflict", Label: c.Label, Detail: fmt.Sprintf(format, args...)}}
	}
	row, ok := active[label.Key(c.Label)]
	if !ok {
		// A create Apply would find refused is a conflict now, so that the
		// plan says what Apply will do.
		switch held, err := p.svc.Holder(ctx, realm, c.Label); {
		case err == nil:
			return conflict("label %q is held by community %q, %s; plan again once that has ended", held.Label, held.Name, inProgress[held.State]), nil
		case !errors.Is(err, community.ErrNotFound):
			return nil, err
		}
		if other, ok := named[label.NameKey(c.Name)]; ok {
			return conflict("the realm's community %q is named %q (names are unique ignoring case, spacing, character width and accents written either way)", other.Label, other.Name), nil
		}
		plan := []Action{{Kind: "create", Label: c.Label, Detail: c.Name}}
		for _, role := range roles[1:] {
			for _, u := range wanted(c)[role] {
				plan = append(plan, Action{Kind: "add-member", Label: c.Label, Role: role, User: u})
			}
		}
		return plan, nil
	}
	if row.Label != c.Label || row.Name != c.Name {
		return conflict("the realm has %q named %q; renaming is not supported", row.Label, row.Name), nil
	}
	var plan []Action
	repair := len(drift) > 0
	if repair {
		plan = append(plan, Action{Kind: "repair", Label: c.Label, Detail: fmt.Sprint(drift)})
	}
	if c.Owners == nil && c.Authors == nil && c.Consumers == nil {
		return plan, nil
	}
	current := members[row.Label]
	for _, role := range roles {
		want := wanted(c)[role]
		if want == nil {
			continue
		}
		have, read := current[role]
		pruneRole := prune
		if !read {
			if !repair {
				// Gone since the drift was read.
				if _, err := p.svc.Get(ctx, realm, c.Label); errors.Is(err, community.ErrNotFound) {
					return conflict("it was deleted while the plan was made"), nil
				}
				// The survey finds groups by path. Whole by path now too,
				// the registry's record of the group's id is what is
				// stale (a repair whose record failed, a group made
				// again by hand), which a repair records anew; else the
				// group went while the plan was made.
				now, err := p.svc.Check(ctx, realm, c.Label)
				if err != nil {
					return nil, err
				}
				// The realm's drift is the repair-realm's.
				now = slices.DeleteFunc(now, func(d community.Drift) bool {
					return slices.ContainsFunc(realmDrift, func(r community.Drift) bool { return r.What == d.What })
				})
				if len(now) > 0 {
					return conflict("its %s group could not be read, though the realm's survey found it whole a moment before: "+
						"check it with 'communities reconcile', then plan again", role), nil
				}
				repair = true
				plan = append([]Action{{Kind: "repair", Label: c.Label,
					Detail: "the registry's record of its " + role + " group's id names no group: record its groups' and roles' ids anew"}}, plan...)
			}
			// Repaired by the community's own check, which records the
			// group's id anew: the survey finds groups by path, so the
			// others' repair would leave a stale record as it is.
			plan[0].alone = true
			// A member group the repair will make again has no members to
			// compare: every member listed is added (adding is idempotent),
			// and none is removed until a plan after the repair.
			pruneRole = false
		}
		// The file names a member by username or id (Parse lower-cased
		// both, as Keycloak keeps them).
		known := map[string]bool{}
		for _, m := range have {
			known[m.Username], known[m.ID] = true, true
		}
		for _, u := range want {
			if !known[u] {
				plan = append(plan, Action{Kind: "add-member", Label: c.Label, Role: role, User: u})
			}
		}
		if pruneRole {
			for _, m := range have {
				if !slices.Contains(want, m.Username) && !slices.Contains(want, m.ID) {
					plan = append(plan, Action{Kind: "remove-member", Label: c.Label, Role: role, User: m.Username, UserID: m.ID})
				}
			}
		}
	}
	return plan, nil
}

// Conflicts counts the actions of plan that Apply will refuse.
func Conflicts(plan []Action) int {
	n := 0
	for _, a := range plan {
		if a.Kind == "conflict" {
			n++
		}
	}
	return n
}

// Result is what happened to one action.
type Result struct {
	Action
	Error string `json:"error,omitempty"`
	// NotAttempted: Apply was interrupted before this action.
	NotAttempted bool `json:"notAttempted,omitempty"`
}

// Apply carries out plan, reporting each action as it ends. It goes on
// after a failure (other communities are independent) and returns an error
// naming every item that failed. Once ctx ends (a pipeline cancelled) it
// starts nothing more: the action under way finishes (each Keycloak and
// PostgreSQL call has its own timeout), the rest are reported not
// attempted, and the error says how many.
func (p *Provisioner) Apply(ctx context.Context, f *File, plan []Action, progress func(Result)) error {
	// A change cut off half-way could still commit in Keycloak after it
	// was reported failed; so the action under way runs to its end.
	actx := context.WithoutCancel(ctx)
	byLabel := map[string]Community{}
	for _, c := range f.Communities {
		byLabel[c.Label] = c
	}
	failedCreate := map[string]bool{}
	var failed []string
	report := func(a Action, err error) {
		r := Result{Action: a}
		if err != nil {
			r.Error = err.Error()
			failed = append(failed, a.String())
		}
		if progress != nil {
			progress(r)
		}
	}
	// The repairs are made together at the first (RepairMany), and each
	// is reported in its turn, even once ctx has ended: it was made.
	var repairs *community.Repairs
	inBatch := func(a Action) bool { return a.Kind == "repair-realm" || a.Kind == "repair" && !a.alone }
	made := func(a Action) bool {
		return inBatch(a) && repairs != nil && (a.Kind == "repair-realm" || !repairs.Communities[a.Label].NotAttempted)
	}
	realmPlanned := slices.ContainsFunc(plan, func(a Action) bool { return a.Kind == "repair-realm" })
	outcome := func(a Action) error {
		if a.Kind == "repair-realm" {
			return realmRepaired(*repairs, a.takes)
		}
		err := repaired(repairs.Communities[a.Label])
		if realmPlanned {
			return err
		}
		// The realm drifted since the plan: no action reports its
		// repair, so each says what of it a person must mend.
		switch left := unrepaired(repairs.Realm); {
		case left == nil:
		case err == nil:
			err = left
		default:
			err = fmt.Errorf("%w; the realm's: %w", err, left)
		}
		return err
	}
	for i, a := range plan {
		if inBatch(a) && repairs == nil && ctx.Err() == nil {
			var labels []string
			for _, r := range plan[i:] {
				switch {
				case r.Kind == "repair-realm":
					labels = append(labels, r.takes...)
				case inBatch(r):
					labels = append(labels, r.Label)
				}
			}
			r := p.svc.RepairMany(ctx, f.Realm, labels, p.actor)
			repairs = &r
		}
		if ctx.Err() != nil && !made(a) {
			skipped := 0
			for _, rest := range plan[i:] {
				if made(rest) {
					report(rest, outcome(rest))
					continue
				}
				skipped++
				if progress != nil {
					progress(Result{Action: rest, NotAttempted: true})
				}
			}
			return fmt.Errorf("interrupted (%w): %d of %d changes not attempted, %d failed", context.Cause(ctx), skipped, len(plan), len(failed))
		}
		var err error
		switch a.Kind {
		case "create":
			c := byLabel[a.Label]
			req := community.CreateRequest{Label: c.Label, Name: c.Name, Owners: c.Owners, Dormant: len(c.Owners) == 0}
			if _, err = p.svc.Create(actx, f.Realm, p.actor, req); err != nil {
				failedCreate[a.Label] = true
			}
		case "repair-realm":
			err = outcome(a)
		case "repair":
			if !a.alone {
				err = outcome(a)
				break
			}
			var drift []community.Drift
			if drift, err = p.svc.Repair(actx, f.Realm, a.Label, p.actor); err == nil {
				err = unrepaired(drift)
			}
		case "add-member", "remove-member":
			if failedCreate[a.Label] {
				err = errors.New("community was not created")
				break
			}
			who := a.User
			if a.UserID != "" {
				who = a.UserID
			}
			err = p.svc.ChangeMember(actx, f.Realm, p.actor, a.Label, a.Role, who, a.Kind == "add-member")
		case "delete":
			_, err = p.svc.Delete(actx, f.Realm, p.actor, community.DeleteRequest{Label: a.Label, AcceptLabelled: p.AcceptLabelled})
		case "conflict":
			err = errors.New(a.Detail)
		}
		report(a, err)
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("%d of %d changes failed: %v", len(failed), len(plan), failed)
	}
	return nil
}

// Export writes realm's communities and their members as a File, reading
// the members in bulk (⌈3N/1500⌉ Keycloak calls). A member group that is
// missing (drift) is left out, as an empty one is, and named in a warning.
func (p *Provisioner) Export(ctx context.Context, realm string) (*File, []string, error) {
	rows, err := p.svc.List(ctx, realm, 0, 0)
	if err != nil {
		return nil, nil, err
	}
	f := &File{Realm: realm, Communities: []Community{}}
	if len(rows) == 0 {
		return f, nil, nil
	}
	members, err := p.svc.MembersOfMany(ctx, realm, p.actor, rows)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	for _, r := range rows {
		names := func(role string) []string {
			if _, ok := members[r.Label][role]; !ok {
				warnings = append(warnings, fmt.Sprintf("community %s: its %s group is missing in Keycloak, so its %ss are left out; "+
					"'communities reconcile --repair' restores the group", r.Label, role, role))
			}
			var out []string
			for _, m := range members[r.Label][role] {
				// A username Parse would refuse (a federated one may hold
				// spaces) is written as the user's id, so that the file
				// written can be applied.
				ref := m.Username
				if community.ValidateUserRef(ref) != nil {
					ref = m.ID
				}
				out = append(out, ref)
			}
			sort.Strings(out)
			return out
		}
		f.Communities = append(f.Communities, Community{Label: r.Label, Name: r.Name,
			Owners: names(community.RoleOwner), Authors: names(community.RoleAuthor), Consumers: names(community.RoleConsumer)})
	}
	return f, warnings, nil
}
