package tlog_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/tlog"
)

// custody is where the audit log's secret keys are kept in a test: an
// encrypted key file (the embedded default) or a SoftHSM2 token.
type custody struct {
	name string
	// uri returns the URI of a key called name that does not exist yet,
	// reachable through m.
	setup func(t *testing.T) (m *hsm.Manager, uri func(name string) string)
}

func custodies() []custody {
	return []custody{
		{"softkey", func(t *testing.T) (*hsm.Manager, func(string) string) {
			dir := t.TempDir()
			pw := filepath.Join(dir, "pass")
			if err := os.WriteFile(pw, []byte("correct horse battery staple"), 0o600); err != nil {
				t.Fatal(err)
			}
			m := hsm.NewManager(nil)
			t.Cleanup(func() { m.Close() })
			return m, func(name string) string { return hsm.SoftKeyURI(filepath.Join(dir, name+".key"), pw) }
		}},
		{"pkcs11-softhsm2", func(t *testing.T) (*hsm.Manager, func(string) string) {
			tok := softhsm.NewToken(t, "tlog")
			m := hsm.NewManager(nil)
			t.Cleanup(func() { m.Close() })
			return m, func(name string) string { return hsm.PKCS11URI(tok.Module, tok.Label, name, nil, tok.PINFile) }
		}},
	}
}

// TestPseudonyms: one person, however the id is written, has one
// pseudonym under one key; another person, or another key, another.
func TestPseudonyms(t *testing.T) {
	ctx := context.Background()
	for _, c := range custodies() {
		t.Run(c.name, func(t *testing.T) {
			m, uri := c.setup(t)
			for _, name := range []string{"pseudonym-a", "pseudonym-b"} {
				if err := m.CreateSecret(ctx, uri(name), hsm.HMACSHA256); err != nil {
					t.Fatal(err)
				}
			}
			macA, err := m.OpenMAC(ctx, uri("pseudonym-a"))
			if err != nil {
				t.Fatal(err)
			}
			macB, err := m.OpenMAC(ctx, uri("pseudonym-b"))
			if err != nil {
				t.Fatal(err)
			}
			a, b := tlog.NewPseudonyms(macA), tlog.NewPseudonyms(macB)
			p1, err := a.Of("0499370899")
			if err != nil {
				t.Fatal(err)
			}
			for _, written := range []string{"049-937089-9", "۰۴۹۹۳۷۰۸۹۹", "499370899", " 0499370899 "} {
				p, err := a.Of(written)
				if err != nil || p != p1 {
					t.Fatalf("Of(%q) = %x, %v; want %x", written, p, err, p1)
				}
			}
			other, err := a.Of("0013542419")
			if err != nil || other == p1 {
				t.Fatalf("another person: %x, %v", other, err)
			}
			underB, err := b.Of("0499370899")
			if err != nil || underB == p1 {
				t.Fatalf("another key: %x, %v", underB, err)
			}
			if p1.IsZero() {
				t.Fatal("zero pseudonym")
			}
			if _, err := a.Of("0499370898"); errs.CodeOf(err) != errs.InvalidNID {
				t.Fatalf("a bad check digit: got %v, want %s", err, errs.InvalidNID)
			}
		})
	}
}

// TestNoteKeySealed: the checkpoint key is sealed under the custody's AES
// key, opens back to a key that signs for its verifier key, and does not
// open under another AES key, nor with its verifier key line changed.
func TestNoteKeySealed(t *testing.T) {
	ctx := context.Background()
	for _, c := range custodies() {
		t.Run(c.name, func(t *testing.T) {
			m, uri := c.setup(t)
			for _, name := range []string{"seal", "other-seal"} {
				if err := m.CreateSecret(ctx, uri(name), hsm.AES256GCM); err != nil {
					t.Fatal(err)
				}
			}
			aead, err := m.OpenAEAD(ctx, uri("seal"))
			if err != nil {
				t.Fatal(err)
			}
			sealed, vkey, err := tlog.GenerateNoteKey(aead, "audit.nuskha.example/rxd/k1")
			if err != nil {
				t.Fatal(err)
			}
			k, err := tlog.OpenNoteKey(aead, sealed)
			if err != nil {
				t.Fatal(err)
			}
			if k.VerifierKey() != vkey || k.Verifier().Name() != "audit.nuskha.example/rxd/k1" {
				t.Fatalf("opened %q, made %q", k.VerifierKey(), vkey)
			}
			other, err := m.OpenAEAD(ctx, uri("other-seal"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tlog.OpenNoteKey(other, sealed); !errors.Is(err, tlog.ErrSealedKey) {
				t.Fatalf("under another AES key: got %v, want ErrSealedKey", err)
			}
			_, vkey2, _ := tlog.GenerateNoteKey(aead, "audit.nuskha.example/rxd/k2")
			swapped := []byte(string(sealed[:len("nuskha-sealed-note-key/v1\n")]) + vkey2 + string(sealed[len("nuskha-sealed-note-key/v1\n")+len(vkey):]))
			if _, err := tlog.OpenNoteKey(aead, swapped); !errors.Is(err, tlog.ErrSealedKey) {
				t.Fatalf("with another verifier key: got %v, want ErrSealedKey", err)
			}
		})
	}
}
