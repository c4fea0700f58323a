package integration

import (
	"context"
	"github.com/Nerzal/gocloak/v13"
	"github.com/nhs-terminology/communities/internal/community"
	"net/http"
	"strings"
	"testing"

	"github.com/nhs-terminology/communities/test/harness"
)

// faultyFixture is a parallel test's realm and a service whose Keycloak
// calls go through a fault-injecting transport, with the communities URL
// and a service-desk token.
func faultyFixture(t *testing.T) (*harness.Realm, *harness.Service, *harness.FaultTransport, string, string) {
	t.Helper()
	t.Parallel()
	env := harness.Current(t)
	realm := env.NewRealm(t)
	faults := &harness.FaultTransport{}
	svc := env.StartServiceVia(t, env.Config(realm.Name), faults)
	return realm, svc, faults, svc.URL + "/realms/" + realm.Name + "/communities",
		realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
}

// TestKeycloakFailsAtEachStepOfCreate makes Keycloak fail at every
// mutating step of a create in turn. Each time the caller gets 503, and
// nothing is left: no artefact in Keycloak, no registry row.
func TestKeycloakFailsAtEachStepOfCreate(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)

	// Warm up: the root group exists afterwards, so every create below
	// takes the same steps.
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "WARM", "communityName": "Warm"}).Expect(t, 201)
	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "COUNT", "communityName": "Count"}).Expect(t, 201)
	steps, _ := faults.Counts()
	if steps < 10 {
		t.Fatalf("a create made only %d mutating calls", steps)
	}

	orphans, absorbed := 0, 0
	for step := 1; step <= steps; step++ {
		faults.Arm(step, false)
		resp := harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "FLAKY", "communityName": "Flaky"})
		left := realm.Artefacts(t, "Communities", "FLAKY")
		row, rowErr := svc.Store.Get(context.Background(), realm.Name, "flaky")
		switch resp.Status {
		case http.StatusServiceUnavailable:
			orphans += len(left)
			if len(left) > 0 {
				t.Errorf("fault at step %d left %v", step, left)
			}
			if rowErr != community.ErrNoRecord {
				t.Errorf("fault at step %d left registry row %+v (%v)", step, row, rowErr)
			}
			// The cause stays in the log; callers get a stable message.
			if strings.Contains(string(resp.Body), "injected fault") || strings.Contains(string(resp.Body), "connection refused") {
				t.Errorf("fault at step %d: problem detail passes Keycloak's error on: %s", step, resp.Body)
			}
		case http.StatusCreated:
			// A repeatable call (PUT) was retried past the fault: the
			// create is whole.
			absorbed++
			if len(left) != 6 || rowErr != nil || row.State != community.StateActive {
				t.Errorf("fault at step %d absorbed, but artefacts %v, row %+v %v", step, left, row, rowErr)
			}
			faults.Arm(0, false)
			harness.Do(t, "DELETE", base+"/FLAKY", sd, nil).Expect(t, 204)
		default:
			t.Fatalf("step %d: %s, want 503 (or 201 when a retry absorbed the fault)", step, resp)
		}
	}
	_, injected := faults.Counts()
	t.Logf("create: %d steps, %d faults injected, %d absorbed by retries, %d orphans found", steps, injected, absorbed, orphans)
	// Every mutating step of a create is a POST (service desk's community
	// is dormant: no owner membership), and a POST is never retried.
	if absorbed > 0 {
		t.Errorf("%d faults absorbed: a POST must never be retried", absorbed)
	}

	// With Keycloak healthy again the same create succeeds.
	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "FLAKY", "communityName": "Flaky"}).Expect(t, 201)
}

// TestKeycloakRefusalIsNotUnavailable: a 4xx from Keycloak once became
// "503, retry", which retrying never fixes. It is 502, names no internals,
// and the create is undone.
func TestKeycloakRefusalIsNotUnavailable(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "WARM", "communityName": "Warm"}).Expect(t, 201)
	faults.Refuse = true
	faults.Arm(2, false) // the label group
	resp := harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "REFUSED", "communityName": "Refused"}).Expect(t, 502)
	harness.ConformsToOpenAPI(t, "POST", base, resp)
	if strings.Contains(string(resp.Body), "injected") || resp.Header.Get("Retry-After") != "" {
		t.Errorf("a refusal answered as unavailable or with Keycloak's text: %s %v", resp.Body, resp.Header)
	}
	if left := realm.Artefacts(t, "Communities", "REFUSED"); len(left) > 0 {
		t.Errorf("the refused create left %v", left)
	}
	if _, err := svc.Store.Get(context.Background(), realm.Name, "refused"); err != community.ErrNoRecord {
		t.Errorf("the refused create left its registry row (%v)", err)
	}
}

