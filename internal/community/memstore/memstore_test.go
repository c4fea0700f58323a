package memstore_test

import (
	"testing"

	"github.com/nhs-terminology/communities/internal/community"
	"github.com/nhs-terminology/communities/internal/community/memstore"
	"github.com/nhs-terminology/communities/internal/community/storetest"
)

// TestConformance holds the in-memory store to the contract the PostgreSQL
// store passes in test/integration (TestStoreConformance).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) community.Store { return memstore.New() })
}
