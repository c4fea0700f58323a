package integration

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/storetest"
	"github.com/nhs-terminology/communities/internal/registry"
	"github.com/nhs-terminology/communities/test/harness"
)

// TestStoreConformance holds the PostgreSQL store to the contract the
// in-memory store passes in its unit tests, on a database of the test's own
// (the suite's subtests share it, each in realms of its own).
func TestStoreConformance(t *testing.T) {
	t.Parallel()
	db := migratedDatabase(t)
	st := registry.New(db)
	storetest.Run(t, func(t *testing.T) community.Store { return auditedStore{Store: st, db: db, t: t} })
}

// migratedDatabase opens a database of the test's own, migrated.
func migratedDatabase(t *testing.T) *gorm.DB {
	t.Helper()
	db := mustOpen(t, ownDatabase(t, harness.Current(t)))
	if err := registry.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

// auditedStore is the PostgreSQL store with the audit trail read back
// straight from its table, as storetest needs.
type auditedStore struct {
	*registry.Store
	db *gorm.DB
	t  *testing.T
}

// AgeUndone makes the undone create id older by d.
func (s auditedStore) AgeUndone(id string, d time.Duration) {
	s.t.Helper()
	if err := s.db.Exec(`UPDATE undone_creates SET undone_at = undone_at - make_interval(secs => ?) WHERE id = ?`,
		d.Seconds(), id).Error; err != nil {
		s.t.Fatalf("age undone create: %v", err)
	}
}

// HoldsUndone reports whether undone_creates still has a row for id.
func (s auditedStore) HoldsUndone(id string) bool {
	s.t.Helper()
	var n int64
	if err := s.db.Raw(`SELECT count(*) FROM undone_creates WHERE id = ?`, id).Scan(&n).Error; err != nil {
		s.t.Fatalf("read undone creates: %v", err)
	}
	return n > 0
}

// Events returns every audit event of the database, oldest first.
func (s auditedStore) Events() []community.AuditEvent {
	s.t.Helper()
	var rows []struct {
		At                                   time.Time
		Realm, Action, Label, Name           string
		ActorSub, ActorClient, ActorUsername string
		Outcome, Detail, RequestID           string
		Claims                               string
	}
	if err := s.db.Raw(`SELECT at, realm, action, label, name, actor_sub, actor_client, actor_username,
	outcome, detail, request_id, claims::text AS claims FROM audit_events ORDER BY id`).Scan(&rows).Error; err != nil {
		s.t.Fatalf("read audit trail: %v", err)
	}
	out := make([]community.AuditEvent, len(rows))
	for i, r := range rows {
		var claims community.Claims
		if err := json.Unmarshal([]byte(r.Claims), &claims); err != nil {
			s.t.Fatalf("audit event claims %q: %v", r.Claims, err)
		}
		out[i] = community.AuditEvent{At: r.At, Realm: r.Realm, Action: r.Action, Label: r.Label, Name: r.Name,
			ActorSub: r.ActorSub, ActorClient: r.ActorClient, ActorUsername: r.ActorUsername, Outcome: r.Outcome,
			Detail: r.Detail, RequestID: r.RequestID, Claims: claims}
	}
	return out
}
