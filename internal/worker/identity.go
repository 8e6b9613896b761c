package worker

import (
	"context"
	"errors"

	"github.com/pagefleet/pagefleet/internal/browser"
	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/internal/rdb"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

// CodeIdentityNotFound is the error code of a job whose identity was deleted
// after the job was accepted.
const CodeIdentityNotFound = "identity_not_found"

// loadIdentity reads the job's identity profile (nil when it names none).
// It is read once, when the job starts: a later edit does not reach a
// running job.
func (w *Worker) loadIdentity(ctx context.Context, tenantID string, req *spec.Request) (*identity.Profile, *spec.Error) {
	if req.Identity == "" {
		return nil, nil
	}
	p, err := w.Identities.Get(ctx, tenantID, req.Identity)
	if errors.Is(err, rdb.ErrIdentityNotFound) {
		return nil, spec.Errorf(CodeIdentityNotFound, false, "identity %q does not exist (deleted after the job was accepted?)", req.Identity)
	}
	if err != nil {
		return nil, spec.Errorf(spec.CodeInternal, true, "load identity: %v", err)
	}
	return p, nil
}

// browserIdentity is the profile as the browser applies it.
func browserIdentity(p *identity.Profile) *browser.Identity {
	if p == nil {
		return nil
	}
	id := &browser.Identity{UserAgent: p.UserAgent, Locale: p.Locale, Timezone: p.Timezone,
		AcceptLanguage: p.AcceptLanguage, Headers: p.Headers}
	if p.Viewport != nil {
		id.Width, id.Height = p.Viewport.Width, p.Viewport.Height
	}
	return id
}
