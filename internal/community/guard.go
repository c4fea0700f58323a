package community

import (
	"context"
	"fmt"

	"github.com/nhs-terminology/communities/internal/fault"
	"github.com/nhs-terminology/communities/internal/fhirguard"
)

// ErrLabelled: the community's labels remain on FHIR resources.
var ErrLabelled = fault.Sentinel(fault.Conflict, "community labels remain on resources")

// Guard counts the FHIR resources that still carry a community's labels
// (internal/fhirguard). Without one, deletes are not checked.
type Guard interface {
	Count(ctx context.Context, label string) (fhirguard.Usage, error)
}

// LabelledResources counts the resources labelled with l's labels; ok is
// false when no FHIR server is configured.
func (s *Service) LabelledResources(ctx context.Context, l string) (u fhirguard.Usage, ok bool, err error) {
	if s.opts.Guard == nil {
		return fhirguard.Usage{}, false, nil
	}
	u, err = s.opts.Guard.Count(ctx, l)
	if err != nil {
		// The cause names the FHIR servers' internal addresses: for the
		// log, not the caller.
		return u, true, fault.Upstream("the FHIR servers could not be asked whether resources still carry "+l+".read or "+l+".write; nothing was deleted", err)
	}
	return u, true, nil
}

// guardDelete refuses to delete a community whose labels remain on
// resources: seed 000 says deleting it leaves them unreadable to everyone
// without another label, until service desk removes the labels. Service
// desk alone may accept that; a count that cannot be made refuses too.
func (s *Service) guardDelete(ctx context.Context, a Actor, row *Community, accept bool) (string, error) {
	if accept {
		if !a.ServiceDesk {
			return "", fmt.Errorf("%w: only service desk may delete a community whose labels may remain on resources (acceptLabelledResources)", ErrForbidden)
		}
		return "labelled resources accepted by service desk", nil
	}
	u, ok, err := s.LabelledResources(ctx, row.Label)
	if err != nil || !ok {
		return "", err
	}
	if u.Total > 0 {
		return "", &fault.Error{Kind: ErrLabelled, Public: fmt.Sprintf("%s still labels %s; remove %s.read and %s.write from them first (seed 000: without them users lose access), or service desk may delete it with acceptLabelledResources=true",
			row.Label, u, row.Label, row.Label)}
	}
	return "no labelled resources", nil
}
