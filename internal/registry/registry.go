// Package registry keeps the communities' label registry and audit trail in
// PostgreSQL through GORM.
//
// A row is written before anything is made in Keycloak and carries a state
// and a lease: creating → active → deleting → (gone). A row whose lease has
// run out while not active is an operation some replica abandoned (it
// crashed, or Keycloak failed and the undo failed too); ClaimAbandoned hands
// it to exactly one replica to finish or undo.
package registry

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/fault"
)

// communityRow is a community as the communities table holds it.
type communityRow struct {
	ID                string `gorm:"primaryKey;type:uuid"`
	Realm             string
	Label             string
	LabelKey          string
	Name              string
	NameKey           string
	State             string
	Artifacts         artifacts `gorm:"type:jsonb"`
	CreatedBySub      string
	CreatedByUsername string
	CreatedByClient   string
	LeaseUntil        *time.Time
	LastError         string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

func (communityRow) TableName() string { return "communities" }

func rowOf(c *community.Community) *communityRow {
	return &communityRow{ID: c.ID, Realm: c.Realm, Label: c.Label, LabelKey: c.LabelKey, Name: c.Name, NameKey: c.NameKey,
		State: c.State, Artifacts: artifacts(c.Artifacts), CreatedBySub: c.CreatedBySub, CreatedByUsername: c.CreatedByUsername,
		CreatedByClient: c.CreatedByClient, LeaseUntil: c.LeaseUntil, LastError: c.LastError, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func (r *communityRow) domain() community.Community {
	return community.Community{ID: r.ID, Realm: r.Realm, Label: r.Label, LabelKey: r.LabelKey, Name: r.Name, NameKey: r.NameKey,
		State: r.State, Artifacts: community.Artifacts(r.Artifacts), CreatedBySub: r.CreatedBySub, CreatedByUsername: r.CreatedByUsername,
		CreatedByClient: r.CreatedByClient, LeaseUntil: r.LeaseUntil, LastError: r.LastError, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func domains(rows []communityRow) []community.Community {
	out := make([]community.Community, len(rows))
	for i := range rows {
		out[i] = rows[i].domain()
	}
	return out
}

// artifacts stores community.Artifacts as jsonb.
type artifacts community.Artifacts

// Value stores artifacts as jsonb.
func (a artifacts) Value() (driver.Value, error) { return json.Marshal(community.Artifacts(a)) }

// Scan reads artifacts from jsonb.
func (a *artifacts) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, (*community.Artifacts)(a))
	case string:
		return json.Unmarshal([]byte(v), (*community.Artifacts)(a))
	case nil:
		*a = artifacts{}
		return nil
	}
	return fmt.Errorf("artifacts: cannot scan %T", src)
}

// claims stores an audit event's provenance claims as jsonb.
type claims map[string]string

// Value stores claims as jsonb.
func (c claims) Value() (driver.Value, error) {
	if c == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string]string(c))
}

// Scan reads claims from jsonb.
func (c *claims) Scan(src any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, c)
	case string:
		return json.Unmarshal([]byte(v), c)
	case nil:
		*c = nil
		return nil
	}
	return fmt.Errorf("claims: cannot scan %T", src)
}

// auditRow is an audit event as the audit_events table holds it.
type auditRow struct {
	ID            int64 `gorm:"primaryKey"`
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
	Claims        claims `gorm:"type:jsonb"`
}

func (auditRow) TableName() string { return "audit_events" }

// Open connects to PostgreSQL with bounded pool and timeouts: a connect
// timeout and a server-side statement timeout unless the URL sets its own,
// so no request waits on the database without end. With readOnly every
// session refuses writes.
func Open(ctx context.Context, dsn string, readOnly bool) (*gorm.DB, error) {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 10 * time.Second
	}
	if _, ok := pc.RuntimeParams["statement_timeout"]; !ok {
		pc.RuntimeParams["statement_timeout"] = "15000"
	}
	if readOnly {
		// PostgreSQL itself refuses any write in these sessions.
		pc.RuntimeParams["default_transaction_read_only"] = "on"
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: stdlib.OpenDB(*pc)}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB.SetMaxOpenConns(maxOpenConns)
	sqlDB.SetMaxIdleConns(5)
	sqlDB.SetConnMaxLifetime(30 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("reach database: %w", err)
	}
	return db, nil
}

