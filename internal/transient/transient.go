// Package transient tells a failure that comes back by itself — the
// database in a failover or short of room, an HSM token pulled — from a
// fault: at the HTTP edge the first is 503 unavailable with Retry-After,
// so that a client sends the same request again, and not 500, which tells
// it to give up. Both daemons' edges use it.
package transient

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
)

// RetryAfter is the Retry-After (seconds) of an unavailable answer: a
// PostgreSQL failover takes seconds, and a client that waits one second
// between attempts neither hammers the daemon nor waits long past it.
const RetryAfter = 1

// Classify is err as errs.Unavailable when it is an internal error caused
// by the database being unreachable (sqlstore.Unavailable) or by an HSM
// token being gone (hsm.ErrTokenUnavailable); any other error as it is —
// an error that already carries a code keeps it.
func Classify(err error) error {
	if err == nil || errs.CodeOf(err) != errs.Internal {
		return err
	}
	switch {
	case sqlstore.Unavailable(err):
		return errs.Wrap(errs.Unavailable, err, "the database is unavailable (a failover?); nothing was done: send the same request again")
	case errors.Is(err, hsm.ErrTokenUnavailable):
		return errs.Wrap(errs.Unavailable, err, "the signing key's token is unavailable; nothing was done: send the same request again")
	}
	return err
}

// Header classifies err and, when it is unavailable, sets Retry-After on
// the answer about to be written; it returns the error to write.
func Header(w http.ResponseWriter, err error) error {
	err = Classify(err)
	if errs.CodeOf(err) == errs.Unavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	return err
}
