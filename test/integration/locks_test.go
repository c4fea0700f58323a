package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/registry"
)

// TestLockLostWithItsConnectionEndsTheWork: a lock (a community's, or a
// realm's reconciler's) goes with the PostgreSQL session that holds it,
// and another replica may take it at once. The work it guards used to run
// on unaware beside the new holder; now its context ends within a few
// seconds, and the holder's answer names the loss.
func TestLockLostWithItsConnectionEndsTheWork(t *testing.T) {
	t.Parallel()
	db := migratedDatabase(t)
	st := registry.New(db)
	ctx := context.Background()
	// Every advisory lock of the test's own database is the one it holds.
	holder := func() int {
		var pids []int
		if err := db.Raw(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&pids).Error; err != nil || len(pids) != 1 {
			t.Fatalf("the lock's holder: %v, %v", pids, err)
		}
		return pids[0]
	}
	for _, c := range []struct {
		what string
		hold func(fn func(context.Context) error) error
	}{
		{"a community's lock", func(fn func(context.Context) error) error {
			return st.WithCommunityLock(ctx, uuid.NewString(), fn)
		}},
		{"a reconciler's lock", func(fn func(context.Context) error) error {
			ran, err := st.AsLeader(ctx, "lost-"+uuid.NewString(), fn)
			if !ran && err == nil {
				return errors.New("did not run")
			}
			return err
		}},
	} {
		held, ended := make(chan struct{}), make(chan error, 1)
		var cause error
		go func() {
			ended <- c.hold(func(ctx context.Context) error {
				close(held)
				select {
				case <-ctx.Done():
					cause = context.Cause(ctx)
					// As a Keycloak call cut off by it would.
					return fmt.Errorf("add a member: %w", ctx.Err())
				case <-time.After(time.Minute):
					return errors.New("the work was never stopped")
				}
			})
		}()
		<-held
		var killed bool
		if err := db.Raw("SELECT pg_terminate_backend(?)", holder()).Scan(&killed).Error; err != nil || !killed {
			t.Fatalf("%s: end its session: %v, %v", c.what, killed, err)
		}
		var err error
		select {
		case err = <-ended:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the holder did not return", c.what)
		}
		if !errors.Is(cause, registry.ErrLockLost) {
			t.Errorf("%s: the work's context ended with %v, want ErrLockLost", c.what, cause)
		}
		if !errors.Is(err, registry.ErrLockLost) || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s: the holder answered %v, want ErrLockLost (unavailable)", c.what, err)
		}
	}
	// The pool goes on without the lost connection.
	if err := st.WithCommunityLock(ctx, uuid.NewString(), func(context.Context) error { return nil }); err != nil {
		t.Errorf("a lock after the loss: %v", err)
	}
}
