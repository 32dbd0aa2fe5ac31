package rx_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/testutil/interop"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// The panva/jose examples of docs/prescription-format.md are
// test/interop's scripts, run here in both directions (and end to end,
// against a real trustd, in cmd/rxctl).
func TestPanvaJoseExamples(t *testing.T) {
	f := setup(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root.pem", testpki.PEM(f.p.Root))
	p := f.prescription()
	tok := f.sign(t, p)

	t.Run("panva/jose verifies what Nuskha signs", func(t *testing.T) {
		if id := interop.Node(t, "verify.mjs", write("rx.jws", []byte(tok+"\n")), root); id != p.ID {
			t.Fatalf("jose read id %q, want %q", id, p.ID)
		}
		// And refuses what it must: the example checks, it does not just read.
		foreign := testpki.New(t, nil, time.Now)
		foreignKey := newKey()
		foreignChain := []*x509.Certificate{foreign.Issue(t, "practitioner-signing", f.doctor, foreignKey), foreign.Intermediate}
		foreignTok, err := rx.Sign(f.prescription(), foreignKey, foreignChain, f.now)
		if err != nil {
			t.Fatal(err)
		}
		noCrit := forge(t, func() map[string]any { h := headerOf(tok); delete(h, "crit"); return h }(), payloadOf(tok), f.key)
		otherCrit := forge(t, func() map[string]any { h := headerOf(tok); h["crit"], h["exp"] = []string{"sigT", "exp"}, 1; return h }(), payloadOf(tok), f.key)
		badSigT := forge(t, func() map[string]any { h := headerOf(tok); h["sigT"] = "yesterday"; return h }(), payloadOf(tok), f.key)
		for name, bad := range map[string]string{"chain to another root": foreignTok, "sigT not in crit": noCrit,
			"unknown crit": otherCrit, "sigT not a time": badSigT, "signed by another key": forge(t, headerOf(tok), payloadOf(tok), newKey())} {
			if out, err := interop.Run(t, "verify.mjs", write("bad.jws", []byte(bad)), root); err == nil {
				t.Errorf("%s: verify.mjs accepted it (%s)", name, out)
			}
		}
	})
	t.Run("Nuskha verifies what panva/jose signs", func(t *testing.T) {
		pkcs8, err := x509.MarshalPKCS8PrivateKey(f.key)
		if err != nil {
			t.Fatal(err)
		}
		key := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
		chain := write("chain.pem", append(testpki.PEM(f.chain[0]), testpki.PEM(f.chain[1])...))
		jws := interop.Node(t, "sign.mjs", key, chain, write("payload.json", payloadOf(tok)))
		// sign.mjs stamps sigT with the real clock; the fixture's is a
		// second or so behind, well inside the allowed skew.
		v, err := f.v.Verify(ctx, jws, rx.KindPrescription)
		if err != nil {
			t.Fatal(err)
		}
		if v.Prescription.ID != p.ID {
			t.Fatalf("verified %s, want %s", v.Prescription.ID, p.ID)
		}
	})
}
