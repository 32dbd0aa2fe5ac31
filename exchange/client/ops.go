package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// One method per operation of api/openapi.yaml's exchange tag. Each is
// safe to retry (package doc) and retried as Config says.

// Ready asks rxd whether it can serve now (GET /readyz, once, with no
// retry): nil when it can, else the *Problem it answered (503
// unavailable, listing the failed checks in Raw) or why no answer came. The
// TLS connection it opens, client certificate and all, stays open for
// the calls that follow: a caller about to send many at once can open
// its connections first.
func (c *Client) Ready(ctx context.Context) error {
	_, _, _, err := c.once(ctx, request{method: http.MethodGet, path: "/readyz"}, http.Header{})
	return err
}

// OpenSession posts a session document signed on the actor's card (a
// compact JWS; see SignSession) and keeps the token rxd answers for the
// calls that need a session.
func (c *Client) OpenSession(ctx context.Context, sessionJWS string) (*Session, error) {
	var s Session
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/sessions", contentType: typeJOSE, body: jws(sessionJWS), idempotent: true}, &s); err != nil {
		return nil, err
	}
	if s.Token == "" {
		return nil, errors.New("client: rxd opened a session without a token")
	}
	c.setToken(s.Token)
	return &s, nil
}

// EndSession ends the session the Client holds and forgets its token. A
// session already ended or expired is not an error.
func (c *Client) EndSession(ctx context.Context) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/sessions/current", session: true}, nil)
	if errors.Is(err, ErrNoSession) {
		return nil
	}
	if IsCode(err, "unauthenticated") {
		// Ended before (a retry of a lost answer) or expired: either way
		// the token is dead, which is what was asked.
		err = nil
	}
	if err == nil {
		c.setToken("")
	}
	return err
}

// Prescribe submits a prescription signed on a practitioner's card.
func (c *Client) Prescribe(ctx context.Context, prescriptionJWS string) (*PrescriptionAccepted, error) {
	var a PrescriptionAccepted
	status, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/prescriptions", contentType: typeJOSE, body: jws(prescriptionJWS)}, &a)
	if err != nil {
		return nil, err
	}
	a.Replayed = status == http.StatusOK
	return &a, nil
}

// Lookup finds a prescription by tracking code and national id (a
// pharmacy's or centre's session).
func (c *Client) Lookup(ctx context.Context, f Find) (*PrescriptionView, error) {
	var v PrescriptionView
	if _, err := c.postJSON(ctx, "/v1/prescriptions/lookup", f, true, false, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Claim takes an exclusive hold on a prescription for the session's
// organisation. Claiming again from the same organisation gives the claim
// back with a new secret.
func (c *Client) Claim(ctx context.Context, f Find) (*ClaimGranted, error) {
	var g ClaimGranted
	if _, err := c.postJSON(ctx, "/v1/claims", f, true, true, nil, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// Release gives a claim up without closing it.
func (c *Client) Release(ctx context.Context, claimID, secret string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/claims/" + url.PathEscape(claimID),
		header: secretHeader(secret), session: true, idempotent: true}, nil)
	return err
}

// Dispense records a dispense (or performance) record signed on a card of
// the claiming organisation, under the claim.
func (c *Client) Dispense(ctx context.Context, claimID, secret, dispenseJWS string) (*DispenseAccepted, error) {
	var a DispenseAccepted
	status, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/claims/" + url.PathEscape(claimID) + "/dispenses",
		contentType: typeJOSE, body: jws(dispenseJWS), header: secretHeader(secret), session: true}, &a)
	if err != nil {
		return nil, err
	}
	a.Replayed = status == http.StatusOK
	return &a, nil
}

// Close ends the visit and returns the receipt signed by the exchange; a
// repeated close returns the same receipt.
func (c *Client) Close(ctx context.Context, claimID, secret string) (*Closed, error) {
	var out Closed
	if _, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/claims/" + url.PathEscape(claimID) + "/close",
		header: secretHeader(secret), session: true, idempotent: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cancel submits a cancellation signed by the prescription's prescriber.
func (c *Client) Cancel(ctx context.Context, prescriptionID, cancellationJWS string) (*CancellationAccepted, error) {
	var a CancellationAccepted
	status, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/prescriptions/" + url.PathEscape(prescriptionID) + "/cancellations",
		contentType: typeJOSE, body: jws(cancellationJWS)}, &a)
	if err != nil {
		return nil, err
	}
	a.Replayed = status == http.StatusOK
	return &a, nil
}

// Paper enters a paper prescription signed on the pharmacy's card, and
// what was dispensed of it.
func (c *Client) Paper(ctx context.Context, paperJWS string) (*PaperAccepted, error) {
	var a PaperAccepted
	status, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/paper-prescriptions", contentType: typeJOSE, body: jws(paperJWS)}, &a)
	if err != nil {
		return nil, err
	}
	a.Replayed = status == http.StatusOK
	return &a, nil
}

// History reads a page of a patient's history (service callers: the
// insurer's systems, the patient portal).
func (c *Client) History(ctx context.Context, q HistoryQuery) (*HistoryPage, error) {
	var p HistoryPage
	if _, err := c.postJSON(ctx, "/v1/patient-history", q, false, false, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// AccessLog reads a page of a patient's access log: who acted on the
// patient's prescriptions, newest first, from rxd's audit log (service
// callers: the insurer's systems, the patient portal).
func (c *Client) AccessLog(ctx context.Context, q AccessLogQuery) (*AccessLogPage, error) {
	var p AccessLogPage
	if _, err := c.postJSON(ctx, "/v1/patient-access-log", q, false, false, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (c *Client) postJSON(ctx context.Context, path string, in any, session, idempotent bool, header http.Header, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	return c.do(ctx, request{method: http.MethodPost, path: path, contentType: typeJSON, body: body, header: header,
		session: session, idempotent: idempotent}, out)
}

func secretHeader(secret string) http.Header { return http.Header{"Claim-Secret": {secret}} }

// jws is a compact JWS as sent: the file it was read from may end in a
// newline.
func jws(s string) []byte { return []byte(strings.TrimSpace(s)) }
