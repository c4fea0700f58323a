// Package storetest is the contract of community.Store written as tests:
// one suite that every implementation runs (memstore in the unit tests, the
// PostgreSQL registry in test/integration), so that what the domain's unit
// tests learn from the in-memory store holds for PostgreSQL too.
//
// Every subtest works in realms of its own, named after the run and the
// subtest, so the suite can share a database with other tests and its
// subtests run in parallel.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/label"
)

// AuditReader is what the suite needs of a store besides community.Store:
// the audit trail read back, oldest first, so that Audit can be checked.
// The Store interface has no reader because the service never reads it.
type AuditReader interface {
	Events() []community.AuditEvent
}

// UndoneAger is what the suite needs to check UndoneKept: an undone create
// made older, as if undone earlier, and whether the store still keeps it
// at all.
type UndoneAger interface {
	AgeUndone(id string, d time.Duration)
	HoldsUndone(id string) bool
}

// Run runs the suite; newStore returns the store a subtest works on (a new
// one, or one shared by all subtests).
func Run(t *testing.T, newStore func(t *testing.T) community.Store) {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	runID := "storetest-" + hex.EncodeToString(b[:])
	for _, c := range []struct {
		name string
		fn   func(*fixture)
	}{
		{"ReserveGet", testReserveGet},
		{"Copies", testCopies},
		{"Unique", testUnique},
		{"UniqueConcurrent", testUniqueConcurrent},
		{"Realms", testRealms},
		{"Schema", testSchema},
		{"List", testList},
		{"Search", testSearch},
		{"ByLabels", testByLabels},
		{"Transition", testTransition},
		{"TransitionConcurrent", testTransitionConcurrent},
		{"Remove", testRemove},
		{"RetiredLabels", testRetiredLabels},
		{"ClaimAbandoned", testClaimAbandoned},
		{"ClaimAbandonedConcurrent", testClaimAbandonedConcurrent},
		{"LeasesByNow", testLeasesByNow},
		{"SetArtifacts", testSetArtifacts},
		{"Trace", testTrace},
		{"Undone", testUndone},
		{"UndoneKept", testUndoneKept},
		{"Audit", testAudit},
		{"CommunityLock", testCommunityLock},
		{"CommunityLockContext", testCommunityLockContext},
		{"CommunityLockOutlivesContext", testCommunityLockOutlivesContext},
		{"CommunityLockCrowd", testCommunityLockCrowd},
		{"AsLeader", testAsLeader},
		{"CancelledContext", testCancelledContext},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(&fixture{t: t, s: newStore(t), realm: runID + "-" + c.name, ctx: context.Background()})
		})
	}
}

// fixture is one subtest's store and realm.
type fixture struct {
	t     *testing.T
	s     community.Store
	realm string
	ctx   context.Context
}

// other names another realm of the subtest's own.
func (f *fixture) other(suffix string) string { return f.realm + "-" + suffix }

// newRow builds a row of realm with every field set, not yet reserved.
func (f *fixture) newRow(realm, lbl, name, state string, lease *time.Time) *community.Community {
	n := now()
	return &community.Community{
		ID: uuid.NewString(), Realm: realm,
		Label: lbl, LabelKey: label.Key(lbl), Name: name, NameKey: label.NameKey(name),
		State:        state,
		Artifacts:    community.Artifacts{GroupID: "g-" + lbl, ReadRoleID: "r-" + lbl},
		CreatedBySub: "sub-1", CreatedByUsername: "alice", CreatedByClient: "cli",
		LeaseUntil: lease, CreatedAt: n, UpdatedAt: n,
	}
}

// reserve reserves a new row of realm, failing the test if it cannot.
func (f *fixture) reserve(realm, lbl, name, state string, lease *time.Time) *community.Community {
	f.t.Helper()
	c := f.newRow(realm, lbl, name, state, lease)
	if err := f.s.Reserve(f.ctx, c, false); err != nil {
		f.t.Fatalf("reserve %s/%s: %v", realm, lbl, err)
	}
	return c
}

// get reads the row of realm with labelKey, failing the test if there is
// none.
func (f *fixture) get(realm, labelKey string) *community.Community {
	f.t.Helper()
	c, err := f.s.Get(f.ctx, realm, labelKey)
	if err != nil {
		f.t.Fatalf("get %s/%s: %v", realm, labelKey, err)
	}
	return c
}

// gone asserts realm has no row with labelKey.
func (f *fixture) gone(realm, labelKey string) {
	f.t.Helper()
	if c, err := f.s.Get(f.ctx, realm, labelKey); !errors.Is(err, community.ErrNoRecord) {
		f.t.Errorf("get %s/%s: %+v, %v; want ErrNoRecord", realm, labelKey, c, err)
	}
}

// trace asserts what the store holds of id, asked about realm and labelKey.
func (f *fixture) trace(realm, labelKey, id string, want community.Trace) {
	f.t.Helper()
	got, err := f.s.Trace(f.ctx, realm, labelKey, id)
	if err != nil {
		f.t.Fatalf("trace %s: %v", id, err)
	}
	if got != want {
		f.t.Errorf("trace %s = %v, want %v", id, got, want)
	}
}

// unchanged asserts the stored row is still c.
func (f *fixture) unchanged(c *community.Community) {
	f.t.Helper()
	same(f.t, "stored "+c.Label, f.get(c.Realm, c.LabelKey), c)
}

// now is the time to microseconds, the precision PostgreSQL keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// in returns a pointer to now+d.
func in(d time.Duration) *time.Time {
	t := now().Add(d)
	return &t
}

