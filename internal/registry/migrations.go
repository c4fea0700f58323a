package registry

import (
	"context"
	"fmt"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"

	"github.com/nhs-terminology/communities/internal/label"
)

// migrationLockKey serialises migrations of replicas starting together.
const migrationLockKey = 0x636f6d6d756e // "commun"

// migrations are versioned, explicit SQL: the schema is a contract with
// operators (and with rows written by older releases), so it is never left
// to AutoMigrate's guesses.
var migrations = []*gormigrate.Migration{
	{
		ID: "0001_communities",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`
CREATE TABLE communities (
	id            uuid PRIMARY KEY,
	realm         text NOT NULL,
	label         text NOT NULL,
	label_key     text NOT NULL,
	name          text NOT NULL,
	name_key      text NOT NULL,
	state         text NOT NULL CHECK (state IN ('creating', 'active', 'deleting', 'failed')),
	artifacts     jsonb NOT NULL DEFAULT '{}',
	created_by_sub      text NOT NULL DEFAULT '',
	created_by_username text NOT NULL DEFAULT '',
	created_by_client   text NOT NULL DEFAULT '',
	lease_until   timestamptz,
	last_error    text NOT NULL DEFAULT '',
	created_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX communities_realm_label_key ON communities (realm, label_key);
CREATE UNIQUE INDEX communities_realm_name_key ON communities (realm, name_key);
CREATE INDEX communities_unfinished ON communities (lease_until) WHERE state <> 'active';

CREATE TABLE audit_events (
	id          bigserial PRIMARY KEY,
	at          timestamptz NOT NULL,
	realm       text NOT NULL,
	action      text NOT NULL,
	label       text NOT NULL,
	name        text NOT NULL DEFAULT '',
	actor_sub       text NOT NULL DEFAULT '',
	actor_client    text NOT NULL DEFAULT '',
	actor_username  text NOT NULL DEFAULT '',
	outcome     text NOT NULL,
	detail      text NOT NULL DEFAULT '',
	request_id  text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_realm_label ON audit_events (realm, label, at);
`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`DROP TABLE audit_events; DROP TABLE communities;`).Error
		},
	},
	{
		// Provenance claims of the caller (seed 004) with every change.
		ID: "0002_audit_claims",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`ALTER TABLE audit_events ADD COLUMN claims jsonb NOT NULL DEFAULT '{}'`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`ALTER TABLE audit_events DROP COLUMN claims`).Error
		},
	},
	{
		// Ids of undone creates: Keycloak may commit a call a create gave up
		// waiting for after its undo, and the drift check removes what that
		// makes by this id.
		ID: "0003_undone_creates",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`
CREATE TABLE undone_creates (
	id        uuid PRIMARY KEY,
	realm     text NOT NULL,
	label_key text NOT NULL,
	undone_at timestamptz NOT NULL
);
CREATE INDEX undone_creates_undone_at ON undone_creates (undone_at);
`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`DROP TABLE undone_creates`).Error
		},
	},
	{
		// Labels of deleted communities: resources may still carry them,
		// so only service desk may give one to a new community. Those
		// deleted before this migration are found in the audit trail (a
		// delete that succeeded, or one that recovery finished).
		ID: "0004_retired_labels",
		Migrate: func(tx *gorm.DB) error {
			return tx.Exec(`
CREATE TABLE retired_labels (
	realm      text NOT NULL,
	label_key  text NOT NULL,
	label      text NOT NULL,
	name       text NOT NULL DEFAULT '',
	retired_at timestamptz NOT NULL,
	PRIMARY KEY (realm, label_key)
);
INSERT INTO retired_labels (realm, label_key, label, name, retired_at)
SELECT DISTINCT ON (realm, lower(label)) realm, lower(label), label, name, at FROM audit_events
WHERE outcome = 'success' AND (action = 'delete' OR action = 'recover' AND detail LIKE 'undid deleting operation%')
ORDER BY realm, lower(label), at DESC;
`).Error
		},
		Rollback: func(tx *gorm.DB) error {
			return tx.Exec(`DROP TABLE retired_labels`).Error
		},
	},
	{
		// Names keyed by label.NameKey (PRECIS Nickname, case-folded),
		// not lower-cased: "ΟΔΟΣ" and "οδος", composed and decomposed
		// accents, one space or two, are one name from now on.
		ID: "0005_name_keys",
		Migrate: func(tx *gorm.DB) error {
			return rekeyNames(tx, label.NameKey)
		},
		Rollback: func(tx *gorm.DB) error {
			return rekeyNames(tx, label.Key)
		},
	},
}

