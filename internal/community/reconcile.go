package community

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/label"
)

// Report is what one reconciliation of a realm found.
type Report struct {
	Realm       string `json:"realm"`
	Communities int    `json:"communities"`
	// RealmDrift are differences of the realm itself (admin permissions
	// switched off), said once.
	RealmDrift []Drift            `json:"realmDrift,omitempty"`
	Drift      map[string][]Drift `json:"drift,omitempty"`
	// Orphans are community groups in Keycloak without a registry row,
	// and community roles and admin permissions without either.
	Orphans []Orphan `json:"orphans,omitempty"`
	// OrphansRemoved counts orphans (carrying this service's marker) that
	// repair removed with their roles and scopes.
	OrphansRemoved int `json:"orphansRemoved,omitempty"`
	// UndoneFinished are the labels of undone creates whose artefacts
	// Keycloak made after the undo (a call committed late): removed in
	// every mode, as the rest of the undo, and not drift.
	UndoneFinished []string `json:"undoneFinished,omitempty"`
	Repair         bool     `json:"repair"`
	// Unchecked are the labels of communities (and orphans) whose check
	// failed; the error returned with the report says why. The pass goes
	// on past them.
	Unchecked []string `json:"unchecked,omitempty"`
	// Incomplete is set when the pass did not check the whole realm: its
	// survey failed, a community could not be checked, or the pass stopped
	// because Keycloak or the registry could not be reached.
	Incomplete bool `json:"incomplete,omitempty"`
}

// DriftCount is the number of differences found (repaired or not).
func (r Report) DriftCount() int {
	n := len(r.Orphans) + len(r.RealmDrift)
	for _, d := range r.Drift {
		n += len(d)
	}
	return n
}

// reconciler is who the audit trail names for what the drift check and
// its repairs change.
var reconciler = Actor{ClientID: "communities-reconciler", Username: "communities-reconciler"}

// Reconcile checks every active community of each realm against Keycloak,
// and every community group in Keycloak against the registry. With repair
// it recreates missing artefacts and removes orphans this service made;
// artefacts someone else made are only reported. Abandoned operations are
// recovered first; what cannot be yet is the error returned with the
// reports. A realm whose check fails does not stop the check of the
// others: its report, marked Incomplete, says what was checked, and the
// errors are returned joined, after the reports. Only one replica
// reconciles a realm at a time: a realm another holds is skipped, and ran
// is false unless every realm was done.
func (s *Service) Reconcile(ctx context.Context, realms []string, repair bool) (reports []Report, ran bool, err error) {
	// An operation that cannot be recovered yet is its own error; it must
	// not stop the check of every other community (a community scope in
	// every token is detached by this check, repair or not). It is
	// returned with the reports, after them.
	_, unrecovered := s.Recover(ctx, realms)
	if unrecovered != nil {
		s.log.WarnContext(ctx, "abandoned operations not recovered yet; checking for drift all the same", "error", unrecovered)
	}
	ran = true
	errs := []error{unrecovered}
	for _, realm := range realms {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		done, err := s.store.AsLeader(ctx, realm, func(ctx context.Context) error {
			rep, err := s.reconcileRealm(ctx, realm, repair)
			rep.Incomplete = err != nil
			reports = append(reports, rep)
			return err
		})
		if err != nil {
			errs = append(errs, err)
		}
		ran = ran && done && err == nil
	}
	return reports, ran, errors.Join(errs...)
}

// failures gathers what one realm's pass could not check, so that one
// community's failure (a refusal, a Keycloak error on its data) does not
// stop the check of the others. An outage does: two checks in a row that
// could not reach Keycloak or the registry, or the end of the pass's
// context, stop it, for every check after them would wait out its timeout
// to fail alike. (The pass checks last what failed in the one before, so
// two communities that keep failing alike cannot starve the rest.)
type failures struct {
	rep         *Report
	errs        []error
	unavailable int // checks in a row that could not reach Keycloak or the registry
	// of is each failed check's error, by label, and left the labels of
	// the communities a stopped pass did not reach, for a caller that
	// answers community by community (apply's repairs).
	of   map[string]error
	left map[string]bool
	// stop, when set, ends the pass before its next change once it is
	// done (apply's repairs: a pipeline cancelled starts nothing more).
	stop context.Context
}