// maxOpenConns bounds the connections a process opens to PostgreSQL.
const maxOpenConns = 20

// Store reads and writes the registry; it is the PostgreSQL community.Store.
type Store struct {
	db *gorm.DB
	// lockers bounds the holders of, and waiters for, community locks:
	// each keeps a connection for its transaction while its fn uses the
	// store through another, so a pool full of them would leave every fn
	// waiting for a connection none of them gives back. Half the pool.
	lockers chan struct{}
}

// New wraps a migrated database.
func New(db *gorm.DB) *Store { return &Store{db: db, lockers: make(chan struct{}, maxOpenConns/2)} }

// Ping checks the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// DB exposes the connection for migrations status checks.
func (s *Store) DB() *gorm.DB { return s.db }

// Reserve inserts c (state creating). The unique indexes make exactly one of
// two concurrent reservations of a label or name win. A retired label is
// looked for after the insert, in its transaction: an insert that clashed
// with the row of a delete then finishing waited for it, and so sees the
// label it retired.
func (s *Store) Reserve(ctx context.Context, c *community.Community, reuseRetired bool) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(rowOf(c)).Error; err != nil {
			return err
		}
		if reuseRetired {
			return nil
		}
		var retired bool
		if err := tx.Raw(`SELECT EXISTS (SELECT 1 FROM retired_labels WHERE realm = ? AND label_key = ?)`,
			c.Realm, c.LabelKey).Scan(&retired).Error; err != nil {
			return err
		}
		if retired {
			return community.ErrLabelRetired
		}
		return nil
	})
	if errors.Is(err, community.ErrLabelRetired) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		if pgErr.ConstraintName == "communities_realm_name_key" {
			return community.ErrNameTaken
		}
		return community.ErrLabelTaken
	}
	if err != nil {
		return fmt.Errorf("reserve community %s: %w", c.Label, err)
	}
	return nil
}

// Get finds a community of realm by label, ignoring case, in any state.
func (s *Store) Get(ctx context.Context, realm, labelKey string) (*community.Community, error) {
	var r communityRow
	err := s.db.WithContext(ctx).Where("realm = ? AND label_key = ?", realm, labelKey).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, community.ErrNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("read community %s: %w", labelKey, err)
	}
	c := r.domain()
	return &c, nil
}

// List returns the active communities of realm ordered by label; max <= 0
// means no limit.
func (s *Store) List(ctx context.Context, realm string, first, max int) ([]community.Community, error) {
	return s.list(ctx, realm, s.db.WithContext(ctx), first, max)
}

// Search is List of the communities whose label key or name key contains
// key. strpos, not LIKE, so that no character of key is a pattern: the
// keys were folded in Go, the same way for both stores. No index serves
// it: it reads the realm's active rows.
func (s *Store) Search(ctx context.Context, realm, key string, first, max int) ([]community.Community, error) {
	return s.list(ctx, realm, s.db.WithContext(ctx).Where("strpos(label_key, ?) > 0 OR strpos(name_key, ?) > 0", key, key), first, max)
}

func (s *Store) list(ctx context.Context, realm string, q *gorm.DB, first, max int) ([]community.Community, error) {
	q = q.Where("realm = ? AND state = ?", realm, community.StateActive).Order("label_key, label").Offset(first)
	if max > 0 {
		q = q.Limit(max)
	}
	var out []communityRow
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list communities of %s: %w", realm, err)
	}
	return domains(out), nil
}

// ByLabels returns the active communities of realm among labelKeys.
func (s *Store) ByLabels(ctx context.Context, realm string, labelKeys []string) ([]community.Community, error) {
	if len(labelKeys) == 0 {
		return nil, nil
	}
	var out []communityRow
	err := s.db.WithContext(ctx).Where("realm = ? AND state = ? AND label_key IN ?", realm, community.StateActive, labelKeys).
		Order("label_key, label").Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("read communities of %s: %w", realm, err)
	}
	return domains(out), nil
}

