package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"go.step.sm/crypto/pemutil"
)

// backend is one key custody under test. Every case below runs against each,
// so software keys and a real PKCS#11 token behave the same to callers.
type backend struct {
	name string
	// newKeyURI returns the address of a key that does not exist yet, and
	// a manager that can reach it.
	newKeyURI func(t *testing.T, name string) (*hsm.Manager, string)
	// wrongSecret returns uri with its PIN or password replaced by a wrong one,
	// and a fresh manager (so no cached login hides the mistake).
	wrongSecret func(t *testing.T, uri string) (*hsm.Manager, string)
}

func backends() []backend {
	return []backend{
		{
			name: "softkey",
			newKeyURI: func(t *testing.T, name string) (*hsm.Manager, string) {
				dir := t.TempDir()
				pw := filepath.Join(dir, "pass")
				if err := os.WriteFile(pw, []byte("correct horse battery staple\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				m := hsm.NewManager(nil)
				t.Cleanup(func() { m.Close() })
				return m, hsm.SoftKeyURI(filepath.Join(dir, name+".key"), pw)
			},
			wrongSecret: func(t *testing.T, uri string) (*hsm.Manager, string) {
				u, err := hsm.ParseURI(uri)
				if err != nil {
					t.Fatal(err)
				}
				pw := filepath.Join(t.TempDir(), "wrong")
				os.WriteFile(pw, []byte("not the password at all"), 0o600)
				m := hsm.NewManager(nil)
				t.Cleanup(func() { m.Close() })
				return m, hsm.SoftKeyURI(u.Path["path"], pw)
			},
		},
		{
			name: "pkcs11-softhsm2",
			newKeyURI: func(t *testing.T, name string) (*hsm.Manager, string) {
				tok := softhsm.NewToken(t, "hsmtest")
				m := hsm.NewManager(nil)
				t.Cleanup(func() { m.Close() })
				return m, hsm.PKCS11URI(tok.Module, tok.Label, name, nil, tok.PINFile)
			},
			wrongSecret: func(t *testing.T, uri string) (*hsm.Manager, string) {
				u, err := hsm.ParseURI(uri)
				if err != nil {
					t.Fatal(err)
				}
				pw := filepath.Join(t.TempDir(), "wrong")
				os.WriteFile(pw, []byte("000000"), 0o600)
				m := hsm.NewManager(nil)
				t.Cleanup(func() { m.Close() })
				return m, hsm.PKCS11URI(u.Query["module-path"], u.Path["token"], u.Path["object"], nil, pw)
			},
		},
	}
}

func digest(msg string) []byte {
	d := sha256.Sum256([]byte(msg))
	return d[:]
}

func verify(t *testing.T, pub crypto.PublicKey, d, sig []byte, opts crypto.SignerOpts) {
	t.Helper()
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, d, sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(p, crypto.SHA256, d, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(p, crypto.SHA256, d, sig)
		}
		if err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
}

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				alg  hsm.Algorithm
				opts crypto.SignerOpts
			}{
				{hsm.ECP256, crypto.SHA256},
				{hsm.ECP384, crypto.SHA256},
				{hsm.RSA2048, crypto.SHA256},
				{hsm.RSA2048, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
			} {
				t.Run(string(tc.alg), func(t *testing.T) {
					m, uri := b.newKeyURI(t, "k")
					k, err := m.CreateKey(ctx, uri, tc.alg)
					if err != nil {
						t.Fatalf("CreateKey: %v", err)
					}
					d := digest("prescription")
					sig, err := k.Sign(rand.Reader, d, tc.opts)
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					verify(t, k.Public(), d, sig, tc.opts)
					// Only a key in this process's memory may skip the check
					// of its signatures for a token's faults (rx.Verifier.Sign).
					inProcess := false
					if ip, ok := k.(interface{ InProcess() bool }); ok {
						inProcess = ip.InProcess()
					}
					if want := b.name == "softkey"; inProcess != want {
						t.Fatalf("%s key says InProcess %v, want %v", b.name, inProcess, want)
					}

					reopened, err := m.OpenKey(ctx, k.URI())
					if err != nil {
						t.Fatalf("OpenKey(%s): %v", k.URI(), err)
					}
					if !reopened.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
						t.Fatal("reopened key has a different public key")
					}
					sig, err = reopened.Sign(rand.Reader, d, tc.opts)
					if err != nil {
						t.Fatal(err)
					}
					verify(t, k.Public(), d, sig, tc.opts)
				})
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("key already exists", func(t *testing.T) {
				m, uri := b.newKeyURI(t, "dup")
				if _, err := m.CreateKey(ctx, uri, hsm.ECP256); err != nil {
					t.Fatal(err)
				}
				if _, err := m.CreateKey(ctx, uri, hsm.ECP256); !errors.Is(err, hsm.ErrKeyExists) {
					t.Fatalf("second CreateKey: got %v, want ErrKeyExists", err)
				}
			})
			t.Run("missing key", func(t *testing.T) {
				m, uri := b.newKeyURI(t, "absent")
				if _, err := m.OpenKey(ctx, uri); !errors.Is(err, hsm.ErrKeyNotFound) {
					t.Fatalf("got %v, want ErrKeyNotFound", err)
				}
			})
			t.Run("wrong PIN", func(t *testing.T) {
				m, uri := b.newKeyURI(t, "pin")
				if _, err := m.CreateKey(ctx, uri, hsm.ECP256); err != nil {
					t.Fatal(err)
				}
				m.Close()
				m2, wrong := b.wrongSecret(t, uri)
				_, err := m2.OpenKey(ctx, wrong)
				if !errors.Is(err, hsm.ErrPINIncorrect) {
					t.Fatalf("got %v, want ErrPINIncorrect", err)
				}
			})
			t.Run("no PIN and no prompt", func(t *testing.T) {
				m0, uri := b.newKeyURI(t, "nopin")
				if _, err := m0.CreateKey(ctx, uri, hsm.ECP256); err != nil {
					t.Fatal(err)
				}
				m0.Close()
				u, _ := hsm.ParseURI(uri)
				delete(u.Query, "pin-source")
				m := hsm.NewManager(nil)
				defer m.Close()
				if _, err := m.OpenKey(ctx, u.String()); !errors.Is(err, hsm.ErrNoPIN) {
					t.Fatalf("got %v, want ErrNoPIN", err)
				}
			})
			t.Run("PIN from prompt", func(t *testing.T) {
				m, uri := b.newKeyURI(t, "prompted")
				k, err := m.CreateKey(ctx, uri, hsm.ECP256)
				if err != nil {
					t.Fatal(err)
				}
				u, _ := hsm.ParseURI(uri)
				raw, _ := os.ReadFile(u.Query["pin-source"])
				secret := bytes.TrimSpace(raw)
				m.Close()
				delete(u.Query, "pin-source")
				asked := ""
				m2 := hsm.NewManager(func(_ context.Context, what string) ([]byte, error) {
					asked = what
					return secret, nil
				})
				defer m2.Close()
				k2, err := m2.OpenKey(ctx, u.String())
				if err != nil {
					t.Fatal(err)
				}
				if asked == "" {
					t.Fatal("prompt was not called")
				}
				if !k2.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
					t.Fatal("different key")
				}
			})
		})
	}
}

