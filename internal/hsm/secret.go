package hsm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
	"go.step.sm/crypto/pemutil"
)

// SecretKind names a kind of secret (symmetric) key.
type SecretKind string

// Secret keys the audit log holds: the pseudonym key (HMAC) and the key that
// seals its checkpoint-signing seed (AES-GCM).
const (
	HMACSHA256 SecretKind = "HMAC-SHA256"
	AES256GCM  SecretKind = "AES-256-GCM"
)

// MAC is HMAC-SHA256 under a key that stays in custody. Implementations MUST
// be safe for concurrent use.
type MAC interface {
	Sum(msg []byte) ([sha256.Size]byte, error)
	URI() string
}

// AEAD is AES-256-GCM under a key that stays in custody. Seal draws a random
// 96-bit nonce and returns nonce‖ciphertext‖tag; Open takes that back.
// Implementations MUST be safe for concurrent use.
type AEAD interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
	URI() string
}

// gcmNonce is the nonce size of every AEAD here: NIST SP 800-38D's 96 bits.
// (crypto11 passes the nonce it is given to the token, whatever length its
// NonceSize reports.)
const gcmNonce = 12

// secretKeys is what each backend does with secret keys.
type secretKeys interface {
	createSecret(ctx context.Context, u *URI, kind SecretKind) error
	openMAC(ctx context.Context, u *URI) (MAC, error)
	openAEAD(ctx context.Context, u *URI) (AEAD, error)
}

func (m *Manager) secrets(raw string) (secretKeys, *URI, error) {
	b, u, err := m.route(raw)
	if err != nil {
		return nil, nil, err
	}
	switch k := b.(type) {
	case *SoftKeys:
		return k, u, nil
	case *PKCS11Keys:
		return k, u, nil
	}
	return nil, nil, fmt.Errorf("%w: %s keys hold no secret keys", ErrBadURI, u.Scheme)
}

// CreateSecret generates a secret key of kind at uri, in custody: on the
// token (sensitive, not extractable) or in a password-encrypted file. It
// MUST fail with ErrKeyExists rather than replace a key already there.
func (m *Manager) CreateSecret(ctx context.Context, uri string, kind SecretKind) error {
	if kind != HMACSHA256 && kind != AES256GCM {
		return fmt.Errorf("%w: secret kind %q (want %s or %s)", ErrUnsupportedAlg, kind, HMACSHA256, AES256GCM)
	}
	b, u, err := m.secrets(uri)
	if err != nil {
		return err
	}
	return b.createSecret(ctx, u, kind)
}

// OpenMAC opens the HMAC-SHA256 key at uri.
func (m *Manager) OpenMAC(ctx context.Context, uri string) (MAC, error) {
	b, u, err := m.secrets(uri)
	if err != nil {
		return nil, err
	}
	return b.openMAC(ctx, u)
}

// OpenAEAD opens the AES-256-GCM key at uri.
func (m *Manager) OpenAEAD(ctx context.Context, uri string) (AEAD, error) {
	b, u, err := m.secrets(uri)
	if err != nil {
		return nil, err
	}
	return b.openAEAD(ctx, u)
}

// A software secret is kept as a PBES2-encrypted PEM block whose plaintext
// starts with a header naming its kind: the header tells a wrong password
// (whose CBC padding still checks out about once in 256 tries) from the
// right one, and an AES key from an HMAC key.
const (
	softSecretPEM    = "NUSKHA ENCRYPTED SECRET KEY"
	softSecretHeader = "nuskha-secret/v1 "
	softSecretLen    = 32
)

func (s *SoftKeys) createSecret(ctx context.Context, u *URI, kind SecretKind) error {
	path, err := softPath(u)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s", ErrKeyExists, path)
	}
	pass, err := readSecret(ctx, u, path, s.readPIN)
	if err != nil {
		return err
	}
	if len(pass) < minPasswordLen {
		return fmt.Errorf("%w: password for %s is shorter than %d characters", ErrPINIncorrect, path, minPasswordLen)
	}
	plain := make([]byte, 0, 64)
	plain = append(plain, softSecretHeader+string(kind)+"\n"...)
	plain = append(plain, make([]byte, softSecretLen)...)
	_, _ = rand.Read(plain[len(plain)-softSecretLen:])
	block, err := pemutil.EncryptPKCS8PrivateKey(rand.Reader, plain, pass, x509.PEMCipherAES256)
	if err != nil {
		return fmt.Errorf("hsm: encrypting secret key: %w", err)
	}
	block.Type = softSecretPEM
	return writeExclusive(path, pem.EncodeToMemory(block))
}

