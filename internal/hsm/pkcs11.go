package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
)

// PKCS11Keys keeps keys on tokens of one PKCS#11 module: a smart card's
// middleware or an HSM's library (SoftHSM2 in tests). Tokens are selected by
// label, never by slot number, because slot numbers change when tokens are
// added or a reader is re-plugged.
//
// A token that disappears (card pulled, HSM restarted, SoftHSM token directory
// removed) makes operations fail with ErrTokenUnavailable; the next operation
// reconnects — closing the crypto11 context and opening a fresh one, which
// re-initialises the module once no other token of it is open — so a
// daemon recovers without a restart once the token is back.
type PKCS11Keys struct {
	path    string
	readPIN PINReader

	mu     sync.Mutex
	tokens map[string]*token
}

// NewPKCS11Keys returns the backend for the module at path. The module is
// loaded on first use.
func NewPKCS11Keys(path string, readPIN PINReader) *PKCS11Keys {
	if readPIN == nil {
		readPIN = NoPrompt
	}
	return &PKCS11Keys{path: path, readPIN: readPIN, tokens: map[string]*token{}}
}

type token struct {
	module string
	label  string

	mu  sync.Mutex
	pin string // kept to log in again after the token comes back
	ctx *crypto11.Context
	gen uint64 // bumped each time ctx is replaced, so stale key handles are re-found
	// refused is the token's refusal of pin, answered from then on
	// without logging in again: every wrong try counts towards locking
	// the token, and the PIN is only read again by a new process.
	refused error
}

func (p *PKCS11Keys) token(ctx context.Context, u *URI) (*token, error) {
	label := u.Path["token"]
	if label == "" {
		return nil, fmt.Errorf("%w: pkcs11 URI needs token=<label> (slots are not stable)", ErrBadURI)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.tokens[label]; ok {
		return t, nil
	}
	pin, err := readSecret(ctx, u, fmt.Sprintf("token %q", label), p.readPIN)
	if err != nil {
		return nil, err
	}
	t := &token{module: p.path, label: label, pin: string(pin)}
	if _, _, err := t.context(); err != nil {
		return nil, err
	}
	p.tokens[label] = t
	return t, nil
}

// context returns a live crypto11 context for the token, connecting if needed.
func (t *token) context() (*crypto11.Context, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx != nil {
		return t.ctx, t.gen, nil
	}
	if t.refused != nil {
		return nil, 0, t.refused
	}
	if err := probeToken(t.module, t.label, t.pin); err != nil {
		return nil, 0, t.lost(err)
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: t.module, TokenLabel: t.label, Pin: t.pin})
	if err != nil {
		return nil, 0, t.lost(classify(err, t.label))
	}
	t.ctx = c
	t.gen++
	return t.ctx, t.gen, nil
}

// lost names a failure to reconnect to a token this process has used
// before (t.mu held): unavailable, whatever the module said — a token
// half-present while it is re-inserted or its store restored is not found
// or not recognised for a moment, which is no configuration error — but a
// refused PIN, which retrying would not mend and would lock the token, and
// which is kept so that no later call tries it again.
func (t *token) lost(err error) error {
	if errors.Is(err, ErrPINIncorrect) || errors.Is(err, ErrPINLocked) {
		t.refused = err
		return err
	}
	if t.gen == 0 || errors.Is(err, ErrTokenUnavailable) {
		return err
	}
	return fmt.Errorf("%w: token %q: %w", ErrTokenUnavailable, t.label, err)
}

// stale reports whether the context of generation gen has been dropped
// since: another caller found the token gone and closed it, so an
// operation that failed on it failed for that reason.
func (t *token) stale(gen uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ctx == nil || t.gen != gen
}

// invalidate drops the context of generation gen after a failure that means
// the token went away; the next call to context reconnects.
func (t *token) invalidate(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil || t.gen != gen {
		return
	}
	_ = t.ctx.Close()
	t.ctx = nil
}

func (t *token) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx == nil {
		return nil
	}
	err := t.ctx.Close()
	t.ctx = nil
	return err
}