// rekeyNames writes key(name) into every community's name_key. Keys are
// first set to a placeholder no name yields (a control character and the
// id), so that no row meets another's old key half-way. Where rows that
// were distinct share the new key, the oldest keeps it and the others get
// it followed by a control character and their id: all stay, under their
// names, found by a search of them, and no new community can take the
// name.
func rekeyNames(tx *gorm.DB, key func(string) string) error {
	var rows []struct {
		ID, Realm, Name string
	}
	if err := tx.Raw(`SELECT id, realm, name FROM communities ORDER BY realm, created_at, id`).Scan(&rows).Error; err != nil {
		return fmt.Errorf("read names: %w", err)
	}
	if err := tx.Exec(`UPDATE communities SET name_key = chr(1) || id::text`).Error; err != nil {
		return fmt.Errorf("clear name keys: %w", err)
	}
	taken := map[[2]string]bool{}
	for _, r := range rows {
		k := key(r.Name)
		if taken[[2]string{r.Realm, k}] {
			// Still found by a search of its name (a substring of the key).
			k += "\x01" + r.ID
		}
		taken[[2]string{r.Realm, k}] = true
		if err := tx.Exec(`UPDATE communities SET name_key = ? WHERE id = ?`, k, r.ID).Error; err != nil {
			return fmt.Errorf("key the name of %s: %w", r.ID, err)
		}
	}
	return nil
}

func newMigrator(db *gorm.DB) *gormigrate.Gormigrate {
	return gormigrate.New(db, &gormigrate.Options{
		TableName:                 "schema_migrations",
		IDColumnName:              "id",
		IDColumnSize:              255,
		UseTransaction:            true,
		ValidateUnknownMigrations: true,
	}, migrations)
}

// withMigrationLock runs fn on one connection holding a session advisory
// lock, so that replicas starting together migrate one after another.
func withMigrationLock(ctx context.Context, db *gorm.DB, fn func(*gorm.DB) error) error {
	return db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		if err := conn.Exec("SELECT pg_advisory_lock(?)", migrationLockKey).Error; err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		defer conn.Exec("SELECT pg_advisory_unlock(?)", migrationLockKey)
		return fn(conn)
	})
}

// Migrate applies every pending migration.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return withMigrationLock(ctx, db, func(conn *gorm.DB) error {
		if err := newMigrator(conn).Migrate(); err != nil {
			return fmt.Errorf("migrate registry schema: %w", err)
		}
		return nil
	})
}

// MigrateDown rolls back the last applied migration.
func MigrateDown(ctx context.Context, db *gorm.DB) error {
	return withMigrationLock(ctx, db, func(conn *gorm.DB) error {
		if err := newMigrator(conn).RollbackLast(); err != nil {
			return fmt.Errorf("roll back registry schema: %w", err)
		}
		return nil
	})
}

// MigrationStatus says, for every migration this build knows, whether it
// has been applied.
type MigrationStatus struct {
	ID      string `json:"id"`
	Applied bool   `json:"applied"`
}

// Status reports which migrations are applied.
func Status(ctx context.Context, db *gorm.DB) ([]MigrationStatus, error) {
	applied := map[string]bool{}
	var exists bool
	if err := db.WithContext(ctx).Raw("SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists).Error; err != nil {
		return nil, fmt.Errorf("read migration status: %w", err)
	}
	if exists {
		var ids []string
		if err := db.WithContext(ctx).Raw("SELECT id FROM schema_migrations").Scan(&ids).Error; err != nil {
			return nil, fmt.Errorf("read migration status: %w", err)
		}
		for _, id := range ids {
			applied[id] = true
		}
	}
	out := make([]MigrationStatus, 0, len(migrations))
	for _, m := range migrations {
		out = append(out, MigrationStatus{ID: m.ID, Applied: applied[m.ID]})
	}
	return out, nil
}

// Current reports whether every migration of this build is applied
// (readiness: a replica must not serve an older schema).
func Current(ctx context.Context, db *gorm.DB) (bool, error) {
	st, err := Status(ctx, db)
	if err != nil {
		return false, err
	}
	for _, s := range st {
		if !s.Applied {
			return false, nil
		}
	}
	return true, nil
}