func TestCertificateBesideKey(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			m, uri := b.newKeyURI(t, "withcert")
			k, err := m.CreateKey(ctx, uri, hsm.ECP256)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.LoadCertificate(ctx, k.URI()); !errors.Is(err, hsm.ErrCertNotFound) {
				t.Fatalf("before store: got %v, want ErrCertNotFound", err)
			}
			cert := selfSigned(t, k, "first")
			if err := m.StoreCertificate(ctx, k.URI(), cert); err != nil {
				t.Fatalf("StoreCertificate: %v", err)
			}
			// Storing again replaces, never duplicates.
			cert2 := selfSigned(t, k, "second")
			if err := m.StoreCertificate(ctx, k.URI(), cert2); err != nil {
				t.Fatalf("StoreCertificate again: %v", err)
			}
			got, err := m.LoadCertificate(ctx, k.URI())
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(cert2) {
				t.Fatalf("loaded %q, want the second certificate", got.Subject.CommonName)
			}
		})
	}
}

func selfSigned(t *testing.T, k crypto.Signer, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConcurrentSigning(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			m, uri := b.newKeyURI(t, "busy")
			k, err := m.CreateKey(ctx, uri, hsm.ECP256)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 25; i++ {
						d := digest(time.Now().String())
						sig, err := k.Sign(rand.Reader, d, crypto.SHA256)
						if err != nil {
							errs <- err
							return
						}
						if !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d, sig) {
							errs <- errors.New("bad signature")
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

func TestPKCS11TokenNotFound(t *testing.T) {
	tok := softhsm.NewToken(t, "present")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "live", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.OpenKey(ctx, hsm.PKCS11URI(tok.Module, "no-such-token", "x", nil, tok.PINFile))
	if !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("got %v, want ErrTokenNotFound", err)
	}
	// A bad URI must not disturb keys already open on the same module.
	if _, err := k.Sign(rand.Reader, digest("still here"), crypto.SHA256); err != nil {
		t.Fatalf("open key broken by a lookup of another token: %v", err)
	}
}

func TestPKCS11KeyMadeByPkcs11Tool(t *testing.T) {
	tok := softhsm.NewToken(t, "opensc")
	// What a practitioner's IT support runs (STACK.md).
	tok.PKCS11Tool(t, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "rx-signing")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	k, err := m.OpenKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "rx-signing", nil, tok.PINFile))
	if err != nil {
		t.Fatal(err)
	}
	d := digest("made elsewhere")
	sig, err := k.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, k.Public(), d, sig, crypto.SHA256)
	// The certificate written back must be visible to pkcs11-tool, paired by id 01.
	cert := selfSigned(t, k, "written back")
	if err := m.StoreCertificate(ctx, k.URI(), cert); err != nil {
		t.Fatal(err)
	}
	out := tok.PKCS11Tool(t, "--list-objects", "--type", "cert")
	if !strings.Contains(string(out), "Certificate Object") || !strings.Contains(string(out), "ID:         01") {
		t.Fatalf("pkcs11-tool does not list the certificate with ID 01:\n%s", out)
	}
}