// interrupted says whether the pass must start no further change.
func (f *failures) interrupted() bool { return f.stop != nil && f.stop.Err() != nil }

// leave records that a stopped pass did not reach label l.
func (f *failures) leave(l string) {
	if f.left == nil {
		f.left = map[string]bool{}
	}
	f.left[l] = true
}

// maxFailureErrors bounds the errors kept (each names its community); the
// report's Unchecked names them all.
const maxFailureErrors = 10

// add records a failed check of label l, and says whether the pass must
// stop.
func (f *failures) add(ctx context.Context, l string, err error) (stop bool) {
	f.rep.Unchecked = append(f.rep.Unchecked, l)
	if f.of == nil {
		f.of = map[string]error{}
	}
	f.of[l] = err
	if len(f.errs) < maxFailureErrors {
		f.errs = append(f.errs, err)
	}
	// Keycloak's failures say Unavailable; the registry's have no kind.
	if k := fault.KindOf(err); k == fault.Unavailable || k == nil {
		f.unavailable++
	} else {
		f.unavailable = 0
	}
	return f.unavailable >= 2 || ctx.Err() != nil
}

// ok records a check that succeeded.
func (f *failures) ok() { f.unavailable = 0 }

// err is the pass's error: nil if every check succeeded.
func (f *failures) err() error {
	if len(f.rep.Unchecked) == 0 {
		return nil
	}
	err := errors.Join(f.errs...)
	if n := len(f.rep.Unchecked) - len(f.errs); n > 0 {
		err = fmt.Errorf("%w\n(and %d more)", err, n)
	}
	return fmt.Errorf("%s: %d check(s) failed: %w", f.rep.Realm, len(f.rep.Unchecked), err)
}

// reconcileRealm surveys the realm in bulk, confirms each suspect with
// Ensure (repairing it with repair), and looks for orphans. A community
// that is not active, or not the same row, before and after its
// confirmation is being created or deleted: what it lacks is not drift.
// A community or orphan whose check fails is named in Unchecked and the
// pass goes on, unless Keycloak or the registry cannot be reached.
func (s *Service) reconcileRealm(ctx context.Context, realm string, repair bool) (Report, error) {
	rep := Report{Realm: realm, Repair: repair}
	rows, err := s.store.List(ctx, realm, 0, 0)
	if err != nil {
		return rep, err
	}
	rep.Communities = len(rows)
	byLabel := map[string]Community{}
	for _, row := range rows {
		byLabel[row.Label] = row
	}
	failed := &failures{rep: &rep}
	defer func() { s.rememberUnchecked(realm, rep.Unchecked) }()
	drift, survey, stopped, err := s.drifted(ctx, realm, s.uncheckedLast(realm, rows), repair, reconciler, failed)
	rep.Drift, rep.RealmDrift = drift, survey.Realm
	for _, d := range survey.Realm {
		s.log.WarnContext(ctx, "realm drifted from what communities need", "realm", realm, "drift", d.String(), "repair", repair)
	}
	if drift == nil || stopped {
		return rep, errors.Join(err, failed.err())
	}
	// The bulk mend failed (Keycloak gone, or a realm-wide policy changed
	// meanwhile: what it left is reported as drift not repaired), or the
	// registry could not say which communities are still active around
	// it (what they share is then not reported): orphans are looked for
	// all the same, as past a community whose check failed.
	mendErr := err
	s.logDrift(ctx, realm, rows, drift, survey.Shared, repair)
	// ids of active rows, and of orphans found, so that a community's
	// roles and permissions are not taken for orphans of their own.
	seen := map[string]bool{}
	for _, row := range rows {
		seen[row.ID] = true
	}
	for _, g := range survey.Groups {
		if row, ok := byLabel[g.Label]; ok && row.ID == g.ID {
			continue
		}
		g.ID = ourMarker(g.ID)
		if g.ID != "" {
			seen[g.ID] = true
		}
		// A group whose row is gone, or which looked unmarked, may be one
		// a delete removed after the survey read it: only a group still
		// there now, as it was, is an orphan.
		confirm := func() (bool, error) {
			now, ok, err := s.kc.CommunityGroup(ctx, realm, s.opts.RootGroup, g.Label)
			return ok && ourMarker(now.ID) == g.ID, err
		}
		if err := s.orphan(ctx, &rep, g, confirm, repair); err != nil {
			if failed.add(ctx, g.Label, err) {
				return rep, errors.Join(mendErr, failed.err())
			}
			continue
		}
		failed.ok()
	}
	// Roles and permissions whose group is gone: left by a create Keycloak
	// committed after its undo, or by a delete while the realm's admin
	// permissions were off. Each would block its label (409) for good.
	for _, m := range survey.Marked {
		if m.ID = ourMarker(m.ID); m.ID == "" || seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		confirm := func() (bool, error) { return s.kc.CarriesMarker(ctx, realm, s.opts.RootGroup, m.Label, m.ID) }
		if err := s.orphan(ctx, &rep, m, confirm, repair); err != nil {
			if failed.add(ctx, m.Label, err) {
				return rep, errors.Join(mendErr, failed.err())
			}
			continue
		}
		failed.ok()
	}
	return rep, errors.Join(mendErr, failed.err())
}