// same asserts got and want are the same row, times compared as instants.
func same(t *testing.T, what string, got, want *community.Community) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	if !sameLease(got.LeaseUntil, want.LeaseUntil) {
		t.Errorf("%s: lease %s, want %s", what, fmtLease(got.LeaseUntil), fmtLease(want.LeaseUntil))
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s: created %v updated %v, want %v %v", what, got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	g, w := *got, *want
	g.LeaseUntil, w.LeaseUntil = nil, nil
	g.CreatedAt, w.CreatedAt, g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if g != w {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameLease(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func fmtLease(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// within asserts lo <= got <= hi.
func within(t *testing.T, what string, got, lo, hi time.Time) {
	t.Helper()
	if got.Before(lo) || got.After(hi) {
		t.Errorf("%s = %v, want between %v and %v", what, got, lo, hi)
	}
}

// together runs fn(0) … fn(n-1) in n goroutines released at once and
// waits for all of them.
func together(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// flipCase spells s with the case of its i-th letter flipped where bit i
// of n is set: the same key, spelt differently.
func flipCase(s string, n int) string {
	b := []byte(s)
	for i := range b {
		if n&(1<<i) == 0 {
			continue
		}
		switch c := b[i]; {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// labelsOf lists the labels of cs in order.
func labelsOf(cs []community.Community) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Label)
	}
	return out
}

func testReserveGet(f *fixture) {
	t := f.t
	// Every field comes back as it went in, in every state.
	for _, state := range []string{community.StateCreating, community.StateActive, community.StateDeleting, community.StateFailed} {
		c := f.newRow(f.realm, "In"+state, "In state "+state, state, in(time.Minute))
		c.Artifacts = community.Artifacts{GroupID: "g", OwnerGroupID: "og", AuthorGroupID: "ag", ConsumerGroupID: "cg",
			ReadRoleID: "rr", WriteRoleID: "wr"}
		c.LastError = "last error of " + state
		if err := f.s.Reserve(f.ctx, c, false); err != nil {
			t.Fatalf("reserve %s: %v", state, err)
		}
		same(t, "get "+state, f.get(f.realm, c.LabelKey), c)
	}
	// A row without a lease keeps none.
	c := f.reserve(f.realm, "Leaseless", "Without lease", community.StateActive, nil)
	if got := f.get(f.realm, "leaseless"); got.LeaseUntil != nil {
		t.Errorf("lease %s, want none", fmtLease(got.LeaseUntil))
	}
	// Get is by key, in the row's realm only.
	f.gone(f.realm, "nosuchlabel")
	f.gone(f.other("b"), c.LabelKey)
	// Timestamps the caller leaves zero are the time of the reservation.
	z := f.newRow(f.realm, "Stamped", "Stamped by the store", community.StateCreating, nil)
	z.CreatedAt, z.UpdatedAt = time.Time{}, time.Time{}
	before := now()
	if err := f.s.Reserve(f.ctx, z, false); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := f.get(f.realm, "stamped")
	within(t, "created at", got.CreatedAt, before, after)
	within(t, "updated at", got.UpdatedAt, before, after)
}

// testCopies: what goes in and what comes out are copies; changing them
// does not change the store.
func testCopies(f *fixture) {
	c := f.newRow(f.realm, "Copied", "Copied", community.StateCreating, in(time.Minute))
	want := *c
	wantLease := *c.LeaseUntil
	want.LeaseUntil = &wantLease
	if err := f.s.Reserve(f.ctx, c, false); err != nil {
		f.t.Fatal(err)
	}
	c.Name, c.Artifacts.GroupID, c.State = "changed by the caller", "changed", community.StateActive
	*c.LeaseUntil = c.LeaseUntil.Add(time.Hour)
	got := f.get(f.realm, "copied")
	same(f.t, "after changing what was reserved", got, &want)
	got.Name, got.Artifacts.GroupID, got.State = "changed by the reader", "changed", community.StateActive
	*got.LeaseUntil = got.LeaseUntil.Add(time.Hour)
	same(f.t, "after changing what was read", f.get(f.realm, "copied"), &want)

	a := f.reserve(f.realm, "Listed", "Listed", community.StateActive, nil)
	for _, read := range []func() ([]community.Community, error){
		func() ([]community.Community, error) { return f.s.List(f.ctx, f.realm, 0, 0) },
		func() ([]community.Community, error) { return f.s.ByLabels(f.ctx, f.realm, []string{"listed"}) },
	} {
		cs, err := read()
		if err != nil || len(cs) != 1 {
			f.t.Fatalf("read: %v, %v", labelsOf(cs), err)
		}
		cs[0].Name, cs[0].Artifacts.GroupID = "changed", "changed"
		f.unchanged(a)
	}

	claimed := f.reserve(f.realm, "Claimed", "Claimed", community.StateFailed, nil)
	got, err := f.s.ClaimAbandoned(f.ctx, []string{f.realm}, time.Hour)
	if err != nil || got == nil || got.ID != claimed.ID {
		f.t.Fatalf("claim: %+v, %v", got, err)
	}
	held := *got.LeaseUntil
	*got.LeaseUntil = held.Add(-2 * time.Hour)
	got.State = community.StateActive
	if stored := f.get(f.realm, "claimed"); stored.State != community.StateFailed || !sameLease(stored.LeaseUntil, &held) {
		f.t.Errorf("after changing what was claimed: %s lease %s, want failed lease %s",
			stored.State, fmtLease(stored.LeaseUntil), fmtLease(&held))
	}

	arts := community.Artifacts{GroupID: "before"}
	if err := f.s.Transition(f.ctx, a.ID, community.StateActive, community.StateActive, nil, nil, &arts, ""); err != nil {
		f.t.Fatal(err)
	}
	arts.GroupID = "after"
	if got := f.get(f.realm, "listed").Artifacts.GroupID; got != "before" {
		f.t.Errorf("artefacts after changing what Transition was given: %q, want %q", got, "before")
	}
}

func testUnique(f *fixture) {
	t := f.t
	taken := f.reserve(f.realm, "Dup", "Duplicate Name", community.StateActive, nil)
	for _, c := range []struct {
		label, name string
		want        error
	}{
		{"DUP", "Another name", community.ErrLabelTaken},
		{"dup", "Yet another name", community.ErrLabelTaken},
		{"Fresh", "duplicate name", community.ErrNameTaken},
		{"Fresher", "DUPLICATE NAME", community.ErrNameTaken},
		// A clash on both is reported as the label's.
		{"dUP", "Duplicate NAME", community.ErrLabelTaken},
	} {
		r := f.newRow(f.realm, c.label, c.name, community.StateCreating, in(time.Minute))
		if err := f.s.Reserve(f.ctx, r, false); !errors.Is(err, c.want) {
			t.Errorf("reserve %q %q: %v, want %v", c.label, c.name, err, c.want)
		}
		f.trace(r.Realm, r.LabelKey, r.ID, community.TraceNone)
	}
	f.gone(f.realm, "fresh")
	f.gone(f.realm, "fresher")
	f.unchanged(taken)

	// Rows in every other state hold their label and name too.
	for _, state := range []string{community.StateCreating, community.StateDeleting, community.StateFailed} {
		held := f.reserve(f.realm, "Held"+state, "Held by "+state, state, in(time.Minute))
		if err := f.s.Reserve(f.ctx, f.newRow(f.realm, "HELD"+state, "Free "+state, community.StateCreating, nil), false); !errors.Is(err, community.ErrLabelTaken) {
			t.Errorf("label held by a %s row: %v, want ErrLabelTaken", state, err)
		}
		if err := f.s.Reserve(f.ctx, f.newRow(f.realm, "Free"+state, "HELD BY "+state, community.StateCreating, nil), false); !errors.Is(err, community.ErrNameTaken) {
			t.Errorf("name held by a %s row: %v, want ErrNameTaken", state, err)
		}
		f.gone(f.realm, label.Key("Free"+state))
		f.unchanged(held)
	}

	// A row's id is its own: reusing it fails and changes nothing.
	clash := f.newRow(f.realm, "SameID", "Same id", community.StateCreating, nil)
	clash.ID = taken.ID
	if err := f.s.Reserve(f.ctx, clash, false); err == nil {
		t.Error("reserve with an id already used: no error")
	}
	f.gone(f.realm, "sameid")
	f.unchanged(taken)

	// Once the row is gone its label and name are free.
	if err := f.s.Remove(f.ctx, taken.ID, community.StateActive); err != nil {
		t.Fatal(err)
	}
	again := f.reserve(f.realm, "dUp", "DUPLICATE name", community.StateCreating, nil)
	same(t, "reserved again", f.get(f.realm, "dup"), again)
}

// testUniqueConcurrent: of many reserving one label (or one name) at once,
// exactly one wins.
func testUniqueConcurrent(f *fixture) {
	const n = 12
	for _, c := range []struct {
		what string
		row  func(i int) *community.Community
		want error
	}{
		{"label", func(i int) *community.Community {
			return f.newRow(f.realm, flipCase("race", i), fmt.Sprintf("Racer %d", i), community.StateCreating, in(time.Minute))
		}, community.ErrLabelTaken},
		{"name", func(i int) *community.Community {
			return f.newRow(f.realm, fmt.Sprintf("Racer%d", i), flipCase("same name", i), community.StateCreating, in(time.Minute))
		}, community.ErrNameTaken},
	} {
		errs := make([]error, n)
		together(n, func(i int) { errs[i] = f.s.Reserve(f.ctx, c.row(i), false) })
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, c.want):
				f.t.Errorf("%s racer %d: %v, want %v", c.what, i, err, c.want)
			}
		}
		if won != 1 {
			f.t.Errorf("%s: %d of %d concurrent reservations won, want exactly 1", c.what, won, n)
		}
	}
}

// testRealms: realms are independent; the same label and name live in both
// and what happens to one leaves the other alone.
func testRealms(f *fixture) {
	t := f.t
	b := f.other("b")
	ra := f.reserve(f.realm, "Shared", "Shared name", community.StateActive, nil)
	rb := f.reserve(b, "SHARED", "shared NAME", community.StateActive, nil)
	same(t, "realm a", f.get(f.realm, "shared"), ra)
	same(t, "realm b", f.get(b, "shared"), rb)
	if cs, err := f.s.List(f.ctx, f.realm, 0, 0); err != nil || len(cs) != 1 || cs[0].ID != ra.ID {
		t.Errorf("list of realm a: %v, %v", labelsOf(cs), err)
	}
	if err := f.s.Transition(f.ctx, ra.ID, community.StateActive, community.StateDeleting, nil, in(time.Minute), nil, ""); err != nil {
		t.Fatal(err)
	}
	f.unchanged(rb)
	if err := f.s.Remove(f.ctx, ra.ID, community.StateDeleting); err != nil {
		t.Fatal(err)
	}
	f.unchanged(rb)
	f.gone(f.realm, "shared")
}

// testSchema: what the registry's schema refuses (ids that are not UUIDs,
// states outside the four) every store refuses, changing nothing; a UUID
// is the same id however it is spelt.
func testSchema(f *fixture) {
	t := f.t
	bad := f.newRow(f.realm, "BadID", "Bad id", community.StateCreating, nil)
	bad.ID = "not-a-uuid"
	if err := f.s.Reserve(f.ctx, bad, false); err == nil {
		t.Error("reserve with an id that is not a UUID: no error")
	}
	f.gone(f.realm, "badid")
	if _, err := f.s.Trace(f.ctx, f.realm, "badid", "not-a-uuid"); err == nil {
		t.Error("trace with an id that is not a UUID: no error")
	}

	odd := f.newRow(f.realm, "OddState", "Odd state", "pending", nil)
	if err := f.s.Reserve(f.ctx, odd, false); err == nil {
		t.Error("reserve in state pending: no error")
	}
	f.gone(f.realm, "oddstate")

	c := f.reserve(f.realm, "Upper", "Upper-case id", community.StateCreating, in(time.Minute))
	if err := f.s.Transition(f.ctx, c.ID, community.StateCreating, "pending", nil, nil, nil, ""); err == nil {
		t.Error("transition to state pending: no error")
	}
	f.unchanged(c)

	u := f.newRow(f.realm, "Spelt", "Spelt in capitals", community.StateCreating, nil)
	u.ID = strings.ToUpper(u.ID)
	if err := f.s.Reserve(f.ctx, u, false); err != nil {
		t.Fatal(err)
	}
	if got := f.get(f.realm, "spelt").ID; got != strings.ToLower(u.ID) {
		t.Errorf("id %q, want %q", got, strings.ToLower(u.ID))
	}
	f.trace(f.realm, "spelt", strings.ToLower(u.ID), community.TraceRow)
	f.trace(f.realm, "spelt", u.ID, community.TraceRow)
}

// testList: active rows only, of the realm only, by label key, paged.
func testList(f *fixture) {
	t := f.t
	// Keys are letters and digits only, which sort alike in every collation.
	byLabel := map[string]*community.Community{}
	for _, l := range []string{"Delta", "charlie10", "alpha", "Foxtrot", "Charlie2", "BRAVO", "echo"} {
		byLabel[l] = f.reserve(f.realm, l, "Name of "+l, community.StateActive, nil)
	}
	want := []string{"alpha", "BRAVO", "charlie10", "Charlie2", "Delta", "echo", "Foxtrot"}
	f.reserve(f.realm, "Aa", "In creation", community.StateCreating, in(time.Minute))
	f.reserve(f.realm, "Ab", "Being deleted", community.StateDeleting, in(time.Minute))
	f.reserve(f.realm, "Ac", "Failed", community.StateFailed, nil)
	f.reserve(f.other("b"), "Aardvark", "In another realm", community.StateActive, nil)

	for _, limit := range []int{0, -1, 100} {
		all, err := f.s.List(f.ctx, f.realm, 0, limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := labelsOf(all); !slices.Equal(got, want) {
			t.Errorf("list max %d: %v, want %v", limit, got, want)
			continue
		}
		for i := range all {
			same(t, "listed "+all[i].Label, &all[i], byLabel[all[i].Label])
		}
	}
	for _, p := range []struct {
		first, max int
		want       []string
	}{
		{0, 1, want[0:1]},
		{1, 1, want[1:2]},
		{0, 3, want[0:3]},
		{3, 3, want[3:6]},
		{6, 3, want[6:]},
		{7, 3, nil},
		{2, 0, want[2:]},
		{5, -1, want[5:]},
		{100, 0, nil},
	} {
		page, err := f.s.List(f.ctx, f.realm, p.first, p.max)
		if err != nil {
			t.Fatal(err)
		}
		if got := labelsOf(page); !slices.Equal(got, p.want) {
			t.Errorf("list first %d max %d: %v, want %v", p.first, p.max, got, p.want)
		}
	}
	if cs, err := f.s.List(f.ctx, f.other("empty"), 0, 0); err != nil || len(cs) != 0 {
		t.Errorf("list of a realm without communities: %v, %v", labelsOf(cs), err)
	}
}

// testSearch: List of the rows whose label key or name key contains the
// key given, matched as text (no character is a pattern).
func testSearch(f *fixture) {
	t := f.t
	for _, c := range [][2]string{
		{"NDD", "National data dictionary"},
		{"SNOMED", "SNOMED CT"},
		{"Pct", "100% coverage"},
		{"Under_1", "Snake case"},
		{"Dict", "Dictionaries of Wales"},
		{"Other", "Ünïcode name"},
	} {
		f.reserve(f.realm, c[0], c[1], community.StateActive, nil)
	}
	f.reserve(f.realm, "DictNew", "Dictionary in creation", community.StateCreating, in(time.Minute))
	f.reserve(f.other("s"), "DictElse", "Dictionary of another realm", community.StateActive, nil)
	for _, c := range []struct {
		key        string
		first, max int
		want       []string
	}{
		{"dict", 0, 0, []string{"Dict", "NDD"}}, // label of one, name of both
		{"dict", 1, 0, []string{"NDD"}},         // paged like List
		{"dict", 0, 1, []string{"Dict"}},        //
		{"snomed ct", 0, 0, []string{"SNOMED"}}, // a space is text
		{"%", 0, 0, []string{"Pct"}},            // not a pattern
		{"_", 0, 0, []string{"Under_1"}},        // nor this
		{`\`, 0, 0, nil},                        // nor an escape
		{"ünï", 0, 0, []string{"Other"}},        // folded keys, any script
		{"zzz", 0, 0, nil},                      //
		{"", 0, 0, []string{"Dict", "NDD", "Other", "Pct", "SNOMED", "Under_1"}},
	} {
		got, err := f.s.Search(f.ctx, f.realm, c.key, c.first, c.max)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(labelsOf(got), c.want) {
			t.Errorf("search %q first %d max %d: %v, want %v", c.key, c.first, c.max, labelsOf(got), c.want)
		}
	}
}

// testByLabels: the active rows of the realm among the keys, by label key.
func testByLabels(f *fixture) {
	t := f.t
	kilo := f.reserve(f.realm, "Kilo", "Kilo", community.StateActive, nil)
	lima := f.reserve(f.realm, "lima", "Lima", community.StateActive, nil)
	mike := f.reserve(f.realm, "MIKE", "Mike", community.StateActive, nil)
	f.reserve(f.realm, "November", "November", community.StateCreating, in(time.Minute))
	f.reserve(f.realm, "Oscar", "Oscar", community.StateFailed, nil)
	f.reserve(f.other("b"), "Kilo", "Kilo elsewhere", community.StateActive, nil)
	f.reserve(f.other("b"), "Papa", "Papa elsewhere", community.StateActive, nil)

	got, err := f.s.ByLabels(f.ctx, f.realm, []string{"mike", "november", "kilo", "oscar", "papa", "zulu", "kilo"})
	if err != nil {
		t.Fatal(err)
	}
	if l := labelsOf(got); !slices.Equal(l, []string{"Kilo", "MIKE"}) {
		t.Fatalf("by labels: %v, want [Kilo MIKE]", l)
	}
	same(t, "kilo", &got[0], kilo)
	same(t, "mike", &got[1], mike)
	if got, err := f.s.ByLabels(f.ctx, f.realm, []string{"lima"}); err != nil || len(got) != 1 {
		t.Errorf("by label lima: %v, %v", labelsOf(got), err)
	} else {
		same(t, "lima", &got[0], lima)
	}
	for _, keys := range [][]string{nil, {}, {"zulu"}} {
		if got, err := f.s.ByLabels(f.ctx, f.realm, keys); err != nil || len(got) != 0 {
			t.Errorf("by labels %v: %v, %v", keys, labelsOf(got), err)
		}
	}
}

func testTransition(f *fixture) {
	t := f.t
	lease := in(time.Minute)
	c := f.reserve(f.realm, "Moving", "Moving", community.StateCreating, lease)
	arts := community.Artifacts{GroupID: "g", OwnerGroupID: "og", ReadRoleID: "rr", WriteRoleID: "wr"}
	refused := func(what string, id, from string, expect *time.Time) {
		t.Helper()
		if err := f.s.Transition(f.ctx, id, from, community.StateActive, expect, nil, &arts, ""); !errors.Is(err, community.ErrStateChanged) {
			t.Errorf("%s: %v, want ErrStateChanged", what, err)
		}
		f.unchanged(c)
	}
	refused("from a state the row is not in", c.ID, community.StateDeleting, nil)
	refused("expecting another lease", c.ID, community.StateCreating, in(2*time.Minute))
	refused("expecting a lease a microsecond off", c.ID, community.StateCreating, ptr(lease.Add(time.Microsecond)))
	refused("an unknown id", uuid.NewString(), community.StateCreating, nil)

	// Expecting the lease the row holds: moved, lease cleared, artefacts
	// and last error set.
	before := now()
	if err := f.s.Transition(f.ctx, c.ID, community.StateCreating, community.StateActive, ptr(*lease), nil, &arts, ""); err != nil {
		t.Fatalf("transition expecting the row's lease: %v", err)
	}
	got := f.get(f.realm, "moving")
	within(t, "updated at", got.UpdatedAt, before, time.Now())
	want := *c
	want.State, want.LeaseUntil, want.Artifacts, want.LastError, want.UpdatedAt = community.StateActive, nil, arts, "", got.UpdatedAt
	same(t, "activated", got, &want)

	// Without expect the lease is not looked at; nil artefacts keep them.
	next := in(2 * time.Minute)
	if err := f.s.Transition(f.ctx, c.ID, community.StateActive, community.StateDeleting, nil, next, nil, "keycloak down"); err != nil {
		t.Fatal(err)
	}
	got = f.get(f.realm, "moving")
	want.State, want.LeaseUntil, want.LastError, want.UpdatedAt = community.StateDeleting, next, "keycloak down", got.UpdatedAt
	same(t, "deleting", got, &want)

	// A move to the same state renews the lease; the lease as read back
	// is the one to expect.
	renewed := in(3 * time.Minute)
	if err := f.s.Transition(f.ctx, c.ID, community.StateDeleting, community.StateDeleting, got.LeaseUntil, renewed, nil, ""); err != nil {
		t.Fatalf("transition expecting the lease read back: %v", err)
	}
	got = f.get(f.realm, "moving")
	want.LeaseUntil, want.LastError, want.UpdatedAt = renewed, "", got.UpdatedAt
	same(t, "renewed", got, &want)
	// The lease it had is no longer the one to expect.
	if err := f.s.Transition(f.ctx, c.ID, community.StateDeleting, community.StateFailed, next, nil, nil, ""); !errors.Is(err, community.ErrStateChanged) {
		t.Errorf("expecting the lease before renewal: %v, want ErrStateChanged", err)
	}
	f.unchanged(&want)

	// A row without a lease never matches an expected one.
	bare := f.reserve(f.realm, "Bare", "Bare", community.StateFailed, nil)
	if err := f.s.Transition(f.ctx, bare.ID, community.StateFailed, community.StateDeleting, in(0), nil, nil, ""); !errors.Is(err, community.ErrStateChanged) {
		t.Errorf("expecting a lease of a row without one: %v, want ErrStateChanged", err)
	}
	f.unchanged(bare)
}

// testTransitionConcurrent: of many moving one row from the same state at
// once, exactly one does.
func testTransitionConcurrent(f *fixture) {
	const n = 12
	lease := in(time.Minute)
	c := f.reserve(f.realm, "Contested", "Contested", community.StateCreating, lease)
	errs := make([]error, n)
	together(n, func(i int) {
		a := community.Artifacts{GroupID: fmt.Sprint(i)}
		errs[i] = f.s.Transition(f.ctx, c.ID, community.StateCreating, community.StateActive, lease, nil, &a, "")
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			f.t.Errorf("transitions %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, community.ErrStateChanged):
			f.t.Errorf("transition %d: %v, want ErrStateChanged", i, err)
		}
	}
	if winner < 0 {
		f.t.Fatal("no transition succeeded")
	}
	if got := f.get(f.realm, "contested"); got.State != community.StateActive || got.Artifacts.GroupID != fmt.Sprint(winner) {
		f.t.Errorf("stored %s with artefacts %+v, want active with the winner's (%d)", got.State, got.Artifacts, winner)
	}
}

func testRemove(f *fixture) {
	t := f.t
	c := f.reserve(f.realm, "Going", "Going", community.StateDeleting, in(time.Minute))
	if err := f.s.Remove(f.ctx, c.ID, community.StateActive); !errors.Is(err, community.ErrStateChanged) {
		t.Errorf("remove from a state the row is not in: %v, want ErrStateChanged", err)
	}
	f.unchanged(c)
	if err := f.s.Remove(f.ctx, c.ID, community.StateDeleting); err != nil {
		t.Fatal(err)
	}
	f.gone(f.realm, "going")
	f.trace(c.Realm, c.LabelKey, c.ID, community.TraceNone)
	if err := f.s.Remove(f.ctx, c.ID, community.StateDeleting); !errors.Is(err, community.ErrStateChanged) {
		t.Errorf("remove again: %v, want ErrStateChanged", err)
	}
	if err := f.s.Remove(f.ctx, uuid.NewString(), community.StateCreating); !errors.Is(err, community.ErrStateChanged) {
		t.Errorf("remove an unknown id: %v, want ErrStateChanged", err)
	}

	// Of many removing one row at once, exactly one does.
	const n = 8
	d := f.reserve(f.realm, "Raced", "Raced", community.StateFailed, nil)
	errs := make([]error, n)
	together(n, func(i int) { errs[i] = f.s.Remove(f.ctx, d.ID, community.StateFailed) })
	removed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			removed++
		case !errors.Is(err, community.ErrStateChanged):
			t.Errorf("remove %d: %v, want ErrStateChanged", i, err)
		}
	}
	if removed != 1 {
		t.Errorf("%d of %d concurrent removals succeeded, want exactly 1", removed, n)
	}
	f.trace(d.Realm, d.LabelKey, d.ID, community.TraceUndone)
}

// testRetiredLabels: removing a delete retires its label in the realm,
// whatever its case; Reserve then refuses it, inserting nothing, unless
// reuse is asked. Names, undone creates and other realms are not retired.
func testRetiredLabels(f *fixture) {
	t := f.t
	gone := f.reserve(f.realm, "Gone", "Gone for good", community.StateDeleting, in(time.Minute))
	undone := f.reserve(f.realm, "Undone", "Never made", community.StateCreating, in(time.Minute))
	for _, c := range []*community.Community{gone, undone} {
		if err := f.s.Remove(f.ctx, c.ID, c.State); err != nil {
			t.Fatal(err)
		}
	}
	again := f.newRow(f.realm, "GONE", "Another", community.StateCreating, in(time.Minute))
	if err := f.s.Reserve(f.ctx, again, false); !errors.Is(err, community.ErrLabelRetired) {
		t.Fatalf("reserve a deleted community's label: %v, want ErrLabelRetired", err)
	}
	f.gone(f.realm, "gone")
	// The label clash comes first: a live community's label is taken.
	live := f.reserve(f.realm, "Live", "Live", community.StateActive, nil)
	if err := f.s.Reserve(f.ctx, f.newRow(f.realm, "live", "Live again", community.StateCreating, nil), false); !errors.Is(err, community.ErrLabelTaken) {
		t.Errorf("reserve a live label: %v, want ErrLabelTaken", err)
	}
	f.unchanged(live)
	f.reserve(f.realm, "Undone", "Never made", community.StateCreating, nil)
	f.reserve(f.other("b"), "Gone", "Gone for good", community.StateCreating, nil)
	f.reserve(f.realm, "Fresh", "Gone for good", community.StateCreating, nil)
	if err := f.s.Reserve(f.ctx, again, true); err != nil {
		t.Fatalf("reserve a deleted community's label, reuse asked: %v", err)
	}
	// Still retired once reused: a second taker is refused.
	if err := f.s.Remove(f.ctx, again.ID, community.StateCreating); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Reserve(f.ctx, f.newRow(f.realm, "gone", "Third", community.StateCreating, nil), false); !errors.Is(err, community.ErrLabelRetired) {
		t.Errorf("reserve after a reuse was undone: %v, want ErrLabelRetired", err)
	}
}

func testClaimAbandoned(f *fixture) {
	t := f.t
	ago := func(d time.Duration) *time.Time { return in(-d) }
	// Never claimed: active rows whatever their lease, rows whose lease
	// still runs, rows of realms not asked for.
	keep := []*community.Community{
		f.reserve(f.realm, "ActiveBare", "Active without lease", community.StateActive, nil),
		f.reserve(f.realm, "ActiveOld", "Active with an old lease", community.StateActive, ago(time.Hour)),
		f.reserve(f.realm, "Busy", "In progress", community.StateCreating, in(time.Hour)),
	}
	elsewhere := f.reserve(f.other("b"), "Elsewhere", "Elsewhere", community.StateFailed, ago(3*time.Hour))
	// Claimed in this order: no lease first, then the oldest lease.
	order := []*community.Community{
		f.reserve(f.realm, "Bare", "Failed without lease", community.StateFailed, nil),
		f.reserve(f.realm, "Oldest", "Deleting, lease two hours gone", community.StateDeleting, ago(2*time.Hour)),
		f.reserve(f.realm, "Old", "Creating, lease an hour gone", community.StateCreating, ago(time.Hour)),
	}
	const lease = 10 * time.Minute
	for _, w := range order {
		before := now()
		got, err := f.s.ClaimAbandoned(f.ctx, []string{f.realm}, lease)
		after := time.Now()
		if err != nil || got == nil {
			t.Fatalf("claim, want %s: %+v, %v", w.Label, got, err)
		}
		if got.ID != w.ID {
			t.Fatalf("claimed %s, want %s", got.Label, w.Label)
		}
		if got.LeaseUntil == nil {
			t.Fatalf("claimed %s without a lease", got.Label)
		}
		within(t, "lease of claimed "+got.Label, *got.LeaseUntil, before.Add(lease), after.Add(lease))
		want := *w
		want.LeaseUntil, want.UpdatedAt = got.LeaseUntil, got.UpdatedAt
		same(t, "claimed", got, &want)
		same(t, "stored after claim", f.get(f.realm, w.LabelKey), &want)
	}
	// Each was claimed once: their leases now run.
	if got, err := f.s.ClaimAbandoned(f.ctx, []string{f.realm}, lease); err != nil || got != nil {
		t.Errorf("claim when none is left: %+v, %v; want nil, nil", got, err)
	}
	for _, c := range keep {
		f.unchanged(c)
	}
	f.unchanged(elsewhere)
	for _, realms := range [][]string{nil, {}, {f.other("none")}} {
		if got, err := f.s.ClaimAbandoned(f.ctx, realms, lease); err != nil || got != nil {
			t.Errorf("claim in realms %v: %+v, %v; want nil, nil", realms, got, err)
		}
	}
	if got, err := f.s.ClaimAbandoned(f.ctx, []string{f.other("none"), f.other("b")}, lease); err != nil || got == nil || got.ID != elsewhere.ID {
		t.Errorf("claim in realm b: %+v, %v; want %s", got, err, elsewhere.Label)
	}

	// When a claim's lease runs out the row is abandoned again. The wait is
	// for that lease to pass, not a timing assertion.
	c := f.reserve(f.other("c"), "Again", "Claimed again", community.StateFailed, ago(time.Minute))
	first, err := f.s.ClaimAbandoned(f.ctx, []string{f.other("c")}, time.Millisecond)
	if err != nil || first == nil || first.ID != c.ID {
		t.Fatalf("first claim: %+v, %v", first, err)
	}
	for time.Until(*first.LeaseUntil) >= 0 {
		time.Sleep(time.Until(*first.LeaseUntil) + time.Millisecond)
	}
	second, err := f.s.ClaimAbandoned(f.ctx, []string{f.other("c")}, time.Hour)
	if err != nil || second == nil || second.ID != c.ID {
		t.Fatalf("claim after the lease ran out: %+v, %v", second, err)
	}
	if !second.LeaseUntil.After(*first.LeaseUntil) {
		t.Errorf("second claim's lease %s, want after the first's %s", fmtLease(second.LeaseUntil), fmtLease(first.LeaseUntil))
	}
}

// testLeasesByNow: the store's Now is the clock its leases are compared
// and written by, so replicas that write leases from Now agree on them
// whatever their own clocks say.
func testLeasesByNow(f *fixture) {
	t := f.t
	clock := func() time.Time {
		t.Helper()
		n, err := f.s.Now(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	realm := f.other("now")
	n := clock()
	running := n.Add(time.Minute)
	f.reserve(realm, "Running", "Lease a minute past Now", community.StateCreating, &running)
	ran := n.Add(-time.Millisecond)
	out := f.reserve(realm, "RanOut", "Lease just before Now", community.StateCreating, &ran)
	const lease = 10 * time.Minute
	before := clock()
	got, err := f.s.ClaimAbandoned(f.ctx, []string{realm}, lease)
	after := clock()
	if err != nil || got == nil || got.ID != out.ID {
		t.Fatalf("claim: %+v, %v; want %s alone", got, err, out.Label)
	}
	within(t, "lease of the claim", *got.LeaseUntil, before.Add(lease), after.Add(lease))
	if got, err := f.s.ClaimAbandoned(f.ctx, []string{realm}, lease); err != nil || got != nil {
		t.Errorf("a lease a minute past Now was claimed: %+v, %v", got, err)
	}
}

// testClaimAbandonedConcurrent: claimants racing for abandoned rows each
// get a different one; every row is claimed exactly once.
func testClaimAbandonedConcurrent(f *fixture) {
	t := f.t
	const n = 16
	one := f.reserve(f.realm, "Contested", "Contested", community.StateFailed, in(-time.Minute))
	got := make([]*community.Community, n)
	errs := make([]error, n)
	together(n, func(i int) { got[i], errs[i] = f.s.ClaimAbandoned(f.ctx, []string{f.realm}, time.Hour) })
	claimed := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("claimant %d: %v", i, errs[i])
		}
		if got[i] != nil {
			claimed++
			if got[i].ID != one.ID {
				t.Errorf("claimant %d got %s", i, got[i].Label)
			}
		}
	}
	if claimed != 1 {
		t.Errorf("%d of %d claimants got the one abandoned row, want exactly 1", claimed, n)
	}

	// Draining many rows with many claimants.
	drain := f.other("drain")
	const rows, claimants = 12, 6
	states := []string{community.StateCreating, community.StateDeleting, community.StateFailed}
	want := map[string]bool{}
	for i := range rows {
		var l *time.Time
		if i%4 != 0 {
			l = in(-time.Duration(i) * time.Minute)
		}
		want[f.reserve(drain, fmt.Sprintf("Left%d", i), fmt.Sprintf("Left %d", i), states[i%len(states)], l).ID] = true
	}
	var mu sync.Mutex
	seen := map[string]int{}
	claims := 0
	together(claimants, func(i int) {
		for {
			c, err := f.s.ClaimAbandoned(f.ctx, []string{drain}, time.Hour)
			if err != nil {
				t.Errorf("claimant %d: %v", i, err)
				return
			}
			if c == nil {
				return
			}
			mu.Lock()
			seen[c.ID]++
			claims++
			enough := claims > rows // a store claiming rows again would never end
			mu.Unlock()
			if enough {
				return
			}
		}
	})
	for id, times := range seen {
		if !want[id] || times != 1 {
			t.Errorf("row %s claimed %d times (one of the abandoned: %v)", id, times, want[id])
		}
	}
	if len(seen) != rows {
		t.Errorf("%d of %d abandoned rows claimed", len(seen), rows)
	}
}

// testSetArtifacts: artefacts of active rows are replaced; other rows are
// left as they are, without error (a reconciler racing a delete is not a
// failure of the reconciler).
func testSetArtifacts(f *fixture) {
	t := f.t
	a := f.reserve(f.realm, "Repaired", "Repaired", community.StateActive, nil)
	arts := community.Artifacts{GroupID: "new", OwnerGroupID: "new-owner"}
	before := now()
	if err := f.s.SetArtifacts(f.ctx, a.ID, arts); err != nil {
		t.Fatal(err)
	}
	got := f.get(f.realm, "repaired")
	within(t, "updated at", got.UpdatedAt, before, time.Now())
	want := *a
	want.Artifacts, want.UpdatedAt = arts, got.UpdatedAt // replaced, not merged: ReadRoleID is gone
	same(t, "repaired", got, &want)

	for _, state := range []string{community.StateCreating, community.StateDeleting, community.StateFailed} {
		c := f.reserve(f.realm, "Not"+state, "Not active: "+state, state, in(time.Minute))
		if err := f.s.SetArtifacts(f.ctx, c.ID, arts); err != nil {
			t.Errorf("set artefacts of a %s row: %v", state, err)
		}
		f.unchanged(c)
	}
	id := uuid.NewString()
	if err := f.s.SetArtifacts(f.ctx, id, arts); err != nil {
		t.Errorf("set artefacts of an unknown id: %v", err)
	}
	f.trace(f.realm, "x", id, community.TraceNone)
}

// testTrace: a row in any state is a row; once removed, a create's id
// (creating or failed: an undone create) is remembered as undone, for its
// realm and label only, and a delete's or an active row's is not.
func testTrace(f *fixture) {
	for state, after := range map[string]community.Trace{
		community.StateCreating: community.TraceUndone,
		community.StateFailed:   community.TraceUndone,
		community.StateActive:   community.TraceNone,
		community.StateDeleting: community.TraceNone,
	} {
		c := f.reserve(f.realm, "Is"+state, "Is "+state, state, nil)
		f.trace(c.Realm, c.LabelKey, c.ID, community.TraceRow)
		f.trace(f.other("x"), "elsewhere", c.ID, community.TraceRow)
		if err := f.s.Remove(f.ctx, c.ID, state); err != nil {
			f.t.Fatal(err)
		}
		f.trace(c.Realm, c.LabelKey, c.ID, after)
		f.trace(c.Realm, c.LabelKey, strings.ToUpper(c.ID), after)
		// Only as the same realm's same label.
		f.trace(f.other("x"), c.LabelKey, c.ID, community.TraceNone)
		f.trace(c.Realm, "other", c.ID, community.TraceNone)
		// Its label is free again (a deleted community's to reuse when
		// asked), and a new row's id is its own.
		again := f.newRow(f.realm, "Is"+state, "Is "+state, community.StateCreating, nil)
		if err := f.s.Reserve(f.ctx, again, true); err != nil {
			f.t.Fatal(err)
		}
		f.trace(again.Realm, again.LabelKey, again.ID, community.TraceRow)
		f.trace(c.Realm, c.LabelKey, c.ID, after)
	}
	f.trace(f.realm, "x", uuid.NewString(), community.TraceNone)
}

// testUndone: the undone creates of a realm's label, newest first and at
// most MaxUndoneAsked; not a removed active row, nor another realm's or
// label's.
func testUndone(f *fixture) {
	undo := func(realm, lbl, state string) string {
		f.t.Helper()
		c := f.reserve(realm, lbl, lbl+" name", state, nil)
		if err := f.s.Remove(f.ctx, c.ID, state); err != nil {
			f.t.Fatal(err)
		}
		return c.ID
	}
	undone := func(realm, labelKey string, want ...string) {
		f.t.Helper()
		got, err := f.s.Undone(f.ctx, realm, labelKey)
		if err != nil {
			f.t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			f.t.Errorf("undone creates of %s/%s = %v, want %v", realm, labelKey, got, want)
		}
	}
	undone(f.realm, "again")
	var ids []string
	for i := range community.MaxUndoneAsked + 2 {
		state := community.StateCreating
		if i%2 == 1 {
			state = community.StateFailed
		}
		ids = append(ids, undo(f.realm, "Again", state))
	}
	undo(f.realm, "Again", community.StateActive)
	elsewhere := undo(f.other("x"), "AGAIN", community.StateCreating)
	undo(f.realm, "Other", community.StateCreating)
	slices.Reverse(ids)
	undone(f.realm, "again", ids[:community.MaxUndoneAsked]...)
	undone(f.other("x"), "again", elsewhere)
	undone(f.realm, "nothing")
}

// testUndoneKept: an undone create is kept for UndoneKept, then forgotten,
// and the next removal of a create drops it.
func testUndoneKept(f *fixture) {
	ager, ok := f.s.(UndoneAger)
	if !ok {
		f.t.Fatalf("%T has no AgeUndone and HoldsUndone; the suite ages undone creates through them", f.s)
	}
	undo := func(lbl string) *community.Community {
		f.t.Helper()
		c := f.reserve(f.realm, lbl, lbl+" name", community.StateCreating, nil)
		if err := f.s.Remove(f.ctx, c.ID, community.StateCreating); err != nil {
			f.t.Fatal(err)
		}
		return c
	}
	undone := func(c *community.Community, want bool) {
		f.t.Helper()
		ids, err := f.s.Undone(f.ctx, c.Realm, c.LabelKey)
		if err != nil {
			f.t.Fatal(err)
		}
		if slices.Contains(ids, c.ID) != want {
			f.t.Errorf("undone creates of %s = %v; want %s there: %v", c.Label, ids, c.ID, want)
		}
	}
	old := undo("Old")
	ager.AgeUndone(old.ID, community.UndoneKept-time.Minute)
	f.trace(old.Realm, old.LabelKey, old.ID, community.TraceUndone)
	undone(old, true)
	ager.AgeUndone(old.ID, 2*time.Minute)
	f.trace(old.Realm, old.LabelKey, old.ID, community.TraceNone)
	undone(old, false)
	fresh := undo("Fresh")
	if ager.HoldsUndone(old.ID) {
		f.t.Errorf("undone create %s, older than UndoneKept, kept after the next removal", old.ID)
	}
	if !ager.HoldsUndone(fresh.ID) {
		f.t.Errorf("undone create %s dropped at once", fresh.ID)
	}
	f.trace(fresh.Realm, fresh.LabelKey, fresh.ID, community.TraceUndone)
}

// testAudit: events are kept in order, every field as given, with the time
// of writing when the caller gave none.
func testAudit(f *fixture) {
	t := f.t
	r, ok := f.s.(AuditReader)
	if !ok {
		t.Fatalf("%T has no Events() []community.AuditEvent; the suite reads the audit trail through it", f.s)
	}
	trail := func() []community.AuditEvent {
		var out []community.AuditEvent
		for _, e := range r.Events() {
			if e.Realm == f.realm {
				out = append(out, e)
			}
		}
		return out
	}
	at := now().Add(-time.Hour)
	full := community.AuditEvent{At: at, Realm: f.realm, Action: "create", Label: "Audited", Name: "Audited community",
		ActorSub: "sub-1", ActorClient: "cli", ActorUsername: "alice", Outcome: "success", Detail: "owners [sub-1]",
		RequestID: "req-1", Claims: community.Claims{"requesting_system": "sys", "reason_for_request": "care"}}
	given := full
	given.Claims = maps.Clone(full.Claims)
	if err := f.s.Audit(f.ctx, &given); err != nil {
		t.Fatal(err)
	}
	given.Claims["requesting_system"] = "changed after the write"
	bare := community.AuditEvent{Realm: f.realm, Action: "delete", Label: "Audited", Outcome: "denied"}
	before := now()
	if err := f.s.Audit(f.ctx, &bare); err != nil {
		t.Fatal(err)
	}
	after := time.Now()

	got := trail()
	if len(got) != 2 {
		t.Fatalf("trail: %d events, want 2: %+v", len(got), got)
	}
	if !got[0].At.Equal(at) {
		t.Errorf("at %v, want %v as given", got[0].At, at)
	}
	if !maps.Equal(got[0].Claims, full.Claims) {
		t.Errorf("claims %v, want %v", got[0].Claims, full.Claims)
	}
	g, w := got[0], full
	g.At, g.Claims, w.At, w.Claims = time.Time{}, nil, time.Time{}, nil
	if !equalEvents(g, w) {
		t.Errorf("event:\n got %+v\nwant %+v", g, w)
	}
	within(t, "time of an event given none", got[1].At, before, after)
	if len(got[1].Claims) != 0 {
		t.Errorf("claims of an event given none: %v", got[1].Claims)
	}
	g, w = got[1], bare
	g.At, g.Claims, w.At, w.Claims = time.Time{}, nil, time.Time{}, nil
	if !equalEvents(g, w) {
		t.Errorf("event:\n got %+v\nwant %+v", g, w)
	}

	// Events written at once are all kept.
	const n = 16
	errs := make([]error, n)
	together(n, func(i int) {
		errs[i] = f.s.Audit(f.ctx, &community.AuditEvent{Realm: f.realm, Action: "burst", Label: "Audited",
			Outcome: "success", Detail: fmt.Sprint(i)})
	})
	details := map[string]bool{}
	for _, e := range trail() {
		if e.Action == "burst" {
			details[e.Detail] = true
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("audit %d: %v", i, err)
		}
		if !details[fmt.Sprint(i)] {
			t.Errorf("event %d of the burst is not in the trail", i)
		}
	}
}

func equalEvents(a, b community.AuditEvent) bool {
	return a.At.Equal(b.At) && a.Realm == b.Realm && a.Action == b.Action && a.Label == b.Label && a.Name == b.Name &&
		a.ActorSub == b.ActorSub && a.ActorClient == b.ActorClient && a.ActorUsername == b.ActorUsername &&
		a.Outcome == b.Outcome && a.Detail == b.Detail && a.RequestID == b.RequestID && maps.Equal(a.Claims, b.Claims)
}

// testCommunityLock: holders of one community's lock never overlap; other
// communities' locks are independent; fn's error comes back and frees the
// lock.
func testCommunityLock(f *fixture) {
	t := f.t
	id := uuid.NewString()
	const goroutines, rounds = 8, 5
	var inside, overlaps, runs atomic.Int32
	errs := make([]error, goroutines)
	together(goroutines, func(i int) {
		for range rounds {
			err := f.s.WithCommunityLock(f.ctx, id, func(ctx context.Context) error {
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				// Stay a moment so an overlap, were there one, is seen.
				runtime.Gosched()
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				runs.Add(1)
				return ctx.Err()
			})
			if err != nil {
				errs[i] = err
				return
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	if overlaps.Load() != 0 {
		t.Errorf("%d times a holder of the lock found another inside", overlaps.Load())
	}
	if runs.Load() != goroutines*rounds {
		t.Errorf("%d runs, want %d", runs.Load(), goroutines*rounds)
	}

	// While one community's lock is held, another's is free.
	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- f.s.WithCommunityLock(f.ctx, id, func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	ran := false
	err := f.s.WithCommunityLock(ctx, uuid.NewString(), func(context.Context) error { ran = true; return nil })
	cancel()
	if err != nil || !ran {
		t.Errorf("another community's lock while one is held: ran %v, %v", ran, err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Error(err)
	}

	// fn's error comes back, and the lock is free after it.
	failure := errors.New("fn failed")
	if err := f.s.WithCommunityLock(f.ctx, id, func(context.Context) error { return failure }); !errors.Is(err, failure) {
		t.Errorf("lock whose fn failed: %v, want %v", err, failure)
	}
	ctx, cancel = context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	ran = false
	if err := f.s.WithCommunityLock(ctx, id, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("lock after a failed fn: ran %v, %v", ran, err)
	}
}

// testCommunityLockCrowd: more callers of two communities' locks than
// a store has connections, each fn using the store as the sagas do, all
// get through (PostgreSQL's store once gave each waiter a connection of
// its pool of 20, and a holder's fn then waited for a free one until its
// context ended).
func testCommunityLockCrowd(f *fixture) {
	t := f.t
	ids := []string{uuid.NewString(), uuid.NewString()}
	const goroutines = 60
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	errs := make([]error, goroutines)
	together(goroutines, func(i int) {
		errs[i] = f.s.WithCommunityLock(ctx, ids[i%2], func(ctx context.Context) error {
			_, err := f.s.List(ctx, f.realm, 0, 1)
			return err
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}

// testCommunityLockContext: a waiter gives up when its context ends,
// without running fn, and the lock works on afterwards.
func testCommunityLockContext(f *fixture) {
	t := f.t
	id := uuid.NewString()
	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- f.s.WithCommunityLock(f.ctx, id, func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	// wait tries for the held lock on ctx. A store that kept waiting after
	// ctx ended would hang here: after a generous bound the holder lets
	// go, and the test fails.
	wait := func(ctx context.Context) (bool, error) {
		t.Helper()
		var ran atomic.Bool
		done := make(chan error, 1)
		go func() {
			done <- f.s.WithCommunityLock(ctx, id, func(context.Context) error { ran.Store(true); return nil })
		}()
		select {
		case err := <-done:
			return ran.Load(), err
		case <-time.After(30 * time.Second):
			close(release)
			<-done
			<-held
			t.Fatal("a waiter for a held lock did not give up when its context ended")
			return false, nil
		}
	}

	ctx, cancel := context.WithTimeout(f.ctx, 100*time.Millisecond)
	ran, err := wait(ctx)
	cancel()
	if ran || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline: ran %v, %v; want not run, DeadlineExceeded", ran, err)
	}

	ctx, cancel = context.WithCancel(f.ctx)
	stop := time.AfterFunc(50*time.Millisecond, cancel)
	ran, err = wait(ctx)
	stop.Stop()
	cancel()
	if ran || !errors.Is(err, context.Canceled) {
		t.Errorf("waiting when cancelled: ran %v, %v; want not run, Canceled", ran, err)
	}

	close(release)
	if err := <-held; err != nil {
		t.Errorf("holder: %v", err)
	}
	ctx, cancel = context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	if err := f.s.WithCommunityLock(ctx, id, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("lock after waiters gave up: ran %v, %v", ran, err)
	}
}

// testCommunityLockOutlivesContext: a holder whose context ends while fn
// runs still holds the lock until fn returns, for fn may be half-way
// through the change the lock guards. (What the holder's call returns then
// is not part of the contract.)
func testCommunityLockOutlivesContext(f *fixture) {
	id := uuid.NewString()
	holderCtx, endHolder := context.WithCancel(f.ctx)
	inside, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- f.s.WithCommunityLock(holderCtx, id, func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	endHolder()
	// Another caller tries for a while; it must not get in while fn runs.
	ctx, cancel := context.WithTimeout(f.ctx, 300*time.Millisecond)
	defer cancel()
	var entered atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- f.s.WithCommunityLock(ctx, id, func(context.Context) error { entered.Store(true); return nil })
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		// A store that ignores the waiter's context: let it through.
		close(release)
		<-held
		<-done
		f.t.Fatal("a waiter for a held lock did not give up when its context ended")
	}
	close(release)
	<-held
	if entered.Load() {
		f.t.Errorf("a second caller got the lock while the first's fn still ran (the first's context had ended); its call returned %v", err)
	}
}

// testAsLeader: one leader per realm at a time, others skipped without
// waiting; realms independent; the lock is free once fn returns.
func testAsLeader(f *fixture) {
	t := f.t
	holding, release := make(chan struct{}), make(chan struct{})
	type result struct {
		ran bool
		err error
	}
	first := make(chan result, 1)
	go func() {
		ran, err := f.s.AsLeader(f.ctx, f.realm, func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
		first <- result{ran, err}
	}()
	<-holding
	called := false
	if ran, err := f.s.AsLeader(f.ctx, f.realm, func(context.Context) error { called = true; return nil }); ran || err != nil || called {
		t.Errorf("second leader of a held realm: ran %v called %v, %v; want false, not called, nil", ran, called, err)
	}
	if ran, err := f.s.AsLeader(f.ctx, f.other("b"), func(context.Context) error { called = true; return nil }); !ran || err != nil || !called {
		t.Errorf("leader of another realm: ran %v called %v, %v; want true, called, nil", ran, called, err)
	}
	close(release)
	if r := <-first; !r.ran || r.err != nil {
		t.Errorf("first leader: ran %v, %v", r.ran, r.err)
	}
	called = false
	if ran, err := f.s.AsLeader(f.ctx, f.realm, func(context.Context) error { called = true; return nil }); !ran || err != nil || !called {
		t.Errorf("leader after the first returned: ran %v called %v, %v", ran, called, err)
	}

	// fn's error comes back with ran true, and frees the lock.
	failure := errors.New("fn failed")
	if ran, err := f.s.AsLeader(f.ctx, f.realm, func(context.Context) error { return failure }); !ran || !errors.Is(err, failure) {
		t.Errorf("leader whose fn failed: ran %v, %v; want true, %v", ran, err, failure)
	}
	if ran, err := f.s.AsLeader(f.ctx, f.realm, func(context.Context) error { return nil }); !ran || err != nil {
		t.Errorf("leader after a failed fn: ran %v, %v", ran, err)
	}

	// A leader whose context ends while fn runs frees the realm all the
	// same once fn returns.
	ended, end := context.WithCancel(f.ctx)
	if ran, _ := f.s.AsLeader(ended, f.other("ended"), func(context.Context) error { end(); return nil }); !ran {
		t.Error("leader whose context ends in fn: did not run")
	}
	if ran, err := f.s.AsLeader(f.ctx, f.other("ended"), func(context.Context) error { return nil }); !ran || err != nil {
		t.Errorf("leader after one whose context ended: ran %v, %v", ran, err)
	}

	// Many at once: never two inside, every caller either ran or was
	// skipped, and at least one ran.
	const n = 8
	var inside, overlaps, ran, skipped atomic.Int32
	errs := make([]error, n)
	together(n, func(i int) {
		did, err := f.s.AsLeader(f.ctx, f.other("race"), func(context.Context) error {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			inside.Add(-1)
			return nil
		})
		errs[i] = err
		if did {
			ran.Add(1)
		} else {
			skipped.Add(1)
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("leader %d: %v", i, err)
		}
	}
	if overlaps.Load() != 0 || ran.Load() < 1 || ran.Load()+skipped.Load() != n {
		t.Errorf("concurrent leaders: %d overlaps, %d ran, %d skipped", overlaps.Load(), ran.Load(), skipped.Load())
	}
}

// testCancelledContext: a call on a finished context fails and changes
// nothing.
func testCancelledContext(f *fixture) {
	t := f.t
	c := f.reserve(f.realm, "Live", "Live", community.StateCreating, in(time.Minute))
	done, cancel := context.WithCancel(f.ctx)
	cancel()
	isCancel := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s on a cancelled context: %v, want context.Canceled", what, err)
		}
	}
	r := f.newRow(f.realm, "Late", "Late", community.StateCreating, nil)
	isCancel("reserve", f.s.Reserve(done, r, false))
	f.trace(r.Realm, r.LabelKey, r.ID, community.TraceNone)
	isCancel("transition", f.s.Transition(done, c.ID, community.StateCreating, community.StateActive, nil, nil, nil, ""))
	isCancel("remove", f.s.Remove(done, c.ID, community.StateCreating))
	called := false
	isCancel("lock", f.s.WithCommunityLock(done, uuid.NewString(), func(context.Context) error { called = true; return nil }))
	ran, err := f.s.AsLeader(done, f.realm, func(context.Context) error { called = true; return nil })
	isCancel("leader", err)
	if ran || called {
		t.Errorf("fn ran on a cancelled context (ran %v, called %v)", ran, called)
	}
	f.unchanged(c)
}

func ptr[T any](v T) *T { return &v }