// readSoftSecret decrypts the secret key file at u, which MUST hold a key of
// kind.
func (s *SoftKeys) readSoftSecret(ctx context.Context, u *URI, kind SecretKind) ([]byte, error) {
	path, err := softPath(u)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no key file %s", ErrKeyNotFound, path)
		}
		return nil, fmt.Errorf("hsm: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != softSecretPEM {
		return nil, fmt.Errorf("%w: %s is not an encrypted secret key", ErrKeyNotFound, path)
	}
	pass, err := readSecret(ctx, u, path, s.readPIN)
	if err != nil {
		return nil, err
	}
	plain, err := pemutil.DecryptPKCS8PrivateKey(block.Bytes, pass)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot decrypt %s", ErrPINIncorrect, path)
	}
	kindLine, key, ok := bytes.Cut(plain, []byte("\n"))
	gotKind, isHeader := strings.CutPrefix(string(kindLine), softSecretHeader)
	switch {
	case !ok || !isHeader || len(key) != softSecretLen:
		return nil, fmt.Errorf("%w: %s does not decrypt to a secret key", ErrPINIncorrect, path)
	case SecretKind(gotKind) != kind:
		return nil, fmt.Errorf("%w: %s holds an %s key, not %s", ErrUnsupportedAlg, path, gotKind, kind)
	}
	return key, nil
}

func (s *SoftKeys) openMAC(ctx context.Context, u *URI) (MAC, error) {
	key, err := s.readSoftSecret(ctx, u, HMACSHA256)
	if err != nil {
		return nil, err
	}
	return &softMAC{key: key, uri: u.String()}, nil
}

func (s *SoftKeys) openAEAD(ctx context.Context, u *URI) (AEAD, error) {
	key, err := s.readSoftSecret(ctx, u, AES256GCM)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("hsm: %w", err)
	}
	return &aeadSealer{with: func(f func(cipher.AEAD) error) error { return f(g) }, uri: u.String()}, nil
}

type softMAC struct {
	key []byte
	uri string
}

func (m *softMAC) URI() string { return m.uri }

func (m *softMAC) Sum(msg []byte) ([sha256.Size]byte, error) {
	h := hmac.New(sha256.New, m.key)
	h.Write(msg)
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// aeadSealer frames a cipher.AEAD's output with its nonce. with runs an
// operation with the cipher to use now (a PKCS#11 key's runs it again
// after a reconnect when the token went away).
type aeadSealer struct {
	with func(func(cipher.AEAD) error) error
	uri  string
}

func (a *aeadSealer) URI() string { return a.uri }

func (a *aeadSealer) Seal(plaintext, aad []byte) (sealed []byte, err error) {
	err = a.with(func(g cipher.AEAD) error {
		// Drawn for each try: one that failed on a token may have
		// used it.
		nonce := make([]byte, gcmNonce)
		_, _ = rand.Read(nonce)
		sealed, err = gcmSeal(g, nonce, plaintext, aad)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: sealing: %w", err)
	}
	return sealed, nil
}

// gcmSeal is g.Seal(nonce, nonce, plaintext, aad) with crypto11's panic —
// its Seal has no error to return when the token fails — turned into an
// error, whose PKCS#11 return value (which crypto11 formats into text) is
// recovered for gone and classify.
func gcmSeal(g cipher.AEAD, nonce, plaintext, aad []byte) (sealed []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				e = fmt.Errorf("%v", r)
			}
			sealed, err = nil, unflatten(e)
		}
	}()
	return g.Seal(nonce, nonce, plaintext, aad), nil
}