// logDrift warns of each community's drift, in rows' order, but of what a
// realm-wide policy or role deleted by hand took from every community
// alike (shared, by community id) once for them all: at 10,000
// communities that would be 10,000 lines on every pass until someone
// repairs it, for one cause, which the realm's own line (its policy or
// role missing) names when it is still missing. The report names each.
func (s *Service) logDrift(ctx context.Context, realm string, rows []Community, drift, shared map[string][]Drift, repair bool) {
	var alike []string
	var example []Drift
	left := 0
	for _, row := range rows {
		d, ok := drift[row.Label]
		if !ok {
			continue
		}
		if _, ok := shared[row.ID]; !ok {
			s.log.WarnContext(ctx, "community drifted from its definition", "realm", realm, "label", row.Label,
				"drift", fmt.Sprint(d), "repair", repair)
			continue
		}
		if alike = append(alike, row.Label); example == nil {
			example = d
		}
		if slices.ContainsFunc(d, func(d Drift) bool { return !d.Repaired }) {
			left++
		}
	}
	if len(alike) == 0 {
		return
	}
	s.log.WarnContext(ctx, "communities lack alike what a realm-wide policy or role deleted by hand took from each",
		"realm", realm, "communities", len(alike), "not_repaired", left, "first", alike[:min(len(alike), maxAlikeLogged)],
		"drift_of_first", fmt.Sprint(example), "repair", repair)
}

// maxAlikeLogged bounds the labels logDrift names of communities that
// drifted alike.
const maxAlikeLogged = 10

// uncheckedLast orders rows so that the communities whose check failed in
// realm's last pass come last: two that keep failing alike (Keycloak
// erring on their data) would otherwise stop every pass at the same place.
func (s *Service) uncheckedLast(realm string, rows []Community) []Community {
	s.mu.Lock()
	last := s.unchecked[realm]
	s.mu.Unlock()
	if len(last) == 0 {
		return rows
	}
	out := slices.Clone(rows)
	slices.SortStableFunc(out, func(a, b Community) int {
		switch {
		case last[a.Label] == last[b.Label]:
			return 0
		case last[a.Label]:
			return 1
		default:
			return -1
		}
	})
	return out
}

func (s *Service) rememberUnchecked(realm string, labels []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unchecked == nil {
		s.unchecked = map[string]map[string]bool{}
	}
	set := map[string]bool{}
	for _, l := range labels {
		set[l] = true
	}
	s.unchecked[realm] = set
}

