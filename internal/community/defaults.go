package community

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nhs-terminology/communities/internal/label"
)

// Default is a community every managed realm has, whose consumer group is
// a realm default group. Seed 000: "Once registered ..., you will
// automatically join the 'Restricted' and 'Open' communities."
type Default struct {
	Label string
	Name  string
}

// systemActor makes the default communities: as service desk, without
// owners, so that service desk appoints them. Its authority is the
// service's configuration, not a token: there is no role to confirm.
var systemActor = Actor{ClientID: "communities-service", Username: "communities-service", ServiceDesk: true, Confirmed: true}

// EnsureDefaults makes each default community of realm unless it exists
// (another replica may make it at the same moment: either wins), and makes
// its consumer group a default group of the realm. It is idempotent.
func (s *Service) EnsureDefaults(ctx context.Context, realm string, defaults []Default) error {
	for _, d := range defaults {
		row, err := s.Get(ctx, realm, d.Label)
		if errors.Is(err, ErrNotFound) {
			row, err = s.Create(ctx, realm, systemActor, CreateRequest{Label: d.Label, Name: d.Name, Dormant: true})
			if errors.Is(err, ErrDuplicate) {
				row, err = s.Get(ctx, realm, d.Label)
			}
		}
		if err != nil {
			return fmt.Errorf("default community %s in %s: %w", d.Label, realm, err)
		}
		if err := s.kc.AddDefaultGroup(ctx, realm, row.Artifacts.ConsumerGroupID); err != nil {
			return fmt.Errorf("default community %s in %s: %w", d.Label, realm, err)
		}
	}
	return nil
}

// ParseDefaults reads "LABEL=Name,LABEL=Name" pairs, validating each.
func ParseDefaults(pairs []string) ([]Default, error) {
	var out []Default
	for _, p := range pairs {
		l, n, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("default community %q: write LABEL=Name", p)
		}
		if err := label.ValidateLabel(l); err != nil {
			return nil, err
		}
		name, err := label.NormalizeName(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Default{Label: l, Name: name})
	}
	return out, nil
}