func (a *aeadSealer) Open(sealed, aad []byte) (plain []byte, err error) {
	if len(sealed) < gcmNonce+16 {
		return nil, errors.New("hsm: sealed data too short")
	}
	err = a.with(func(g cipher.AEAD) error {
		plain, err = g.Open(nil, sealed[:gcmNonce], sealed[gcmNonce:], aad)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: unsealing: %w", err)
	}
	return plain, nil
}

// flattenedRV finds the PKCS#11 return value in an error of crypto11's
// that formatted it into text ("C_Encrypt: pkcs11: 0xB3: …", as
// miekg/pkcs11's Error writes it).
var flattenedRV = regexp.MustCompile(`pkcs11: 0x([0-9A-F]+): `)

// unflatten gives back to err the PKCS#11 return value crypto11 formatted
// into its text (its AEAD does: fmt.Errorf("C_Encrypt: %v", err)), so that
// gone and classify see that the token went away. The text is kept.
func unflatten(err error) error {
	var rv pkcs11.Error
	if err == nil || errors.As(err, &rv) {
		return err
	}
	m := flattenedRV.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	code, perr := strconv.ParseUint(m[1], 16, 32)
	if perr != nil {
		return err
	}
	return flattened{err, pkcs11.Error(code)}
}

// flattened is an error with the PKCS#11 return value it was made from.
type flattened struct {
	error
	rv pkcs11.Error
}

func (f flattened) Unwrap() []error { return []error{f.error, f.rv} }

// PKCS#11 secret keys.

func (p *PKCS11Keys) createSecret(ctx context.Context, u *URI, kind SecretKind) error {
	t, err := p.token(ctx, u)
	if err != nil {
		return err
	}
	id, label, err := keyID(u)
	if err != nil {
		return err
	}
	if id == nil {
		id = make([]byte, 8)
		_, _ = rand.Read(id)
	}
	return t.with(func(c *crypto11.Context, _ uint64) error {
		// A label names one key; without one, the id does.
		byID := []byte(nil)
		if label == nil {
			byID = id
		}
		existing, err := c.FindKey(byID, label)
		if err != nil {
			return err
		}
		if existing != nil {
			return fmt.Errorf("%w: %s on token %q", ErrKeyExists, describeKey(u), t.label)
		}
		// CipherGeneric, not CipherHMACSHA256: the latter tries an nCipher
		// vendor mechanism first, which other tokens (SoftHSM2 among them)
		// refuse with an error crypto11 does not fall back from.
		c11 := crypto11.CipherGeneric
		if kind == AES256GCM {
			c11 = crypto11.CipherAES
		}
		_, err = c.GenerateSecretKeyWithLabel(id, label, 256, c11)
		return err
	})
}

// pkcs11Secret is a secret key on a token, found again after a reconnect.
type pkcs11Secret struct {
	tok       *token
	uri       string
	id, label []byte
	kind      SecretKind

	// kcv, when set, computes the key's check value: a key found again
	// after a reconnect is used only if its value is the one the key gave
	// when opened, so that a token swapped for one holding another key of
	// the same label is refused by every use, not only by the first.
	kcv func(*crypto11.SecretKey) ([sha256.Size]byte, error)

	mu    sync.Mutex
	key   *crypto11.SecretKey
	gen   uint64
	check [sha256.Size]byte // kcv of the key opened
}

func (p *PKCS11Keys) openSecret(ctx context.Context, u *URI, kind SecretKind, kcv func(*crypto11.SecretKey) ([sha256.Size]byte, error)) (*pkcs11Secret, error) {
	t, err := p.token(ctx, u)
	if err != nil {
		return nil, err
	}
	id, label, err := keyID(u)
	if err != nil {
		return nil, err
	}
	s := &pkcs11Secret{tok: t, uri: u.String(), id: id, label: label, kind: kind, kcv: kcv}
	err = t.with(func(c *crypto11.Context, gen uint64) error {
		_, err := s.current(c, gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// current returns the key handle valid for the context of generation gen.
func (s *pkcs11Secret) current(c *crypto11.Context, gen uint64) (*crypto11.SecretKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil && s.gen == gen {
		return s.key, nil
	}
	k, err := c.FindKey(s.id, s.label)
	if err != nil {
		return nil, err
	}
	if k == nil && s.key != nil {
		// Found when opened: the token is not itself now, as for a
		// signing key (pkcs11Key.current).
		return nil, fmt.Errorf("%w: %w: secret key %q is no longer on token %q", ErrTokenUnavailable, ErrKeyNotFound, s.label, s.tok.label)
	}
	if k == nil {
		return nil, fmt.Errorf("%w: no secret key %q on token %q", ErrKeyNotFound, s.label, s.tok.label)
	}
	switch {
	case s.kind == HMACSHA256 && !k.Cipher.MAC, s.kind == AES256GCM && k.Cipher.GCMMech == 0:
		return nil, fmt.Errorf("%w: key %q on token %q is not an %s key", ErrUnsupportedAlg, s.label, s.tok.label, s.kind)
	}
	if s.kcv != nil {
		check, err := s.kcv(k)
		switch {
		case err != nil:
			return nil, err
		case s.key == nil:
			s.check = check
		case check != s.check:
			return nil, fmt.Errorf("%w: secret key %q on token %q", ErrKeyChanged, s.label, s.tok.label)
		}
	}
	s.key, s.gen = k, gen
	return k, nil
}

// use runs f with the key, reconnecting once if the token went away.
func (s *pkcs11Secret) use(f func(k *crypto11.SecretKey) error) error {
	return s.tok.with(func(c *crypto11.Context, gen uint64) error {
		k, err := s.current(c, gen)
		if err == nil {
			err = f(k)
		}
		// Opened, a key has computed its check value: refused its
		// function now, the token is not itself.
		return notPermitted(err, s.kcv != nil, string(s.label), s.tok.label)
	})
}

// macCheck is MACed when a key is opened and again after every reconnect:
// a token swapped for one holding another key of the same label would
// otherwise give other pseudonyms without a word.
var macCheck = []byte("nuskha key check value")

type pkcs11MAC struct{ s *pkcs11Secret }

func (p *PKCS11Keys) openMAC(ctx context.Context, u *URI) (MAC, error) {
	s, err := p.openSecret(ctx, u, HMACSHA256, func(k *crypto11.SecretKey) ([sha256.Size]byte, error) {
		return hmacOn(k, macCheck)
	})
	if err != nil {
		return nil, err
	}
	return &pkcs11MAC{s: s}, nil
}

func (m *pkcs11MAC) URI() string { return m.s.uri }

func (m *pkcs11MAC) Sum(msg []byte) (out [sha256.Size]byte, err error) {
	err = m.s.use(func(k *crypto11.SecretKey) (err error) {
		out, err = hmacOn(k, msg)
		return err
	})
	return out, err
}

// hmacOn MACs msg on the token under k.
func hmacOn(k *crypto11.SecretKey, msg []byte) (out [sha256.Size]byte, err error) {
	h, err := k.NewHMAC(pkcs11.CKM_SHA256_HMAC, 0)
	if err != nil {
		return out, err
	}
	return sumHMAC(h, msg)
}

// sumHMAC is the HMAC of msg through h, a crypto11 HMAC begun (C_SignInit)
// by NewHMAC. A token that fails is an error, never a panic nor a session
// kept from crypto11's pool.
func sumHMAC(h hash.Hash, msg []byte) (out [sha256.Size]byte, err error) {
	// crypto11's Sum panics when the token fails (hash.Hash has no
	// error), and gives its session back to the context's pool only from
	// Sum. If the token fails after C_SignInit and before the first
	// C_SignUpdate succeeds (a card pulled in that instant), Sum panics
	// before it gives the session back (crypto11 v1.2.5 hmac.go; the same
	// in ThalesGroup/crypto11 v1.6.2), and closing that context — which
	// a reconnect does, under the token's lock — would wait for the
	// session for ever, stopping every key of the token and the daemon's
	// shutdown with it: the session is given back here.
	var werr error
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(error)
			if !ok {
				e = fmt.Errorf("hsm: HMAC: %v", r)
			}
			// A C_SignUpdate that failed in Write ended the operation,
			// so Sum's own failure (CKR_OPERATION_NOT_INITIALIZED) says
			// nothing of the token: Write's error is the one a
			// reconnect is decided by.
			if werr != nil {
				e = fmt.Errorf("%w (then, giving the session back: %v)", werr, e)
			}
			err = e
			if !giveBackSession(h) {
				err = fmt.Errorf("%w (and its PKCS#11 session could not be given back: closing the token's context will wait for it)", e)
			}
		}
	}()
	_, werr = h.Write(msg)
	sum := h.Sum(nil)
	if werr != nil {
		return out, werr
	}
	if len(sum) != sha256.Size {
		return out, fmt.Errorf("hsm: HMAC of %d bytes", len(sum))
	}
	return [sha256.Size]byte(sum), nil
}

// giveBackSession gives the session of h, a crypto11 HMAC whose Sum
// panicked, back to its context's pool if Sum did not, and reports
// whether h's session is back. crypto11 offers no way to do it: this calls
// the HMAC's own unexported cleanup (v1.2.5 hmacImplementation: session
// *pkcs11Session, nil once given back; cleanup func(), which gives it
// back and sets session to nil) through reflect and unsafe — the one use
// of either here, pinned by TestPKCS11HMACCardPulledAfterSignInit, which
// fails if crypto11 changes the fields.
func giveBackSession(h hash.Hash) bool {
	v := reflect.ValueOf(h)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	session, cleanup := v.Elem().FieldByName("session"), v.Elem().FieldByName("cleanup")
	if !session.IsValid() || session.Kind() != reflect.Pointer || !cleanup.IsValid() || cleanup.Type() != reflect.TypeFor[func()]() {
		return false
	}
	if session.IsNil() {
		return true // Sum gave it back before it panicked (at C_SignFinal)
	}
	// Unexported: readable by reflect, not callable; v.Elem() is
	// addressable (h is a pointer), so its address gives the value.
	f := *(*func())(unsafe.Pointer(cleanup.UnsafeAddr()))
	if f == nil {
		return false
	}
	return callRecovered(f) && session.IsNil()
}

// callRecovered calls f and reports whether it returned without a panic:
// a cleanup that panics (a pool already broken, a future crypto11) is a
// session not given back, never a second panic out of sumHMAC.
func callRecovered(f func()) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f()
	return true
}

func (p *PKCS11Keys) openAEAD(ctx context.Context, u *URI) (AEAD, error) {
	s, err := p.openSecret(ctx, u, AES256GCM, gcmCheck)
	if err != nil {
		return nil, err
	}
	// Each use finds the key on the live context — checking, after a
	// reconnect, that it is the key opened — and reconnects once if the
	// token went away.
	return &aeadSealer{uri: u.String(), with: func(f func(cipher.AEAD) error) error {
		return s.use(func(k *crypto11.SecretKey) error {
			g, err := k.NewGCM()
			if err != nil {
				return err
			}
			err = f(g)
			if err == nil {
				return nil
			}
			// A token that went away and a seal that does not
			// authenticate can fail alike: SoftHSM2 answers both
			// CKR_GENERAL_ERROR, which gone takes for the token's
			// loss. Whether the key still computes its check value
			// tells them apart: if it does, the data was at fault,
			// and the context is kept.
			if _, cerr := gcmCheck(k); cerr != nil {
				return cerr
			}
			return fmt.Errorf("%v", err)
		})
	}}, nil
}

// gcmCheckAAD is authenticated (GMAC: AES-GCM with no plaintext) under a
// fixed nonce when an AES key is opened and again after every reconnect:
// a token swapped for one holding another key of the same label would
// otherwise seal under it without a word. The nonce is all zeros, the one
// nonce Seal's random ones may meet only by a 2^-96 chance; and the check
// encrypts nothing, so it gives away no key stream.
var gcmCheckAAD = []byte("nuskha key check value")

// gcmCheck is the check value of the AES key k: its GMAC of gcmCheckAAD.
// It is kept in memory only.
func gcmCheck(k *crypto11.SecretKey) (out [sha256.Size]byte, err error) {
	g, err := k.NewGCM()
	if err != nil {
		return out, err
	}
	tag, err := gcmSeal(g, make([]byte, gcmNonce), nil, gcmCheckAAD)
	if err != nil {
		return out, err
	}
	return sha256.Sum256(tag), nil
}