// drifted surveys rows' artefacts in bulk and confirms each suspect with
// Ensure (repairing it with repair, audited as by's): what each row still
// active lacks (or lacked), by label. A suspect whose confirmation fails
// goes to failed; stopped says failed stopped the pass. An error with out
// nil says the pass failed before it confirmed any (its survey, the
// realm's repair); with out set, the bulk mend failed, and out says what
// it left (or the registry could not be read around it).
func (s *Service) drifted(ctx context.Context, realm string, rows []Community, repair bool, by Actor, failed *failures) (out map[string][]Drift, survey Survey, stopped bool, err error) {
	specs := make([]Spec, 0, len(rows))
	for _, row := range rows {
		specs = append(specs, s.spec(&row))
	}
	if survey, err = s.kc.Survey(ctx, realm, s.opts.RootGroup, specs); err != nil {
		return nil, survey, false, fmt.Errorf("survey %s: %w", realm, err)
	}
	if len(survey.Realm) > 0 {
		// Confirmed (and mended) once for the realm; a repair that
		// switched admin permissions on surveys again, so that the
		// communities' own are checked now that they count.
		realmDrift, err := s.ensureRealm(ctx, realm, repair, by)
		if err != nil {
			survey.Realm = nil // not confirmed: not reported
			return nil, survey, false, err
		}
		// Switched on since the survey read them off (by this repair, or
		// by someone meanwhile): the survey compared no community's
		// permissions, so it is read again.
		if len(realmDrift) == 0 || slices.ContainsFunc(realmDrift, func(d Drift) bool { return d.Repaired }) {
			if survey, err = s.kc.Survey(ctx, realm, s.opts.RootGroup, specs); err != nil {
				return nil, survey, false, fmt.Errorf("survey %s: %w", realm, err)
			}
		}
		survey.Realm = realmDrift
	}
	out = map[string][]Drift{}
	// halt ends the pass before rest's suspects and the Shared ones
	// (mended last).
	halt := func(rest []Community) (map[string][]Drift, Survey, bool, error) {
		for _, row := range rows {
			if _, ok := survey.Shared[row.ID]; ok {
				failed.leave(row.Label)
			}
		}
		for _, row := range rest {
			if len(survey.Suspects[row.ID]) > 0 {
				failed.leave(row.Label)
			}
		}
		return out, survey, true, nil
	}
	for i, row := range rows {
		if len(survey.Suspects[row.ID]) == 0 {
			continue
		}
		if failed.interrupted() {
			return halt(rows[i:])
		}
		drift, active, err := s.ensureActive(ctx, &row, repair, by)
		if err != nil {
			if failed.add(ctx, row.Label, fmt.Errorf("reconcile %s/%s: %w", realm, row.Label, err)) {
				return halt(rows[i+1:])
			}
			continue
		}
		failed.ok()
		// What is the realm's is said once, as the realm's.
		drift = slices.DeleteFunc(drift, func(d Drift) bool {
			return slices.ContainsFunc(survey.Realm, func(r Drift) bool { return r.What == d.What })
		})
		if len(drift) > 0 && active {
			out[row.Label] = drift
		}
	}
	if len(survey.Shared) > 0 {
		if failed.interrupted() {
			return halt(nil)
		}
		// A pipeline's end (apply's repairs) stops the mend between its
		// pages, as it stops the pass between suspects.
		stop := ctx
		if failed.stop != nil {
			stop = failed.stop
		}
		if err := s.mendShared(ctx, stop, realm, rows, survey, repair, by, out); err != nil {
			return out, survey, false, err
		}
	}
	return out, survey, false, nil
}