// Transition moves row id from state `from` to `to`, setting its lease
// (nil clears it), artefacts (nil keeps them) and last error. With expect
// set, the row must still hold exactly that lease: a replica that recovered
// the row in the meantime has renewed it, and the transition fails.
// ErrStateChanged means another request or replica got there first.
func (s *Store) Transition(ctx context.Context, id, from, to string, expect, lease *time.Time, a *community.Artifacts, lastErr string) error {
	updates := map[string]any{"state": to, "lease_until": lease, "last_error": lastErr, "updated_at": time.Now().UTC()}
	if a != nil {
		updates["artifacts"] = artifacts(*a)
	}
	q := s.db.WithContext(ctx).Model(&communityRow{}).Where("id = ? AND state = ?", id, from)
	if expect != nil {
		q = q.Where("lease_until = ?", *expect)
	}
	res := q.Updates(updates)
	if res.Error != nil {
		return fmt.Errorf("move community %s from %s to %s: %w", id, from, to, res.Error)
	}
	if res.RowsAffected == 0 {
		return community.ErrStateChanged
	}
	return nil
}

// Remove deletes row id if it is still in state. A create's id (creating
// or failed) is kept in undone_creates, in the same transaction, for
// UndoneKept; older ones go then. A delete's label (deleting) is retired
// in the same transaction.
func (s *Store) Remove(ctx context.Context, id, state string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var gone []communityRow
		res := tx.Clauses(clause.Returning{}).Where("id = ? AND state = ?", id, state).Delete(&gone)
		if res.Error != nil {
			return fmt.Errorf("remove community %s: %w", id, res.Error)
		}
		if res.RowsAffected == 0 {
			return community.ErrStateChanged
		}
		now := time.Now().UTC()
		if state == community.StateDeleting {
			if err := tx.Exec(`INSERT INTO retired_labels (realm, label_key, label, name, retired_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (realm, label_key) DO UPDATE SET label = EXCLUDED.label, name = EXCLUDED.name, retired_at = EXCLUDED.retired_at`,
				gone[0].Realm, gone[0].LabelKey, gone[0].Label, gone[0].Name, now).Error; err != nil {
				return fmt.Errorf("retire label %s: %w", gone[0].Label, err)
			}
			return nil
		}
		if state != community.StateCreating && state != community.StateFailed {
			return nil
		}
		if err := tx.Exec(`INSERT INTO undone_creates (id, realm, label_key, undone_at) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET undone_at = EXCLUDED.undone_at`, id, gone[0].Realm, gone[0].LabelKey, now).Error; err != nil {
			return fmt.Errorf("remember undone create %s: %w", id, err)
		}
		if err := tx.Exec(`DELETE FROM undone_creates WHERE undone_at < ?`, now.Add(-community.UndoneKept)).Error; err != nil {
			return fmt.Errorf("forget old undone creates: %w", err)
		}
		return nil
	})
}

// Now is PostgreSQL's time, which every replica's leases are written and
// compared by.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := s.db.WithContext(ctx).Raw(`SELECT statement_timestamp()`).Scan(&now).Error; err != nil {
		return time.Time{}, fmt.Errorf("read the registry's clock: %w", err)
	}
	return now.UTC(), nil
}