// probeToken checks that the token is present and the PIN is right before
// crypto11.Configure is called. crypto11 (v1.2.5) finalises the whole module
// when Configure cannot find a token or log in, even if other contexts of
// the same module are open; probing first keeps one bad URI from breaking
// every other key of the process, and lets us say exactly what is wrong.
func probeToken(module, label, pin string) error {
	p := pkcs11.New(module)
	if p == nil {
		return fmt.Errorf("%w: %s", ErrModule, module)
	}
	defer p.Destroy()
	err := p.Initialize()
	switch {
	case err == nil:
		defer p.Finalize()
	case isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
	default:
		// The library loaded but cannot start: SoftHSM2 says so when its
		// token store is missing, a smart-card stack when its daemon is down.
		return fmt.Errorf("%w: initialising %s: %w", ErrTokenUnavailable, module, err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("%w: listing slots: %w", ErrTokenUnavailable, err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		info, err := p.GetTokenInfo(s)
		if err == nil && info.Label == label {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: no token labelled %q in %s", ErrTokenNotFound, label, module)
	}
	sess, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("%w: token %q: %w", ErrTokenUnavailable, label, err)
	}
	defer p.CloseSession(sess)
	err = p.Login(sess, pkcs11.CKU_USER, pin)
	switch {
	case err == nil:
		_ = p.Logout(sess)
		return nil
	case isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		return nil
	case isCKR(err, pkcs11.CKR_PIN_INCORRECT), isCKR(err, pkcs11.CKR_PIN_INVALID), isCKR(err, pkcs11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("%w for token %q", ErrPINIncorrect, label)
	case isCKR(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%w for token %q", ErrPINLocked, label)
	}
	return fmt.Errorf("%w: logging in to token %q: %w", ErrTokenUnavailable, label, err)
}

func isCKR(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// gone reports whether err means the token, session or key handle went away,
// so that reconnecting may help.
func gone(err error) bool {
	if errors.Is(err, ErrTokenUnavailable) {
		return true
	}
	for _, c := range []uint{
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED,
	} {
		if isCKR(err, c) {
			return true
		}
	}
	return false
}

func classify(err error, label string) error {
	switch {
	case isCKR(err, pkcs11.CKR_PIN_INCORRECT):
		return fmt.Errorf("%w for token %q", ErrPINIncorrect, label)
	case isCKR(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%w for token %q", ErrPINLocked, label)
	case errors.Is(err, ErrTokenUnavailable):
		return err
	case gone(err):
		return fmt.Errorf("%w: token %q: %w", ErrTokenUnavailable, label, err)
	}
	return fmt.Errorf("hsm: token %q: %w", label, err)
}

// notPermitted names CKR_KEY_FUNCTION_NOT_PERMITTED for what a key did
// before (used): a key does not lose the right to sign, and a token store
// read while it is being restored looks like that, so the token is
// unavailable. For a key that never did, it is the key's own attributes
// (CKA_SIGN false): a configuration error, left as it is.
func notPermitted(err error, used bool, key, label string) error {
	if used && isCKR(err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED) {
		return fmt.Errorf("%w: key %q on token %q, which signed before: %w", ErrTokenUnavailable, key, label, err)
	}
	return err
}

// keyID returns the CKA_ID and CKA_LABEL that select a key.
func keyID(u *URI) (id, label []byte, err error) {
	if v, ok := u.Path["id"]; ok {
		id = []byte(v)
	}
	if v, ok := u.Path["object"]; ok {
		label = []byte(v)
	}
	if id == nil && label == nil {
		return nil, nil, fmt.Errorf("%w: pkcs11 URI needs object=<label> or id=<id>", ErrBadURI)
	}
	return id, label, nil
}

// with runs f on a live context. When f fails because the token went
// away — or because another caller found it gone and closed the context
// under f — the context is dropped and f runs once more on a fresh one;
// failing again, the token is unavailable.
func (t *token) with(f func(c *crypto11.Context, gen uint64) error) error {
	for attempt := 0; ; attempt++ {
		c, gen, err := t.context()
		if err != nil {
			return err
		}
		err = f(c, gen)
		if err == nil {
			return nil
		}
		closedUnder := t.stale(gen)
		if !gone(err) && !closedUnder {
			return err
		}
		t.invalidate(gen)
		switch {
		case attempt == 0:
		case gone(err):
			return classify(err, t.label)
		default:
			// Closed under f twice: the token comes and goes.
			return fmt.Errorf("%w: token %q: %w", ErrTokenUnavailable, t.label, err)
		}
	}
}

// CreateKey generates a key pair on the token. Without an id in the URI, a
// random CKA_ID is chosen so that the certificate can later be paired with it.
func (p *PKCS11Keys) CreateKey(ctx context.Context, u *URI, alg Algorithm) (Key, error) {
	t, err := p.token(ctx, u)
	if err != nil {
		return nil, err
	}
	id, label, err := keyID(u)
	if err != nil {
		return nil, err
	}
	if id == nil {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	var signer crypto11.Signer
	err = t.with(func(c *crypto11.Context, _ uint64) error {
		existing, err := c.FindKeyPair(id, label)
		if err != nil {
			return err
		}
		if existing == nil && u.Path["id"] == "" && label != nil {
			existing, err = c.FindKeyPair(nil, label)
			if err != nil {
				return err
			}
		}
		if existing != nil {
			return fmt.Errorf("%w: %s on token %q", ErrKeyExists, describeKey(u), t.label)
		}
		switch alg {
		case ECP256:
			signer, err = c.GenerateECDSAKeyPairWithLabel(id, label, elliptic.P256())
		case ECP384:
			signer, err = c.GenerateECDSAKeyPairWithLabel(id, label, elliptic.P384())
		case RSA2048:
			signer, err = c.GenerateRSAKeyPairWithLabel(id, label, 2048)
		case RSA3072:
			signer, err = c.GenerateRSAKeyPairWithLabel(id, label, 3072)
		case RSA4096:
			signer, err = c.GenerateRSAKeyPairWithLabel(id, label, 4096)
		default:
			return fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	nu := &URI{Scheme: u.Scheme, Path: map[string]string{"token": t.label, "id": string(id)}, Query: u.Query}
	if label != nil {
		nu.Path["object"] = string(label)
	}
	return newPKCS11Key(t, nu, id, label, signer), nil
}

func describeKey(u *URI) string {
	switch {
	case u.Path["object"] != "" && u.Path["id"] != "":
		return fmt.Sprintf("key %q (id %x)", u.Path["object"], u.Path["id"])
	case u.Path["object"] != "":
		return fmt.Sprintf("key %q", u.Path["object"])
	}
	return fmt.Sprintf("key id %x", u.Path["id"])
}

// OpenKey finds the key pair selected by the URI.
func (p *PKCS11Keys) OpenKey(ctx context.Context, u *URI) (Key, error) {
	t, err := p.token(ctx, u)
	if err != nil {
		return nil, err
	}
	id, label, err := keyID(u)
	if err != nil {
		return nil, err
	}
	var signer crypto11.Signer
	err = t.with(func(c *crypto11.Context, _ uint64) error {
		signer, err = c.FindKeyPair(id, label)
		return err
	})
	if err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, fmt.Errorf("%w: no %s on token %q", ErrKeyNotFound, describeKey(u), t.label)
	}
	return newPKCS11Key(t, u, id, label, signer), nil
}

// StoreCertificate writes cert to the token with the key's CKA_ID and label,
// replacing a certificate already stored for that key.
func (p *PKCS11Keys) StoreCertificate(ctx context.Context, u *URI, cert *x509.Certificate) error {
	k, err := p.OpenKey(ctx, u)
	if err != nil {
		return err
	}
	key := k.(*pkcs11Key)
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return fmt.Errorf("hsm: certificate does not match %s on token %q", describeKey(u), key.tok.label)
	}
	return key.tok.with(func(c *crypto11.Context, gen uint64) error {
		id, err := key.ckaID(c, gen)
		if err != nil {
			return err
		}
		if err := c.DeleteCertificate(id, nil, nil); err != nil {
			return err
		}
		return c.ImportCertificateWithLabel(id, key.label, cert)
	})
}

// LoadCertificate reads the certificate paired with the key.
func (p *PKCS11Keys) LoadCertificate(ctx context.Context, u *URI) (*x509.Certificate, error) {
	k, err := p.OpenKey(ctx, u)
	if err != nil {
		return nil, err
	}
	key := k.(*pkcs11Key)
	var cert *x509.Certificate
	err = key.tok.with(func(c *crypto11.Context, gen uint64) error {
		id, err := key.ckaID(c, gen)
		if err != nil {
			return err
		}
		cert, err = c.FindCertificate(id, nil, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, fmt.Errorf("%w: for %s on token %q", ErrCertNotFound, describeKey(u), key.tok.label)
	}
	return cert, nil
}

// Close logs out of and releases every token of the module.
func (p *PKCS11Keys) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, t := range p.tokens {
		errs = append(errs, t.close())
	}
	p.tokens = map[string]*token{}
	return errors.Join(errs...)
}

type pkcs11Key struct {
	tok       *token
	uri       string
	id, label []byte
	pub       crypto.PublicKey

	signed atomic.Bool // it has signed: see notPermitted

	mu     sync.Mutex
	signer crypto11.Signer
	gen    uint64
}

func newPKCS11Key(t *token, u *URI, id, label []byte, s crypto11.Signer) *pkcs11Key {
	t.mu.Lock()
	gen := t.gen
	t.mu.Unlock()
	return &pkcs11Key{tok: t, uri: u.String(), id: id, label: label, pub: s.Public(), signer: s, gen: gen}
}

func (k *pkcs11Key) URI() string              { return k.uri }
func (k *pkcs11Key) Public() crypto.PublicKey { return k.pub }

// current returns a signer valid for the token's present context, finding
// the key again after a reconnect. The key found MUST be the same key: a
// token swapped for another one with a key of the same label is refused.
func (k *pkcs11Key) current(c *crypto11.Context, gen uint64) (crypto11.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen == gen && k.signer != nil {
		return k.signer, nil
	}
	s, err := c.FindKeyPair(k.id, k.label)
	if err != nil {
		return nil, err
	}
	if s == nil {
		// It was there when opened: the token is not itself now (being
		// re-inserted, its store being restored), and the operator must
		// look — /readyz says so — but a retry may find it.
		return nil, fmt.Errorf("%w: %w: key %q is no longer on token %q", ErrTokenUnavailable, ErrKeyNotFound, k.label, k.tok.label)
	}
	if !publicKeysEqual(s.Public(), k.pub) {
		return nil, fmt.Errorf("%w: key %q on token %q", ErrKeyChanged, k.label, k.tok.label)
	}
	k.signer, k.gen = s, gen
	return s, nil
}

func (k *pkcs11Key) ckaID(c *crypto11.Context, gen uint64) ([]byte, error) {
	if k.id != nil {
		return k.id, nil
	}
	s, err := k.current(c, gen)
	if err != nil {
		return nil, err
	}
	a, err := c.GetAttribute(s, crypto11.CkaId)
	if err != nil {
		return nil, err
	}
	return a.Value, nil
}

// Sign signs on the token. If the token went away since the last call, it
// reconnects once and retries.
func (k *pkcs11Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := k.tok.with(func(c *crypto11.Context, gen uint64) error {
		s, err := k.current(c, gen)
		if err != nil {
			return err
		}
		// The token's own RNG is used; crypto11 ignores the reader for
		// ECDSA and PKCS#1 and the token generates PSS salts.
		sig, err = s.Sign(rand.Reader, digest, opts)
		if err == nil {
			k.signed.Store(true)
		}
		return notPermitted(err, k.signed.Load(), string(k.label), k.tok.label)
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	ab, err1 := x509.MarshalPKIXPublicKey(a)
	bb, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}
