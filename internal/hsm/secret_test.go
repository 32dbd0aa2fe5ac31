package hsm_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
)

// TestSecretKeys runs over both backends: HMAC keys give stable MACs that
// differ from key to key, AES keys seal and open with their AAD bound, and
// a key is never replaced, misused as the other kind, or opened with a
// wrong secret.
func TestSecretKeys(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			m, macURI := b.newKeyURI(t, "pseudonym")
			if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
				t.Fatal(err)
			}
			if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); !errors.Is(err, hsm.ErrKeyExists) {
				t.Fatalf("second CreateSecret: got %v, want ErrKeyExists", err)
			}
			mac, err := m.OpenMAC(ctx, macURI)
			if err != nil {
				t.Fatal(err)
			}
			a1, err := mac.Sum([]byte("0499370899"))
			if err != nil {
				t.Fatal(err)
			}
			a2, _ := mac.Sum([]byte("0499370899"))
			other, _ := mac.Sum([]byte("0499370898"))
			if a1 != a2 || a1 == other {
				t.Fatalf("MACs: same input %x / %x, other input %x", a1, a2, other)
			}

			// (SoftHSM2 sees no token made after it was loaded: the second
			// key goes on the same token, as it would in production.)
			_, macURI2 := b.newKeyURI(t, "pseudonym-2")
			macURI2 = sameCustody(t, macURI, macURI2)
			if err := m.CreateSecret(ctx, macURI2, hsm.HMACSHA256); err != nil {
				t.Fatal(err)
			}
			mac2, err := m.OpenMAC(ctx, macURI2)
			if err != nil {
				t.Fatal(err)
			}
			if b1, _ := mac2.Sum([]byte("0499370899")); b1 == a1 {
				t.Fatal("two keys give the same MAC")
			}

			_, aeadURI := b.newKeyURI(t, "seal")
			aeadURI = sameCustody(t, macURI, aeadURI)
			if err := m.CreateSecret(ctx, aeadURI, hsm.AES256GCM); err != nil {
				t.Fatal(err)
			}
			if _, err := m.OpenMAC(ctx, aeadURI); !errors.Is(err, hsm.ErrUnsupportedAlg) {
				t.Fatalf("OpenMAC of an AES key: got %v, want ErrUnsupportedAlg", err)
			}
			if _, err := m.OpenAEAD(ctx, macURI); !errors.Is(err, hsm.ErrUnsupportedAlg) {
				t.Fatalf("OpenAEAD of an HMAC key: got %v, want ErrUnsupportedAlg", err)
			}
			g, err := m.OpenAEAD(ctx, aeadURI)
			if err != nil {
				t.Fatal(err)
			}
			seed := []byte("thirty-two bytes of signing seed")
			sealed, err := g.Seal(seed, []byte("nuskha-audit-note/v1"))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(sealed, seed) {
				t.Fatal("the seed is visible in what was sealed")
			}
			again, _ := g.Seal(seed, []byte("nuskha-audit-note/v1"))
			if bytes.Equal(again, sealed) {
				t.Fatal("two seals of one plaintext are equal: the nonce is not fresh")
			}
			got, err := g.Open(sealed, []byte("nuskha-audit-note/v1"))
			if err != nil || !bytes.Equal(got, seed) {
				t.Fatalf("Open: %q, %v", got, err)
			}
			if _, err := g.Open(sealed, []byte("another purpose")); err == nil {
				t.Fatal("opened under another AAD")
			}
			bad := bytes.Clone(sealed)
			bad[len(bad)-1] ^= 1
			if _, err := g.Open(bad, []byte("nuskha-audit-note/v1")); err == nil {
				t.Fatal("opened a tampered seal")
			}
			if _, err := g.Open(sealed[:10], nil); err == nil {
				t.Fatal("opened a truncated seal")
			}

			// (A token stays logged in while any session of the process
			// is: close ours so that the wrong PIN is really tried.)
			m.Close()
			wm, wrong := b.wrongSecret(t, macURI)
			if _, err := wm.OpenMAC(ctx, wrong); !errors.Is(err, hsm.ErrPINIncorrect) {
				t.Fatalf("wrong secret: got %v, want ErrPINIncorrect", err)
			}
		})
	}
}

// sameCustody returns uri's key name at the place (token or directory) of
// base, so that one manager reaches both.
func sameCustody(t *testing.T, base, uri string) string {
	t.Helper()
	bu, err := hsm.ParseURI(base)
	if err != nil {
		t.Fatal(err)
	}
	u, err := hsm.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	if bu.Scheme == hsm.SchemeSoftKey {
		return hsm.SoftKeyURI(filepath.Join(filepath.Dir(bu.Path["path"]), filepath.Base(u.Path["path"])), bu.Query["pin-source"])
	}
	return hsm.PKCS11URI(bu.Query["module-path"], bu.Path["token"], u.Path["object"], nil, bu.Query["pin-source"])
}

// TestPKCS11HMACKnownAnswer: a generic secret put on a token from outside
// (as an operator would provision the pseudonym key: this opensc's
// pkcs11-tool cannot write generic secrets, so C_CreateObject directly)
// MACs exactly as crypto/hmac does under the same key, found by label.
func TestPKCS11HMACKnownAnswer(t *testing.T) {
	tok := softhsm.NewToken(t, "hmac")
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	importSecret(t, tok, "audit-pseudonym", key)
	m := hsm.NewManager(nil)
	defer m.Close()
	mac, err := m.OpenMAC(context.Background(), hsm.PKCS11URI(tok.Module, tok.Label, "audit-pseudonym", nil, tok.PINFile))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("0499370899")
	got, err := mac.Sum(msg)
	if err != nil {
		t.Fatal(err)
	}
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	if want := h.Sum(nil); !bytes.Equal(got[:], want) {
		t.Fatalf("token HMAC %x, crypto/hmac %x", got, want)
	}
}

// TestPKCS11SecretConcurrentUse: the MAC and the AEAD are used from many
// goroutines at once (every audited request computes a pseudonym).
func TestPKCS11SecretConcurrentUse(t *testing.T) {
	tok := softhsm.NewToken(t, "secrets")
	m := hsm.NewManager(nil)
	defer m.Close()
	ctx := context.Background()
	macURI := hsm.PKCS11URI(tok.Module, tok.Label, "p", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, macURI, hsm.HMACSHA256); err != nil {
		t.Fatal(err)
	}
	mac, err := m.OpenMAC(ctx, macURI)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := mac.Sum([]byte("x"))
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				got, err := mac.Sum([]byte("x"))
				if err == nil && got != want {
					err = errors.New("MAC changed")
				}
				if err != nil {
					errs <- err
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
}

// importSecret creates a CKK_GENERIC_SECRET object holding key on tok
// (before any Manager of this process has the module open).
func importSecret(t *testing.T, tok *softhsm.Token, label string, key []byte) {
	t.Helper()
	loggedIn(t, tok, func(p *pkcs11.Ctx, sess pkcs11.SessionHandle) {
		_, err := p.CreateObject(sess, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, key),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