// A token that disappears and comes back: the key fails with
// ErrTokenUnavailable while it is gone and signs again afterwards, without a
// new Manager (a daemon does not need a restart).
func TestPKCS11TokenComesBack(t *testing.T) {
	tok := softhsm.NewToken(t, "flaky")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "ca", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	d := digest("before")
	if _, err := k.Sign(rand.Reader, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	putBack := tok.Pull(t)
	// The first signature finds the session gone; the next ones try to
	// reconnect and find no token: all are unavailable (a daemon answers
	// 503, come back later), none "not found" (a configuration error).
	for i := range 3 {
		_, err = k.Sign(rand.Reader, d, crypto.SHA256)
		if !errors.Is(err, hsm.ErrTokenUnavailable) {
			t.Fatalf("signature %d while the token is gone: got %v, want ErrTokenUnavailable", i+1, err)
		}
	}
	putBack()
	sig, err := k.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		t.Fatalf("after the token came back: %v", err)
	}
	verify(t, k.Public(), d, sig, crypto.SHA256)
}

// An AES key that is its token's only user: while the token is gone it
// fails with ErrTokenUnavailable, and once the token is back it reconnects
// by itself and seals and unseals again (what it sealed before included).
// A seal that does not authenticate, the token present, is the data's
// fault, not the token's: not ErrTokenUnavailable (a daemon would answer
// "come back later" to a tampered file).
func TestPKCS11AEADTokenComesBack(t *testing.T) {
	tok := softhsm.NewToken(t, "aead-flaky")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	uri := hsm.PKCS11URI(tok.Module, tok.Label, "seal", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, uri, hsm.AES256GCM); err != nil {
		t.Fatal(err)
	}
	aead, err := m.OpenAEAD(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := aead.Seal([]byte("seed"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	putBack := tok.Pull(t)
	for i := range 3 {
		if _, err := aead.Seal([]byte("seed"), []byte("aad")); !errors.Is(err, hsm.ErrTokenUnavailable) {
			t.Fatalf("seal %d while the token is gone: got %v, want ErrTokenUnavailable", i+1, err)
		}
		if _, err := aead.Open(sealed, []byte("aad")); !errors.Is(err, hsm.ErrTokenUnavailable) {
			t.Fatalf("unsealing %d while the token is gone: got %v, want ErrTokenUnavailable", i+1, err)
		}
	}
	putBack()
	again, err := aead.Seal([]byte("seed"), []byte("aad"))
	if err != nil {
		t.Fatalf("seal after the token came back: %v", err)
	}
	for _, s := range [][]byte{sealed, again} {
		if got, err := aead.Open(s, []byte("aad")); err != nil || string(got) != "seed" {
			t.Fatalf("unsealing after the token came back: %q, %v", got, err)
		}
	}
	if _, err := aead.Open(sealed, []byte("another aad")); err == nil || errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Fatalf("a seal that does not authenticate: got %v, want an error that is not ErrTokenUnavailable", err)
	}
	if got, err := aead.Open(sealed, []byte("aad")); err != nil || string(got) != "seed" {
		t.Fatalf("unsealing after a seal that did not authenticate: %q, %v", got, err)
	}
}

// A token swapped for another one under the same label and PIN, holding
// other keys under the same labels: the signing key, the MAC key and the
// AES key it opened MUST keep refusing (ErrKeyChanged) — not only on the
// first use after the swap — and never as "come back later": the
// pseudonyms of an audit log kept under another key, acknowledgements
// signed by it, or a key sealed under it, are not a fault that passes.
func TestPKCS11SwappedTokenIsRefused(t *testing.T) {
	tok := softhsm.NewToken(t, "swapped")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	keyURI := hsm.PKCS11URI(tok.Module, tok.Label, "ack", []byte{1}, tok.PINFile)
	k, err := m.CreateKey(ctx, keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	macURI := hsm.PKCS11URI(tok.Module, tok.Label, "pseudonym", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
		t.Fatal(err)
	}
	mac, err := m.OpenMAC(ctx, macURI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mac.Sum([]byte("x")); err != nil {
		t.Fatal(err)
	}
	aeadURI := hsm.PKCS11URI(tok.Module, tok.Label, "seal", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, aeadURI, hsm.AES256GCM); err != nil {
		t.Fatal(err)
	}
	aead, err := m.OpenAEAD(ctx, aeadURI)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := aead.Seal([]byte("seed"), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Take this token's own directory away (the others of the process
	// stay) and put a new token with the same label and PIN in its place.
	dir := tokenDirOf(t, tok)
	if err := os.Rename(dir, filepath.Join(t.TempDir(), "away")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("softhsm2-util", "--init-token", "--free",
		"--label", tok.Label, "--pin", tok.PIN, "--so-pin", tok.SOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	// The same Manager reconnects to the new token and makes keys there
	// under the old labels and ids (the first attempts may find the old
	// session gone).
	var other hsm.Key
	for i := 0; other == nil; i++ {
		if other, err = m.CreateKey(ctx, keyURI, hsm.ECP256); err != nil && (i == 3 || !errors.Is(err, hsm.ErrTokenUnavailable)) {
			t.Fatalf("making a key on the new token: %v", err)
		}
	}
	if other.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("the new token's key is the old one")
	}
	if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
		t.Fatalf("making a MAC key on the new token: %v", err)
	}
	if err := m.CreateSecret(ctx, aeadURI, hsm.AES256GCM); err != nil {
		t.Fatalf("making an AES key on the new token: %v", err)
	}

	changed := func(err error) bool {
		return errors.Is(err, hsm.ErrKeyChanged) && !errors.Is(err, hsm.ErrTokenUnavailable)
	}
	for i := range 3 {
		if got, err := mac.Sum([]byte("x")); !changed(err) {
			t.Errorf("MAC %d after the swap: got %x, %v, want ErrKeyChanged", i+1, got, err)
		}
	}
	d := digest("swapped")
	for i := range 3 {
		if _, err := k.Sign(rand.Reader, d, crypto.SHA256); !changed(err) {
			t.Errorf("signature %d after the swap: got %v, want ErrKeyChanged", i+1, err)
		}
	}
	for i := range 3 {
		if got, err := aead.Seal([]byte("seed"), nil); !changed(err) {
			t.Errorf("seal %d after the swap: got %x, %v, want ErrKeyChanged", i+1, got, err)
		}
		if got, err := aead.Open(sealed, nil); !changed(err) {
			t.Errorf("unsealing %d after the swap: got %q, %v, want ErrKeyChanged", i+1, got, err)
		}
	}
}

// A PIN the token refuses when the process reconnects (the PIN was changed
// on the token while the daemon ran) is never tried again by later
// operations: every try counts towards locking the token, and a daemon
// under load would lock it within a few requests. The token's
// "user PIN count low" flag, cleared by a good login, tells whether a
// wrong one was tried since.
func TestPKCS11RefusedPINIsNotRetried(t *testing.T) {
	tok := softhsm.NewToken(t, "repinned")
	m := hsm.NewManager(nil)
	defer m.Close()
	k, err := m.CreateKey(context.Background(), hsm.PKCS11URI(tok.Module, tok.Label, "ack", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	d := digest("repinned")
	if _, err := k.Sign(rand.Reader, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	const newPIN = "changed-while-running"
	tok.PKCS11Tool(t, "--change-pin", "--new-pin", newPIN)
	// Take the token away and back so that the next signature reconnects
	// and logs in again.
	dir := tokenDirOf(t, tok)
	away := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, d, crypto.SHA256); !errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Fatalf("signing while the token is away: got %v, want ErrTokenUnavailable", err)
	}
	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, d, crypto.SHA256); !errors.Is(err, hsm.ErrPINIncorrect) {
		t.Fatalf("signing after the PIN changed: got %v, want ErrPINIncorrect", err)
	}
	// The operator logs in with the new PIN: the count of wrong tries is
	// reset.
	if out, err := exec.Command("pkcs11-tool", "--module", tok.Module, "--token-label", tok.Label, "--login", "--pin", newPIN, "-O").CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --login with the new PIN: %v\n%s", err, out)
	}
	if pinCountLow(t, tok) {
		t.Fatal("a good login left the token's user PIN count low")
	}
	for i := range 3 {
		if _, err := k.Sign(rand.Reader, d, crypto.SHA256); !errors.Is(err, hsm.ErrPINIncorrect) {
			t.Fatalf("signature %d after the PIN was refused: got %v, want ErrPINIncorrect", i+1, err)
		}
	}
	if pinCountLow(t, tok) {
		t.Fatal("the refused PIN was tried again")
	}
}

// A key the token does not let sign or MAC (CKA_SIGN false: a
// provisioning mistake) is a configuration error from its first use, not a
// token that went away: "come back later" would be answered to every
// request for good, each of them reconnecting the token under every other
// key.
func TestPKCS11KeyThatMayNotSign(t *testing.T) {
	tok := softhsm.NewToken(t, "nosign")
	ctx := context.Background()
	keyURI := hsm.PKCS11URI(tok.Module, tok.Label, "ack", nil, tok.PINFile)
	macURI := hsm.PKCS11URI(tok.Module, tok.Label, "pseudonym", nil, tok.PINFile)
	m := hsm.NewManager(nil)
	if _, err := m.CreateKey(ctx, keyURI, hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
		t.Fatal(err)
	}
	m.Close()
	setAttribute(t, tok, "ack", pkcs11.CKO_PRIVATE_KEY, pkcs11.NewAttribute(pkcs11.CKA_SIGN, false))
	setAttribute(t, tok, "pseudonym", pkcs11.CKO_SECRET_KEY, pkcs11.NewAttribute(pkcs11.CKA_SIGN, false))

	m = hsm.NewManager(nil)
	defer m.Close()
	k, err := m.OpenKey(ctx, keyURI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(rand.Reader, digest("nosign"), crypto.SHA256); err == nil || errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Errorf("signing with a key that may not sign: got %v, want a refusal that is not ErrTokenUnavailable", err)
	}
	if _, err := m.OpenMAC(ctx, macURI); err == nil || errors.Is(err, hsm.ErrTokenUnavailable) {
		t.Errorf("opening a MAC key that may not MAC: got %v, want a refusal that is not ErrTokenUnavailable", err)
	}
}

// setAttribute sets attr on the object of class and label on tok, through
// a module no Manager of this process has open.
func setAttribute(t *testing.T, tok *softhsm.Token, label string, class uint, attr *pkcs11.Attribute) {
	t.Helper()
	loggedIn(t, tok, func(p *pkcs11.Ctx, sess pkcs11.SessionHandle) {
		if err := p.FindObjectsInit(sess, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}); err != nil {
			t.Fatal(err)
		}
		objs, _, err := p.FindObjects(sess, 2)
		p.FindObjectsFinal(sess)
		if err != nil || len(objs) != 1 {
			t.Fatalf("finding %q: %d objects, %v", label, len(objs), err)
		}
		if err := p.SetAttributeValue(sess, objs[0], []*pkcs11.Attribute{attr}); err != nil {
			t.Fatal(err)
		}
	})
}

// loggedIn runs f in a read-write session of tok's user, through a module
// no Manager of this process has open yet (it initialises and finalises
// the module itself).
func loggedIn(t *testing.T, tok *softhsm.Token, f func(p *pkcs11.Ctx, sess pkcs11.SessionHandle)) {
	t.Helper()
	p := pkcs11.New(tok.Module)
	if p == nil {
		t.Fatal("cannot load", tok.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err != nil || info.Label != tok.Label {
			continue
		}
		sess, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer p.CloseSession(sess)
		if err := p.Login(sess, pkcs11.CKU_USER, tok.PIN); err != nil {
			t.Fatal(err)
		}
		f(p, sess)
		return
	}
	t.Fatalf("no token %q", tok.Label)
}

// pinCountLow reports the token's CKF_USER_PIN_COUNT_LOW flag: a wrong
// user PIN was tried since the last good login.
func pinCountLow(t *testing.T, tok *softhsm.Token) bool {
	t.Helper()
	p := pkcs11.New(tok.Module)
	if p == nil {
		t.Fatal("cannot load", tok.Module)
	}
	defer p.Destroy()
	switch err := p.Initialize(); {
	case err == nil:
		defer p.Finalize()
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		t.Fatal(err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err == nil && info.Label == tok.Label {
			return info.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0
		}
	}
	t.Fatalf("no token %q", tok.Label)
	return false
}

// tokenDirOf finds the directory SoftHSM2 keeps tok in, by its label.
func tokenDirOf(t *testing.T, tok *softhsm.Token) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(tok.Dir, "*", "token.object"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(tok.Label)) {
			return filepath.Dir(f)
		}
	}
	t.Fatalf("no directory of token %q in %s", tok.Label, tok.Dir)
	return ""
}

// A token that comes and goes while many goroutines sign and MAC with it
// (rxd signs acknowledgements and computes pseudonyms concurrently): every
// failure is ErrTokenUnavailable — the caller is told to come back later —
// never "key not found", "token not found" or a context closed under one
// caller by another's reconnect, which a daemon would answer as its own
// failure. Each flap waits for operations to have run with the token away
// and back, so every run exercises both.
//
// It runs in a process of its own, whose token directory holds this one
// token: SoftHSM2 (2.6) aborts the process in C_Initialize when the
// directory is renamed while it reads two or more tokens (an assertion in
// SlotManager::insertToken) — its own defect, which no smart card has.
func TestPKCS11TokenFlapsUnderConcurrentUse(t *testing.T) {
	if !softhsm.InOwnProcess(t, "NUSKHA_HSM_FLAP_CHILD", 0) {
		return
	}
	tok := softhsm.NewToken(t, "flapping")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	k, err := m.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "ack", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	macURI := hsm.PKCS11URI(tok.Module, tok.Label, "pseudonym", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
		t.Fatal(err)
	}
	mac, err := m.OpenMAC(ctx, macURI)
	if err != nil {
		t.Fatal(err)
	}
	wantMAC, err := mac.Sum([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	d := digest("flapping")
	var (
		stop        atomic.Bool
		unavailable atomic.Int64
		mu          sync.Mutex
		wrong       []error
		wg          sync.WaitGroup
	)
	ran := make(chan struct{}, 1)
	use := func(op func() error) {
		defer wg.Done()
		for !stop.Load() {
			err := op()
			switch {
			case errors.Is(err, hsm.ErrTokenUnavailable):
				unavailable.Add(1)
			case err != nil:
				mu.Lock()
				wrong = append(wrong, err)
				mu.Unlock()
			}
			select {
			case ran <- struct{}{}:
			default:
			}
		}
	}
	for range 6 {
		wg.Add(2)
		go use(func() error {
			sig, err := k.Sign(rand.Reader, d, crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d, sig) {
				return errors.New("the signature does not verify")
			}
			return err
		})
		go use(func() error {
			got, err := mac.Sum([]byte("x"))
			if err == nil && got != wantMAC {
				return errors.New("the MAC changed")
			}
			return err
		})
	}
	away := tok.Dir + ".away"
	for range 100 {
		if err := os.Rename(tok.Dir, away); err != nil {
			t.Fatal(err)
		}
		<-ran
		<-ran
		if err := os.Rename(away, tok.Dir); err != nil {
			t.Fatal(err)
		}
		<-ran
		<-ran
	}
	stop.Store(true)
	wg.Wait()
	for i, err := range wrong {
		if i == 5 {
			t.Errorf("… and %d more", len(wrong)-5)
			break
		}
		t.Errorf("while the token came and went: %v (want ErrTokenUnavailable)", err)
	}
	if unavailable.Load() == 0 {
		t.Error("no operation failed while the token was away: the fault was not exercised")
	}
	if _, err := k.Sign(rand.Reader, d, crypto.SHA256); err != nil {
		t.Fatalf("after the token came back for good: %v", err)
	}
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		name, uri string
		wantErr   bool
	}{
		{"pkcs11 with label and id", "pkcs11:token=Nuskha%20CA;object=issuing;id=%01?module-path=/usr/lib/x.so&pin-source=/etc/pin", false},
		{"softkey", "softkey:path=/var/lib/k.key?pin-source=/var/lib/k.pass", false},
		{"pin-value refused", "pkcs11:token=A;object=b?module-path=/x.so&pin-value=1234", true},
		{"pin-value in path refused", "pkcs11:token=A;object=b;pin-value=1234", true},
		{"unknown scheme", "file:/etc/key.pem", true},
		{"no scheme", "just-a-path", true},
		{"duplicate attribute", "pkcs11:token=A;token=B", true},
		{"attribute without value", "pkcs11:token", true},
		{"bad escape", "pkcs11:token=%zz", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.uri)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseURI(%q) error = %v, wantErr %v", tc.uri, err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, hsm.ErrBadURI) {
					t.Fatalf("error %v is not ErrBadURI", err)
				}
				if strings.Contains(err.Error(), "1234") {
					t.Fatalf("error message leaks the PIN: %v", err)
				}
				return
			}
			again, err := hsm.ParseURI(u.String())
			if err != nil || again.String() != u.String() {
				t.Fatalf("round trip: %q -> %q (%v)", u.String(), again.String(), err)
			}
		})
	}
	u, _ := hsm.ParseURI("pkcs11:token=Nuskha%20CA;id=%01")
	if u.Path["token"] != "Nuskha CA" || u.Path["id"] != "\x01" {
		t.Fatalf("decoded %q", u.Path)
	}
}