// ClaimAbandoned takes one unfinished row of realms whose lease has run
// out, by PostgreSQL's clock, and extends the lease to now+lease, so that
// exactly one replica recovers it. It returns nil, nil when there is none.
func (s *Store) ClaimAbandoned(ctx context.Context, realms []string, lease time.Duration) (*community.Community, error) {
	var rows []communityRow
	err := s.db.WithContext(ctx).Raw(`
UPDATE communities SET lease_until = statement_timestamp() + make_interval(secs => ?),
	updated_at = statement_timestamp()
WHERE id = (
	SELECT id FROM communities
	WHERE state <> 'active' AND (lease_until IS NULL OR lease_until < statement_timestamp()) AND realm IN ?
	ORDER BY lease_until NULLS FIRST
	LIMIT 1
	FOR UPDATE SKIP LOCKED)
RETURNING *`, lease.Seconds(), realms).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("claim abandoned community: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	c := rows[0].domain()
	return &c, nil
}

// Audit appends an event to the audit trail.
func (s *Store) Audit(ctx context.Context, ev *community.AuditEvent) error {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	r := auditRow{At: ev.At, Realm: ev.Realm, Action: ev.Action, Label: ev.Label, Name: ev.Name, ActorSub: ev.ActorSub,
		ActorClient: ev.ActorClient, ActorUsername: ev.ActorUsername, Outcome: ev.Outcome, Detail: ev.Detail,
		RequestID: ev.RequestID, Claims: claims(ev.Claims)}
	if err := s.db.WithContext(ctx).Clauses(clause.Returning{}).Create(&r).Error; err != nil {
		return fmt.Errorf("write audit event %s %s: %w", ev.Action, ev.Label, err)
	}
	return nil
}

// SetArtifacts records the Keycloak ids of an active community after a
// repair.
func (s *Store) SetArtifacts(ctx context.Context, id string, a community.Artifacts) error {
	res := s.db.WithContext(ctx).Model(&communityRow{}).Where("id = ? AND state = ?", id, community.StateActive).
		Updates(map[string]any{"artifacts": artifacts(a), "updated_at": time.Now().UTC()})
	if res.Error != nil {
		return fmt.Errorf("record artefacts of %s: %w", id, res.Error)
	}
	return nil
}

// Trace says what the registry holds of community id: a row, or the
// undone create of that id in realm with labelKey.
func (s *Store) Trace(ctx context.Context, realm, labelKey, id string) (community.Trace, error) {
	var t int
	err := s.db.WithContext(ctx).Raw(`SELECT CASE
	WHEN EXISTS (SELECT 1 FROM communities WHERE id = ?) THEN CAST(? AS integer)
	WHEN EXISTS (SELECT 1 FROM undone_creates WHERE id = ? AND realm = ? AND label_key = ? AND undone_at >= ?) THEN CAST(? AS integer)
	ELSE CAST(? AS integer) END`, id, int(community.TraceRow), id, realm, labelKey, time.Now().UTC().Add(-community.UndoneKept),
		int(community.TraceUndone), int(community.TraceNone)).Scan(&t).Error
	if err != nil {
		return community.TraceNone, fmt.Errorf("look up community %s: %w", id, err)
	}
	return community.Trace(t), nil
}

// Undone returns the ids of realm's creates of labelKey undone within
// UndoneKept, newest first, at most community.MaxUndoneAsked. The table
// holds a week of failed creates, so it is read without an index of its
// own.
func (s *Store) Undone(ctx context.Context, realm, labelKey string) ([]string, error) {
	ids := []string{}
	err := s.db.WithContext(ctx).Raw(`SELECT id::text FROM undone_creates
WHERE realm = ? AND label_key = ? AND undone_at >= ? ORDER BY undone_at DESC, id LIMIT ?`,
		realm, labelKey, time.Now().UTC().Add(-community.UndoneKept), community.MaxUndoneAsked).Scan(&ids).Error
	if err != nil {
		return nil, fmt.Errorf("look up undone creates of %s: %w", labelKey, err)
	}
	return ids, nil
}

// communityLockClass is the first half of the advisory lock held while a
// community's membership is checked and changed; the second is a hash of
// its id.
const communityLockClass = 0x6f776e72 // "ownr"

// WithCommunityLock runs fn holding a transaction-scoped advisory lock on
// community id, waiting for any other holder (in any replica) until ctx
// ends, and keeps it until fn returns. The lock goes with the transaction,
// so a lost connection frees it.
func (s *Store) WithCommunityLock(ctx context.Context, id string, fn func(context.Context) error) error {
	select {
	case s.lockers <- struct{}{}:
		defer func() { <-s.lockers }()
	case <-ctx.Done():
		return fmt.Errorf("lock community %s: %w", id, context.Cause(ctx))
	}
	// The transaction, which holds the lock, must not end with ctx while fn
	// runs (database/sql rolls back a transaction whose context ends); only
	// the wait for the lock honours ctx.
	return s.db.WithContext(context.WithoutCancel(ctx)).Transaction(func(tx *gorm.DB) error {
		if err := tx.WithContext(ctx).Exec("SELECT pg_advisory_xact_lock(?, hashtext(?))", communityLockClass, id).Error; err != nil {
			return fmt.Errorf("lock community %s: %w", id, err)
		}
		held, finish := watchLock(ctx, tx, "community "+id)
		return finish(fn(held))
	})
}

// lockCheckEvery is how often a held lock's connection is asked whether
// it is still there, and lockCheckTimeout how long it has to answer.
const (
	lockCheckEvery   = 2 * time.Second
	lockCheckTimeout = 5 * time.Second
)

// ErrLockLost ends the work of a holder whose lock went with its
// connection: another replica may hold it now.
var ErrLockLost = fault.Sentinel(fault.Unavailable, "the lock's connection to the registry was lost")

// watchLock returns ctx for the work a lock on what guards, ended with
// ErrLockLost once conn, which holds the lock, no longer answers
// (PostgreSQL ended its session, or the network between took it): the
// lock went with it, and the work must stop rather than run on beside
// another holder. The check is a "SELECT 1" on conn every lockCheckEvery.
// finish ends the watch, before conn is released, and returns the work's
// error, or the loss of the lock if the work failed after it.
func watchLock(ctx context.Context, conn *gorm.DB, what string) (context.Context, func(error) error) {
	held, cancel := context.WithCancelCause(ctx)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lockCheckEvery)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-held.Done():
				return
			case <-tick.C:
			}
			ask, end := context.WithTimeout(context.WithoutCancel(ctx), lockCheckTimeout)
			err := conn.WithContext(ask).Exec("SELECT 1").Error
			end()
			if err != nil {
				cancel(fmt.Errorf("lock of %s: %w: %w", what, ErrLockLost, err))
				return
			}
		}
	}()
	return held, func(err error) error {
		close(quit)
		<-done
		lost := context.Cause(held)
		cancel(nil)
		if err != nil && errors.Is(lost, ErrLockLost) {
			// What the work met (a call cut off) is the lock's loss; its
			// own error's kind would hide that.
			return fmt.Errorf("%w (the work it guarded stopped: %v)", lost, err)
		}
		return err
	}
}