// TestUndoThatFailsIsFinishedByRecovery: Keycloak goes away mid-create and
// stays away, so the undo fails too. The row is kept as failed (the label
// stays reserved) and recovery undoes the create once Keycloak is back.
func TestUndoThatFailsIsFinishedByRecovery(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	ctx := context.Background()

	faults.Arm(6, true)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "DOWN", "communityName": "Down"}).Expect(t, 503)
	row, err := svc.Store.Get(ctx, realm.Name, "down")
	if err != nil || row.State != community.StateFailed {
		t.Fatalf("row after failed undo: %+v %v", row, err)
	}
	if left := realm.Artefacts(t, "Communities", "DOWN"); len(left) == 0 {
		t.Fatal("expected the half-made create to be left in Keycloak while it is down")
	}
	// The label stays reserved until recovery has cleaned up.
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "down", "communityName": "Down again"}).Expect(t, 409)
	// Invisible meanwhile.
	harness.Do(t, "GET", base+"/DOWN", sd, nil).Expect(t, 404)

	faults.Arm(0, false)
	svc.Server.RecoverOnce(ctx)
	if left := realm.Artefacts(t, "Communities", "DOWN"); len(left) > 0 {
		t.Fatalf("recovery left %v", left)
	}
	if _, err := svc.Store.Get(ctx, realm.Name, "down"); err != community.ErrNoRecord {
		t.Fatalf("recovery left the row: %v", err)
	}
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "DOWN", "communityName": "Down"}).Expect(t, 201)
}

// TestKeycloakFailsDuringDelete: a delete that Keycloak interrupts answers
// 503, hides the community, and recovery finishes the delete.
func TestKeycloakFailsDuringDelete(t *testing.T) {
	realm, svc, faults, base, sd := faultyFixture(t)
	ctx := context.Background()

	faults.Arm(0, false)
	harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": "GONE", "communityName": "Gone"}).Expect(t, 201)
	faults.Arm(0, false)
	harness.Do(t, "DELETE", base+"/GONE", sd, nil).Expect(t, 204)
	steps, _ := faults.Counts()
	injected := 0
	for step := 1; step <= steps; step++ {
		label := "GONE" + string(rune('A'+step))
		faults.Arm(0, false)
		harness.Do(t, "POST", base, sd, map[string]string{"securityLabel": label, "communityName": label}).Expect(t, 201)
		faults.Arm(step, true)
		harness.Do(t, "DELETE", base+"/"+label, sd, nil).Expect(t, 503)
		injected++
		harness.Do(t, "GET", base+"/"+label, sd, nil).Expect(t, 404)
		faults.Arm(0, false)
		svc.Server.RecoverOnce(ctx)
		if left := realm.Artefacts(t, "Communities", label); len(left) > 0 {
			t.Errorf("fault at delete step %d: recovery left %v", step, left)
		}
		if _, err := svc.Store.Get(ctx, realm.Name, label); err != community.ErrNoRecord {
			t.Errorf("fault at delete step %d: recovery left the row (%v)", step, err)
		}
	}
	t.Logf("delete: %d mutating steps, %d faults injected", steps, injected)
}

// TestConflictingArtefactInKeycloak: a group someone made by hand under a
// community's name makes the create fail with 409; the hand-made group is
// left alone and nothing else is kept.
func TestConflictingArtefactInKeycloak(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.realm.AdminToken(t)
	sd := f.realm.ClientToken(t, "service-desk", harness.ServiceDeskSecret)
	f.create(t, sd, "WARM", "Warm").Expect(t, 201) // the root group exists
	root, err := f.realm.GC.GetGroupByPath(ctx, admin, f.realm.Name, "Communities")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.realm.GC.CreateChildGroup(ctx, admin, f.realm.Name, *root.ID, gocloak.Group{Name: gocloak.StringP("CLASH")})
	if err != nil {
		t.Fatal(err)
	}
	resp := f.create(t, sd, "CLASH", "Clash").Expect(t, 409)
	t.Logf("answer: %s", resp.Body)
	left := f.realm.Artefacts(t, "Communities", "CLASH")
	if len(left) != 1 || left[0] != "group /Communities/CLASH" {
		t.Fatalf("after the clash Keycloak holds %v; want only the hand-made group", left)
	}
	if g, err := f.realm.GC.GetGroup(ctx, admin, f.realm.Name, id); err != nil || *g.Name != "CLASH" {
		t.Fatalf("hand-made group damaged: %v", err)
	}
	if f.row(t, "CLASH") != nil {
		t.Fatal("registry row kept")
	}

	// Likewise a hand-made realm role.
	if _, err := f.realm.GC.CreateRealmRole(ctx, admin, f.realm.Name, role("PERM_ROLECLASH_WRITE")); err != nil {
		t.Fatal(err)
	}
	f.create(t, sd, "ROLECLASH", "Role clash").Expect(t, 409)
	left = f.realm.Artefacts(t, "Communities", "ROLECLASH")
	if len(left) != 1 || left[0] != "role PERM_ROLECLASH_WRITE" {
		t.Fatalf("after the role clash Keycloak holds %v", left)
	}
}