func TestSoftKeyRefusesPlaintextAndShortPasswords(t *testing.T) {
	dir := t.TempDir()
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	if _, err := m.CreateKey(ctx, hsm.SoftKeyURI(filepath.Join(dir, "a.key"), short), hsm.ECP256); err == nil {
		t.Fatal("a 3-character password was accepted")
	}
	// An unencrypted key file is refused even with a password at hand.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	plain := filepath.Join(dir, "plain.key")
	os.WriteFile(plain, pemEncode("PRIVATE KEY", der), 0o600)
	long := filepath.Join(dir, "long")
	os.WriteFile(long, []byte("a long enough password"), 0o600)
	if _, err := m.OpenKey(ctx, hsm.SoftKeyURI(plain, long)); err == nil {
		t.Fatal("unencrypted key file was accepted")
	}
}

// A wrong password decrypts without a padding error about once in 256
// tries; what comes out is not a key, and that must read as a wrong
// password too. The file here encrypts non-key bytes under the right
// password, which takes the same path every time.
func TestSoftKeyDecryptingToGarbageIsWrongPassword(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("a long enough password"), 0o600)
	block, err := pemutil.EncryptPKCS8PrivateKey(rand.Reader, []byte("not a DER private key at all"), []byte("a long enough password"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "garbage.key")
	os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
	m := hsm.NewManager(nil)
	defer m.Close()
	if _, err := m.OpenKey(context.Background(), hsm.SoftKeyURI(path, pass)); !errors.Is(err, hsm.ErrPINIncorrect) {
		t.Fatalf("got %v, want ErrPINIncorrect", err)
	}
}