// reconcileLockClass is the first half of the advisory lock a reconciler
// of a realm holds; the second is a hash of the realm's name.
const reconcileLockClass = 0x636f6d6d // "comm"

// AsLeader runs fn only if no other replica is running it for realm: it
// holds a session advisory lock, one per realm, on one connection for fn's
// duration. It reports false, without running fn, when another holds it.
// Replicas managing different realms never wait for each other.
func (s *Store) AsLeader(ctx context.Context, realm string, fn func(context.Context) error) (bool, error) {
	ran := false
	err := s.db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		var got bool
		if err := conn.Raw("SELECT pg_try_advisory_lock(?, hashtext(?))", reconcileLockClass, realm).Scan(&got).Error; err != nil {
			return fmt.Errorf("take reconciler lock of %s: %w", realm, err)
		}
		if !got {
			return nil
		}
		// Unlock even when ctx has ended, or the lock stays until the
		// connection closes and the next leader is refused meanwhile.
		defer conn.WithContext(context.WithoutCancel(ctx)).Exec("SELECT pg_advisory_unlock(?, hashtext(?))", reconcileLockClass, realm)
		ran = true
		held, finish := watchLock(ctx, conn, "the reconciler of realm "+realm)
		return finish(fn(held))
	})
	return ran, err
}

var _ community.Store = (*Store)(nil)
