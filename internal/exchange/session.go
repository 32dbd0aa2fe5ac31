package exchange

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
)

// ActorView is who acts in a session, as the contract shows it (schema
// Actor).
type ActorView struct {
	Role               string `json:"role"`
	RegistrationNumber string `json:"registration_number"`
	CertificateSerial  string `json:"certificate_serial"`
	Name               string `json:"name,omitempty"`
}

// SessionOpened answers an opened session (schema Session). Token is
// given here once; the exchange keeps only its SHA-256.
type SessionOpened struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Actor     ActorView `json:"actor"`
}

// actors are the roles that open sessions: whoever acts with a card.
var actors = []pki.Role{pki.RolePractitioner, pki.RolePharmacy, pki.RoleParaclinic}

// OpenSession opens a session for the card holder who signed the session
// document (POST /v1/sessions): verified like any document (chain,
// profile practitioner, pharmacy or paraclinic, revocation now), for the
// exchange (aud), issued within SessionSkew of now, naming the calling
// software's certificate (vendor), its id never used before. The token
// (256 random bits) is answered once; the session lasts SessionTTL, never
// past the card certificate's notAfter, and only through caller's
// certificate.
func (s *Service) OpenSession(ctx context.Context, caller Caller, jws string) (*SessionOpened, error) {
	a := s.begin(ActSessionOpen, caller)
	opened, err := s.openSession(ctx, a, caller, jws)
	if err = s.end(ctx, a, err); err != nil {
		return nil, err
	}
	return opened, nil
}

func (s *Service) openSession(ctx context.Context, a *action, caller Caller, jws string) (*SessionOpened, error) {
	v, err := s.verify(ctx, jws, rx.KindSession, "open a session", actors...)
	if err != nil {
		return nil, err
	}
	sd := v.Session
	a.byCard(v.Chain[0], v.Signer.Role, v.Signer.RegistrationNumber)
	a.on("session", sd.ID)
	now := s.cfg.Now()
	switch {
	case sd.Aud != rx.SessionAudience:
		return nil, errs.FieldError(errs.InvalidDocument, "aud", "the session is for %q, not this exchange (%q)", sd.Aud, rx.SessionAudience)
	case sd.IssuedAt.Before(now.Add(-s.cfg.SessionSkew)) || sd.IssuedAt.After(now.Add(s.cfg.SessionSkew)):
		return nil, errs.FieldError(errs.InvalidDocument, "issued_at", "%s is more than %s from the exchange's clock (%s): sign a new session document now",
			sd.IssuedAt.UTC().Format(time.RFC3339), s.cfg.SessionSkew, now.UTC().Format(time.RFC3339))
	case caller.Thumbprint == "" || sd.Vendor != caller.Thumbprint:
		return nil, errs.FieldError(errs.InvalidDocument, "vendor", "is not the thumbprint of the client certificate this request came through")
	}
	leaf := v.Chain[0]
	expires := now.Add(s.cfg.SessionTTL)
	if leaf.NotAfter.Before(expires) {
		expires = leaf.NotAfter
	}
	actor := Actor{CertSerial: certSerial(leaf), Role: string(v.Signer.Role)}
	if v.Signer.Role == pki.RolePractitioner {
		actor.CouncilNumber = v.Signer.RegistrationNumber
	} else {
		actor.Organisation = v.Signer.RegistrationNumber
	}
	chain := make([][]byte, len(v.Chain))
	for i, c := range v.Chain {
		chain[i] = c.Raw
	}
	token, hash := secret()
	err = s.cfg.Store.CreateSession(ctx, a.entry(), &Session{TokenSHA256: hash, DocumentID: sd.ID, Actor: actor, VendorThumbprint: caller.Thumbprint,
		CardChain: chain, CreatedAt: now, ExpiresAt: expires})
	a.stored(err)
	if err != nil {
		return nil, internal(err, "opening a session")
	}
	return &SessionOpened{Token: token, ExpiresAt: expires.UTC(), Actor: ActorView{Role: actor.Role, RegistrationNumber: v.Signer.RegistrationNumber,
		CertificateSerial: actor.CertSerial, Name: leaf.Subject.CommonName}}, nil
}

// Authenticate is who acts with a session token, presented through
// caller's certificate: the session MUST be open and unexpired, opened
// through that same certificate, and its card certificate in good
// standing now (checked on every call, failing closed: no fresh evidence
// is a refusal). Every refusal is unauthenticated. The card's chain is
// the session's, as stored when it was opened (and verified then), so
// any instance honours any session.
func (s *Service) Authenticate(ctx context.Context, caller Caller, token string) (*Actor, error) {
	se, err := s.session(ctx, caller, token)
	if err != nil {
		return nil, err
	}
	chain, err := parseChain(se.CardChain)
	if err != nil || len(chain) < 2 || certSerial(chain[0]) != se.Actor.CertSerial {
		s.cfg.Log.WarnContext(ctx, "a session's card chain is unusable", "serial", se.Actor.CertSerial, "err", err)
		return nil, errs.New(errs.Unauthorized, "the session's card cannot be checked; open a new session")
	}
	st, err := s.cfg.Status.CheckChain(ctx, chain)
	if err == nil {
		err = st.GoodAt(s.cfg.Now())
	}
	if err != nil {
		why := "no fresh evidence of its revocation status can be had now; try again"
		if errs.CodeOf(err) == errs.CertificateRevoked {
			why = "it is revoked or suspended"
		} else {
			s.cfg.Log.WarnContext(ctx, "a session's card certificate status is unknown", "serial", se.Actor.CertSerial, "err", err)
		}
		return nil, errs.Wrap(errs.Unauthorized, err, "the session's card certificate is not in good standing: %s", why)
	}
	a := se.Actor
	a.CertSHA256 = fingerprint(chain[0].Raw)
	return &a, nil
}

// parseChain parses a stored chain of DER certificates.
func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain[i] = c
	}
	return chain, nil
}

// session reads the session of token, if it was opened through caller's
// certificate.
func (s *Service) session(ctx context.Context, caller Caller, token string) (*Session, error) {
	if token == "" {
		return nil, ErrNoSession
	}
	se, err := s.cfg.Store.Session(ctx, hashSecret(token), s.cfg.Now())
	if err != nil {
		return nil, internal(err, "reading a session")
	}
	if se.VendorThumbprint != caller.Thumbprint {
		return nil, errs.New(errs.Unauthorized, "the session was opened through another client certificate; it is usable through that one only")
	}
	return se, nil
}

// EndSession ends the session of token (DELETE /v1/sessions/current),
// presented through the certificate it was opened through.
func (s *Service) EndSession(ctx context.Context, caller Caller, token string) error {
	a := s.begin(ActSessionClose, caller)
	return s.end(ctx, a, s.endSession(ctx, a, caller, token))
}

func (s *Service) endSession(ctx context.Context, a *action, caller Caller, token string) error {
	se, err := s.session(ctx, caller, token)
	if err != nil {
		return err
	}
	a.on("session", se.DocumentID)
	if len(se.CardChain) > 0 {
		actor := se.Actor
		actor.CertSHA256 = fingerprint(se.CardChain[0])
		a.bySession(&actor)
	}
	err = s.cfg.Store.EndSession(ctx, a.entry(), hashSecret(token))
	a.stored(err)
	return internal(err, "ending a session")
}
