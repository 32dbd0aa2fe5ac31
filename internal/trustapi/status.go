package trustapi

import (
	"errors"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/httpedge"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/pki/holder"
	"github.com/nuskha/nuskha/internal/problem"
	"github.com/nuskha/nuskha/internal/revoke"
)

// statusView is a certificate's status as the API shows it.
type statusView struct {
	Serial      string     `json:"serial"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason,omitempty"`
	EffectiveAt *time.Time `json:"since,omitempty"`
}

func viewStatus(r revoke.Record) statusView {
	v := statusView{Serial: pki.SerialHex(r.Serial), Status: string(r.Status)}
	if r.Status != revoke.Good {
		at := r.EffectiveAt
		v.Reason, v.EffectiveAt = r.Reason.String(), &at
	}
	return v
}

func serialParam(r *http.Request) (*big.Int, error) {
	serial, ok := pki.ParseSerialHex(r.PathValue("serial"))
	if !ok {
		return nil, errs.FieldError(errs.Malformed, "serial", "a serial is 1 to 20 bytes of hex")
	}
	return serial, nil
}

func (a *API) certificateStatus(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.store.CertificateStatus(r.Context(), serial)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, viewStatus(st))
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	serial, err := serialParam(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var in struct {
		Reason string `json:"reason"`
	}
	if err := httpedge.Decode(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	reason, ok := revoke.ParseReason(in.Reason)
	if !ok {
		a.fail(w, r, errs.FieldError(errs.ReasonNotAllowed, "reason", "unknown reason %q", in.Reason))
		return
	}
	rec, err := a.cfg.Revoke.Revoke(r.Context(), officerFrom(r.Context()), serial, reason)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, viewStatus(rec))
}

// holderRevocation takes a compact JWS signed with the certificate's own
// key. Anyone may send one, so requests are throttled per client address
// and in total, and refusals before the signature is checked are counted
// (audit.Tally), not recorded one by one.
func (a *API) holderRevocation(w http.ResponseWriter, r *http.Request) {
	refuse := func(err error) {
		a.cfg.Refusals.Count(revoke.Holder, revoke.ActionRevoke, errs.CodeOf(err))
		a.fail(w, r, err)
	}
	if ok, wait := a.writes.allow(r.RemoteAddr); !ok {
		s := retryAfter(wait)
		w.Header().Set("Retry-After", strconv.Itoa(s))
		refuse(errs.New(errs.RateLimited, "too many revocation requests from your address, or from everyone; retry in %d s", s))
		return
	}
	if err := problem.CheckBody(r, "application/jose"); err != nil {
		refuse(err)
		return
	}
	// The route caps the body at holder.MaxSize.
	body, err := io.ReadAll(r.Body)
	if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
		refuse(errs.New(errs.TooLarge, "a revocation request is at most %d bytes", holder.MaxSize))
		return
	}
	if err != nil {
		refuse(errs.New(errs.Malformed, "the body could not be read"))
		return
	}
	rec, err := a.cfg.Revoke.RevokeByHolder(r.Context(), string(body))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, viewStatus(rec))
}

func (a *API) requestChange(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Serial  string `json:"serial"`
		Action  string `json:"action"`
		Reason  string `json:"reason"` // for action revoke only
		Comment string `json:"comment"`
	}
	if err := httpedge.Decode(r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	serial, ok := pki.ParseSerialHex(in.Serial)
	if !ok {
		a.fail(w, r, errs.FieldError(errs.Malformed, "serial", "a serial is 1 to 20 bytes of hex"))
		return
	}
	var c *revoke.Change
	var err error
	switch reason, known := revoke.ParseReason(in.Reason); {
	case revoke.Action(in.Action) != revoke.Revocation && in.Reason != "":
		err = errs.FieldError(errs.Invalid, "reason", "only a revocation (action revoke) has a reason")
	case revoke.Action(in.Action) != revoke.Revocation:
		c, err = a.cfg.Revoke.RequestChange(r.Context(), officerFrom(r.Context()), serial, revoke.Action(in.Action), in.Comment)
	case in.Reason == "":
		err = errs.FieldError(errs.Invalid, "reason", "a revocation needs a reason")
	case !known:
		err = errs.FieldError(errs.ReasonNotAllowed, "reason", "unknown reason %q", in.Reason)
	default:
		c, err = a.cfg.Revoke.RequestRevocation(r.Context(), officerFrom(r.Context()), serial, reason, in.Comment)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/admin/v1/status-changes/"+c.ID)
	problem.JSON(w, http.StatusCreated, c)
}

func (a *API) decideChange(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Comment string `json:"comment"`
		}
		if err := httpedge.Decode(r, &in); err != nil {
			a.fail(w, r, err)
			return
		}
		c, err := a.cfg.Revoke.DecideChange(r.Context(), officerFrom(r.Context()), r.PathValue("id"), approve, in.Comment)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		problem.JSON(w, http.StatusOK, c)
	}
}

func (a *API) listChanges(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	list, err := a.cfg.Revoke.Changes(r.Context(), r.URL.Query().Get("pending") == "true", limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []*revoke.Change{}
	}
	problem.JSON(w, http.StatusOK, map[string]any{"status_changes": list})
}

func (a *API) getChange(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Revoke.Change(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusOK, c)
}

// regenerateCRL publishes a new CRL now (after an incident, say).
func (a *API) regenerateCRL(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Status.GenerateCRL(r.Context())
	if err := a.record(r, "crl.regenerate", "crl", err, nil); err != nil {
		var e *errs.Error
		if !errors.As(err, &e) {
			err = errs.Wrap(errs.Unavailable, err, "generating the CRL")
		}
		a.fail(w, r, err)
		return
	}
	problem.JSON(w, http.StatusCreated, map[string]any{"number": c.Number, "this_update": c.ThisUpdate, "next_update": c.NextUpdate, "entries": c.Entries})
}

func (a *API) trustBundle(w http.ResponseWriter, r *http.Request) {
	b, err := a.cfg.Status.Bundle(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", bundle.ContentType)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
