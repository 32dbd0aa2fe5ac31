package httpedge

import (
	"errors"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// Classify recodes as errs.Unavailable a failure that is internal only
// because a dependency is down — the database does not answer or is
// read-only (sqlstore.Unavailable), the HSM token is gone
// (hsm.ErrTokenUnavailable) — so that the caller is told to retry
// (503, Retry-After) rather than that the server failed. Both daemons'
// problem writers pass every failure through it; a refusal with its own
// code is left as it is.
func Classify(err error) error {
	if err == nil || errs.CodeOf(err) != errs.Internal {
		return err
	}
	switch {
	case errors.Is(err, hsm.ErrTokenUnavailable):
		return errs.Wrap(errs.Unavailable, err, "the HSM token is not available now; nothing was stored")
	case sqlstore.Unavailable(err):
		return errs.Wrap(errs.Unavailable, err, "the database is not available now; send the same request again — if the connection was lost while committing it may have been stored, and the retry is then answered as its replay")
	}
	return err
}
