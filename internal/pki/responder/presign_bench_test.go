package responder_test

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/responder"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"golang.org/x/crypto/ocsp"
)

// BenchmarkPresign is a sync's signing: every live certificate's
// responses signed in advance (Refresh after Track), with the responder
// key in memory and on SoftHSM2 (as trustd keeps it). It reports the time
// per sync and the responses signed per second.
func BenchmarkPresign(b *testing.B) {
	ctx := context.Background()
	tok := softhsm.NewToken(b, "bench-presign")
	keys := hsm.NewManager(nil)
	defer keys.Close()
	onHSM, err := keys.CreateKey(ctx, hsm.PKCS11URI(tok.Module, tok.Label, "ocsp", nil, tok.PINFile), hsm.ECP256)
	if err != nil {
		b.Fatal(err)
	}
	p := testpki.New(b, nil, time.Now)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, key := range []struct {
		name string
		key  crypto.Signer
	}{{"memory", newKey()}, {"softhsm", onHSM}} {
		cred := responder.Credential{Cert: p.Issue(b, "ocsp-responder", testpki.Subject(pki.RoleService, "sub_o", time.Now()), key.key), Key: key.key}
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", key.name, n), func(b *testing.B) {
				r, err := responder.New(responder.Config{Issuer: p.Intermediate, Now: time.Now, Log: log})
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					r.Track(responder.Record{Serial: big.NewInt(int64(i + 1)), Status: ocsp.Good, NotAfter: time.Now().Add(time.Hour)})
				}
				signed := 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					// A new credential drops every response: the next
					// Refresh signs them all, as at start.
					if err := r.SetCredential(cred); err != nil {
						b.Fatal(err)
					}
					s, err := r.Refresh()
					if err != nil {
						b.Fatal(err)
					}
					signed += s
				}
				b.ReportMetric(float64(signed)/b.Elapsed().Seconds(), "responses/s")
				b.ReportMetric(float64(signed)/float64(b.N)/float64(n), "responses/cert")
			})
		}
	}
}