// ensureRealm confirms the realm's own drift (admin permissions switched
// off, realm-wide policies that say something else) and with repair mends
// it, audited as by's, once, with no label: it is no community's.
func (s *Service) ensureRealm(ctx context.Context, realm string, repair bool, by Actor) ([]Drift, error) {
	drift, err := s.kc.EnsureRealm(ctx, realm, s.opts.RootGroup, repair)
	if err != nil {
		return nil, fmt.Errorf("check realm %s: %w", realm, err)
	}
	if repaired := slices.DeleteFunc(slices.Clone(drift), func(d Drift) bool { return !d.Repaired }); len(repaired) > 0 {
		s.audit(ctx, s.event(realm, "repair", by, "", ""), "success", fmt.Sprint(repaired))
	}
	return drift, nil
}

// mendShared adds to out the drift of survey's Shared communities (and
// with repair mends them first, audited as by's, all at once: a realm-wide policy or role
// deleted by hand leaves every community so, and mended one by one that
// was about 14 Keycloak calls each, some 140,000 at 10,000 communities).
// None is confirmed with Ensure: no create or delete passes through those
// states. Only those still active after the survey are mended, and
// reported only if still active after the mend: no community returns to
// active, so one active then was not being deleted meanwhile. Nothing is
// mended while the realm's own drift is not all mended: a realm-wide
// policy that still says something else would grant it, through every
// community's permissions. A mend that fails part-way, or that stop
// ended between its pages, is its error, after what it mended is reported
// and audited.
func (s *Service) mendShared(ctx, stop context.Context, realm string, rows []Community, survey Survey, repair bool, by Actor, out map[string][]Drift) error {
	var mended map[string][]string
	var mendErr error
	if repair && !slices.ContainsFunc(survey.Realm, func(d Drift) bool { return !d.Repaired }) {
		// Only those still active now: one being deleted since the survey
		// is left to its delete (the extension also refuses a group whose
		// marker a delete's cleanup is taking off).
		active, err := s.activeIDs(ctx, realm)
		if err != nil {
			return fmt.Errorf("mend %s: %w", realm, err)
		}
		var shared []SharedDrift
		for _, row := range rows {
			if d, ok := survey.Shared[row.ID]; ok && active[row.ID] {
				shared = append(shared, SharedDrift{Spec: s.spec(&row), Drift: d})
			}
		}
		if mended, err = s.kc.MendShared(stop, realm, s.opts.RootGroup, shared); err != nil {
			mendErr = fmt.Errorf("mend %s: %d of %d communities mended: %w", realm, len(mended), len(shared),
				fault.Upstream("Keycloak could not mend what the communities share", err))
		}
	}
	// What the mend changed is reported and audited even when the pass's
	// context ended meanwhile (`reconcile --repair` interrupted): the
	// page under way ran to its end.
	after := context.WithoutCancel(ctx)
	active, err := s.activeIDs(after, realm)
	if err != nil {
		return errors.Join(mendErr, fmt.Errorf("after the mend of %s: %w", realm, err))
	}
	for _, row := range rows {
		shared, ok := survey.Shared[row.ID]
		if !ok || !active[row.ID] {
			continue
		}
		var repaired []Drift
		for _, d := range shared {
			d.Repaired = slices.Contains(mended[row.ID], d.What)
			out[row.Label] = append(out[row.Label], d)
			if d.Repaired {
				repaired = append(repaired, d)
			}
		}
		if len(repaired) > 0 {
			s.audit(after, s.event(realm, "repair", by, row.Label, row.Name), "success", fmt.Sprint(repaired))
		}
	}
	return mendErr
}

// activeIDs are the ids of realm's active communities now.
func (s *Service) activeIDs(ctx context.Context, realm string) (map[string]bool, error) {
	rows, err := s.store.List(ctx, realm, 0, 0)
	if err != nil {
		return nil, err
	}
	active := map[string]bool{}
	for _, row := range rows {
		active[row.ID] = true
	}
	return active, nil
}

