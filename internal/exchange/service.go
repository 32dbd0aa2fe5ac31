package exchange

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
)

// The service's dependencies, each as narrow as it uses them.
type (
	// Verifier verifies a signed document (rx.Verifier).
	Verifier interface {
		Verify(ctx context.Context, token string, want rx.Kind) (*rx.Verified, error)
	}
	// SigningVerifier is a Verifier that also signs, checking the signer
	// as it would verify it (rx.Verifier).
	SigningVerifier interface {
		Verifier
		Sign(ctx context.Context, doc rx.Document, key crypto.Signer, chain []*x509.Certificate, sigT time.Time) (string, error)
	}
	// Adjudicator judges a prescription, dispense or paper prescription
	// and records what was dispensed (adjudicate.Adjudicator).
	Adjudicator interface {
		Check(ctx context.Context, req adjudicate.Request) (*adjudicate.Decision, error)
		Commit(ctx context.Context, dec *adjudicate.Decision, dispenseID string, at time.Time) error
	}
)

// SigningKey is the exchange's own key for acknowledgements and receipts:
// a key in the HSM and its certificate (profile exchange-receipt-signing)
// with the intermediate(s), leaf first.
type SigningKey struct {
	Signer crypto.Signer
	Chain  []*x509.Certificate
}

// Config is what a Service is made of. Store, Verifier, Reverifier,
// Status, Adjudicator, Key, Arc, Now, Pseudonyms and AuditLog are
// required.
type Config struct {
	Store Store
	// Verifier verifies documents as they arrive (revocation as of now,
	// failing closed) and signs the exchange's own.
	Verifier SigningVerifier
	// Reverifier verifies stored documents again (lookup, claim,
	// dispense): an rx.Verifier whose status checker is wrapped by
	// AtAcceptance, so that a revocation is judged against the time the
	// exchange accepted the document, and with a MaxAge covering the
	// last fill of a chronic prescription.
	Reverifier Verifier
	// Status checks a session's card certificate on every call.
	Status rx.StatusChecker
	// Adjudicator decides coverage and records dispenses.
	Adjudicator Adjudicator
	// Key signs acknowledgements and receipts.
	Key SigningKey
	// Arc reads the identity extension of certificates.
	Arc pki.Arc
	Now func() time.Time
	Log *slog.Logger
	// Pseudonyms name patients in the audit log, and AuditLog takes the
	// entries of refusals and reads (a write's goes with it to the Store):
	// both required.
	Pseudonyms Pseudonyms
	AuditLog   AuditLog

	// WindowDays is how long each fill may be dispensed
	// [DefaultWindowDays].
	WindowDays int
	// ClaimTTL is how long a claim holds [2h].
	ClaimTTL time.Duration
	// SessionTTL is the longest a session lasts (never past the card
	// certificate's notAfter) [12h].
	SessionTTL time.Duration
	// SessionSkew is how far a session document's issued_at may be from
	// now [5m].
	SessionSkew time.Duration
}

// Service is the exchange's domain logic between the HTTP API and the
// Store: every document is verified, every actor's role checked and every
// decision adjudicated before anything is stored. Its methods map one to
// one to the operations of api/openapi.yaml, and their answers are the
// contract's schemas. Refusals are *errs.Error (or carry one: errs.CodeOf).
type Service struct {
	cfg Config
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil, cfg.Verifier == nil, cfg.Reverifier == nil, cfg.Status == nil, cfg.Adjudicator == nil, cfg.Now == nil:
		return nil, errors.New("exchange: the service needs a store, verifiers, a status checker, an adjudicator and a clock")
	case cfg.Pseudonyms == nil || cfg.AuditLog == nil:
		return nil, errors.New("exchange: the service needs the audit log and its pseudonyms: every action is recorded")
	case cfg.Key.Signer == nil || len(cfg.Key.Chain) < 2:
		return nil, errors.New("exchange: the service needs its signing key with its certificate chain")
	case cfg.WindowDays < 0 || cfg.ClaimTTL < 0 || cfg.SessionTTL < 0 || cfg.SessionSkew < 0:
		return nil, errors.New("exchange: negative durations")
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = 2 * time.Hour
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SessionSkew == 0 {
		cfg.SessionSkew = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}, nil
}

// Caller is the software calling: the TLS client certificate the request
// came through (profile service-tls-client), already verified and checked
// for revocation by the HTTP edge.
type Caller struct {
	Role      pki.Role // vendor or service
	SubjectID string
	// Thumbprint is the certificate's x5t#S256 (rx.Thumbprint): sessions
	// are bound to it.
	Thumbprint string
	// CertSHA256 is the certificate's SHA-256, lowercase hex: how the
	// audit log names the caller.
	CertSHA256 string
}

// roleNotAllowed is the refusal of an act the actor's role may not do.
func roleNotAllowed(role pki.Role, act string) error {
	if role == "" {
		role = "caller"
	}
	return errs.New(errs.RoleNotAllowed, "a %s may not %s", role, act)
}

// claimedRole is the role the leaf certificate of a token's x5c claims,
// read without verifying anything: used only to say why a document whose
// verification already failed on its certificate profile was refused.
func (s *Service) claimedRole(token string) pki.Role {
	var header struct {
		X5c []string `json:"x5c"`
	}
	i := 0
	for i < len(token) && token[i] != '.' {
		i++
	}
	raw, err := base64.RawURLEncoding.DecodeString(token[:i])
	if err != nil || json.Unmarshal(raw, &header) != nil || len(header.X5c) == 0 {
		return ""
	}
	der, err := base64.StdEncoding.DecodeString(header.X5c[0])
	if err != nil {
		return ""
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	id, err := s.cfg.Arc.IdentityOf(leaf)
	if err != nil {
		return ""
	}
	return id.Role
}

// verify verifies a document arriving for an act that only roles may do.
// A document signed with another role's certificate is refused as
// role-not-allowed (the verifier calls it a wrong certificate profile).
func (s *Service) verify(ctx context.Context, token string, kind rx.Kind, act string, roles ...pki.Role) (*rx.Verified, error) {
	v, err := s.cfg.Verifier.Verify(ctx, token, kind)
	if err != nil {
		if errs.CodeOf(err) == errs.WrongCertProfile {
			if r := s.claimedRole(token); r != "" && !slices.Contains(roles, r) {
				return nil, roleNotAllowed(r, act)
			}
		}
		return nil, err
	}
	if !slices.Contains(roles, v.Signer.Role) {
		return nil, roleNotAllowed(v.Signer.Role, act)
	}
	return v, nil
}

// secret draws a 256-bit secret, base64url, and its SHA-256.
func secret() (string, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	s := base64.RawURLEncoding.EncodeToString(b[:])
	return s, hashSecret(s)
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func certSerial(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// internal wraps an unexpected failure (a store that cannot be written, a
// key that cannot sign) for the log; callers see errs.Internal.
func internal(err error, what string) error {
	if err == nil || errs.CodeOf(err) != errs.Internal {
		return err
	}
	return fmt.Errorf("exchange: %s: %w", what, err)
}