// Drift returns realm's active communities, what each lacks, and the
// realm's own drift (said once: it is no community's), read as a drift
// check reads them: 3 + ⌈N/500⌉ Keycloak calls for the realm (one or two
// more when the realm itself drifted), and Ensure's few for each community
// the survey suspects. It changes nothing; Check with repair mends one
// community. While the realm's admin permissions are off no community's
// own can be compared: RepairMany compares them once it has switched them
// on.
func (s *Service) Drift(ctx context.Context, realm string) ([]Community, map[string][]Drift, []Drift, error) {
	rows, err := s.List(ctx, realm, 0, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	// A plan needs every community's answer: any failed check fails it.
	failed := &failures{rep: &Report{Realm: realm}}
	drift, survey, _, err := s.drifted(ctx, realm, rows, false, reconciler, failed)
	if err = errors.Join(err, failed.err()); err != nil {
		return nil, nil, nil, err
	}
	return rows, drift, survey.Realm, nil
}

// RepairResult is what RepairMany did for one community.
type RepairResult struct {
	// Drift is what it lacked (the realm's drift is Repairs.Realm): what
	// is not Repaired is left to a person.
	Drift []Drift
	// Err says why its repair failed, or why there was none (it is not
	// active).
	Err error
	// NotAttempted: ctx ended before the pass reached it.
	NotAttempted bool
}

// Repairs is what RepairMany did.
type Repairs struct {
	// Realm is the realm's own drift (what is not Repaired is left to a
	// person); Err, when set, says why the pass failed before it was
	// confirmed (the survey, the realm's repair), and every active
	// community's Err says so too.
	Realm []Drift
	Err   error
	// Communities are the results by label, one for each label asked.
	Communities map[string]RepairResult
}

// RepairMany mends the realm's own drift and what realm's active
// communities of labels lack, as a drift check's repair does, audited as
// by's: the realm's drift once, what the communities share in bulk
// (MendShared), and each one the survey suspects with its own Ensure; with
// no community of labels active, the realm's drift alone. Repaired one by
// one, as apply did, each community took about 14 Keycloak calls even when
// all it lacked was the realm's (admin permissions switched off: 140,000
// calls at 10,000 communities); this takes the survey's 3 + ⌈k/500⌉ for k
// labels, a few for the realm, 1 + ⌈a/500⌉ + ⌈g/250⌉ for what they
// share (a aggregates, g owner groups) and Ensure's for each suspect.
// Once ctx ends it starts no further change, not even a page of the bulk
// mend (each runs to its end: one cut off could still commit after it was
// reported failed), and what it did not reach is NotAttempted.
func (s *Service) RepairMany(ctx context.Context, realm string, labels []string, by Actor) Repairs {
	work := context.WithoutCancel(ctx)
	out := Repairs{Communities: make(map[string]RepairResult, len(labels))}
	failAll := func(err error) Repairs {
		out.Err = err
		for _, l := range labels {
			out.Communities[l] = RepairResult{Err: err}
		}
		return out
	}
	rows, err := s.store.List(work, realm, 0, 0)
	if err != nil {
		return failAll(err)
	}
	wanted := map[string]bool{}
	for _, l := range labels {
		wanted[l] = true
	}
	rows = slices.DeleteFunc(rows, func(row Community) bool { return !wanted[row.Label] })
	for _, row := range rows {
		delete(wanted, row.Label)
	}
	for l := range wanted {
		out.Communities[l] = RepairResult{Err: fmt.Errorf("%w: %s", ErrNotFound, l)}
	}
	if len(rows) == 0 {
		// The survey finds admin permissions off in its pages of
		// communities; with none it would not look.
		out.Realm, out.Err = s.ensureRealm(work, realm, true, by)
		return out
	}
	f := &failures{rep: &Report{Realm: realm}, stop: ctx}
	drift, survey, _, err := s.drifted(work, realm, rows, true, by, f)
	if drift == nil {
		// The pass failed before it confirmed any (its survey, the
		// realm's repair).
		return failAll(err)
	}
	out.Realm = survey.Realm
	// A delete begun meanwhile took the community out of the repair.
	active, activeErr := s.activeIDs(work, realm)
	for _, row := range rows {
		d := drift[row.Label]
		whole := len(d) > 0 && !slices.ContainsFunc(d, func(d Drift) bool { return !d.Repaired })
		var r RepairResult
		switch {
		case f.of[row.Label] != nil:
			r.Err = f.of[row.Label]
		case f.left[row.Label] && f.interrupted():
			r.NotAttempted = true
		case f.left[row.Label]:
			// Keycloak or the registry could not be reached.
			r.Err = f.err()
		case err != nil && survey.Shared[row.ID] != nil && f.interrupted() && errors.Is(err, ctx.Err()) &&
			len(d) > 0 && !slices.ContainsFunc(d, func(d Drift) bool { return d.Repaired }):
			// The pipeline ended between the bulk mend's pages, before
			// any of this community's. (One mended in part fails below:
			// a change was made; so does one whose drift the registry
			// could not be read to report.)
			r.NotAttempted = true
		case err != nil && survey.Shared[row.ID] != nil && !whole:
			// The bulk mend failed.
			r.Err = err
		case activeErr != nil:
			r.Err = activeErr
		case !active[row.ID]:
			r.Err = fmt.Errorf("%w: %s is being deleted", ErrNotFound, row.Label)
		default:
			r.Drift = d
		}
		out.Communities[row.Label] = r
	}
	return out
}

// orphan reports o (and with repair removes it, if it carries this
// service's marker) unless its operation is still in flight, or confirm,
// which looks again now, finds it gone: the survey may have read it
// before a delete, whose row is gone now, removed it. What a create made
// after its undo (TraceUndone) is no one's drift but the rest of that
// undo, so it is removed in every mode.
func (s *Service) orphan(ctx context.Context, rep *Report, o Orphan, confirm func() (bool, error), repair bool) error {
	trace := TraceNone
	if o.ID != "" {
		var err error
		if trace, err = s.store.Trace(ctx, rep.Realm, label.Key(o.Label), o.ID); err != nil {
			return err
		}
		// An artefact of an operation still in flight has a row (not active).
		if trace == TraceRow {
			return nil
		}
	}
	switch still, err := confirm(); {
	case err != nil:
		return fmt.Errorf("confirm orphan %s/%s: %w", rep.Realm, o.Label, err)
	case !still:
		return nil
	}
	if trace == TraceUndone {
		// A pass that only reports must not fail on a write: what could
		// not be removed is reported as the orphan it is, and the next
		// pass tries again.
		if err := s.finishUndo(ctx, rep, o); err != nil {
			s.log.WarnContext(ctx, "could not finish the undo of a failed create; reported as an orphan", "realm", rep.Realm,
				"label", o.Label, "error", err)
			rep.Orphans = append(rep.Orphans, o)
		}
		return nil
	}
	rep.Orphans = append(rep.Orphans, o)
	if !repair || o.ID == "" {
		return nil
	}
	if _, err := s.kc.Cleanup(ctx, rep.Realm, s.opts.RootGroup, o.Label, o.ID, s.opts.FHIRClients); err != nil {
		return fmt.Errorf("remove orphan %s/%s: %w", rep.Realm, o.Label, err)
	}
	rep.OrphansRemoved++
	what := "community group without a registry row"
	if o.Artefact != "" {
		what = o.Artefact + " without a registry row or group"
	}
	s.audit(ctx, s.event(rep.Realm, "remove-orphan", reconciler, o.Label, ""), "success", what)
	return nil
}

// finishUndo removes what Keycloak made for an undone create after its
// undo: a call the create gave up waiting for, committed late.
func (s *Service) finishUndo(ctx context.Context, rep *Report, o Orphan) error {
	cr, err := s.kc.Cleanup(ctx, rep.Realm, s.opts.RootGroup, o.Label, o.ID, s.opts.FHIRClients)
	if err != nil {
		return fmt.Errorf("finish undo of %s/%s: %w", rep.Realm, o.Label, err)
	}
	rep.UndoneFinished = append(rep.UndoneFinished, o.Label)
	s.lateUndoFinished(ctx, rep.Realm, o.Label, "", cr)
	return nil
}

// stillActive reports whether row is still the active community of its
// label.
func (s *Service) stillActive(ctx context.Context, row *Community) (bool, error) {
	now, err := s.store.Get(ctx, row.Realm, row.LabelKey)
	if errors.Is(err, ErrNoRecord) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return now.ID == row.ID && now.State == StateActive, nil
}

func (s *Service) spec(row *Community) Spec {
	return Spec{ID: row.ID, Realm: row.Realm, Root: s.opts.RootGroup, Label: row.Label, Name: row.Name,
		FHIRClients: s.opts.FHIRClients}
}

// Check compares one active community's artefacts with their definition.
func (s *Service) Check(ctx context.Context, realm, l string) ([]Drift, error) {
	return s.check(ctx, realm, l, false, Actor{})
}

// Repair recreates what one active community's artefacts lack (as
// Reconcile does for all), audited as a's.
func (s *Service) Repair(ctx context.Context, realm, l string, a Actor) ([]Drift, error) {
	return s.check(ctx, realm, l, true, a)
}

func (s *Service) check(ctx context.Context, realm, l string, repair bool, by Actor) ([]Drift, error) {
	row, err := s.Get(ctx, realm, l)
	if err != nil {
		return nil, err
	}
	drift, active, err := s.ensureActive(ctx, row, repair, by)
	if err == nil && !active {
		return nil, fmt.Errorf("%w: %s is being deleted", ErrNotFound, row.Label)
	}
	return drift, err
}

// ensureActive compares row's artefacts with their definition, and with
// repair makes what is missing (audited as by's), while row is the active
// community of its label; active says whether it still was. A repair
// holds the community's lock, which a delete takes to leave the active
// state: without it, a repair that found the row active could re-make
// what a delete removed meanwhile, leaving artefacts with no row. A check
// that only reports reads the state again afterwards instead, so that a
// delete begun meanwhile is not reported as drift.
func (s *Service) ensureActive(ctx context.Context, row *Community, repair bool, by Actor) (drift []Drift, active bool, err error) {
	run := func(ctx context.Context) error {
		if active, err = s.stillActive(ctx, row); err != nil || !active {
			return err
		}
		var art Artifacts
		if drift, art, err = s.kc.Ensure(ctx, s.spec(row), repair); err != nil {
			return fault.Upstream("Keycloak could not check community "+row.Label, err)
		}
		if !repair {
			active, err = s.stillActive(ctx, row)
			return err
		}
		// Ids recorded wrong with nothing to mend (a repair whose record
		// failed) are recorded anew too: the member calls find groups by
		// them. What the check did not find as the community's (someone
		// else's group in its place) keeps its recorded id, not none.
		art = art.Or(row.Artifacts)
		if len(drift) == 0 && art == row.Artifacts {
			return nil
		}
		if err := s.store.SetArtifacts(ctx, row.ID, art); err != nil {
			return err
		}
		detail := fmt.Sprint(drift)
		if len(drift) == 0 {
			detail = "recorded the ids of its groups and roles anew"
		}
		s.audit(ctx, s.event(row.Realm, "repair", by, row.Label, row.Name), "success", detail)
		return nil
	}
	if !repair {
		err = run(ctx)
	} else {
		err = s.store.WithCommunityLock(ctx, row.ID, run)
	}
	return drift, active, err
}

// ourMarker is a group's marker if this service could have set it, else
// "": registry ids are UUIDs in their canonical form (lower case, with
// hyphens, as uuid.UUID.String writes them), so a group marked otherwise
// is someone else's, reported and left alone. uuid.Parse alone also takes
// "urn:uuid:…", "{…}" and upper case, which PostgreSQL's uuid type
// refuses in part (failing the whole pass) and which this service never
// writes.
func ourMarker(id string) string {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return ""
	}
	return id
}
