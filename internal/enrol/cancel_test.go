package enrol_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

// cancelAtIntent cancels the caller's context once the intent to sign is
// recorded: the client hangs up, or trustd stops, while the key signs.
type cancelAtIntent struct {
	audit.Recorder
	cancel func()
}

func (c cancelAtIntent) Record(ctx context.Context, e audit.Event) error {
	err := c.Recorder.Record(ctx, e)
	if e.Action == "certificate.issue" && e.Outcome == audit.Intent {
		c.cancel()
	}
	return err
}

// TestIssuanceOutlivesItsContext: a certificate the key was asked to sign
// is recorded and its outcome audited even when the caller's context ends
// as it is signed — an approval whose officer hangs up, a credential
// renewal (Bootstrap) as trustd stops.
func TestIssuanceOutlivesItsContext(t *testing.T) {
	h := newHarness(t)
	log := slog.New(slog.NewJSONHandler(h.logs, nil))
	for name, issue := range map[string]func(t *testing.T, svc *enrol.Service, ctx context.Context) (*enrol.Certificate, error){
		"bootstrap": func(t *testing.T, svc *enrol.Service, ctx context.Context) (*enrol.Certificate, error) {
			sub := h.subject(t, pki.RoleService, nil)
			return svc.Bootstrap(ctx, enrol.System, sub, "ocsp-responder", testpki.CSR(t, newKey()))
		},
		"approval": func(t *testing.T, svc *enrol.Service, ctx context.Context) (*enrol.Certificate, error) {
			sub := h.subject(t, pki.RolePractitioner, nil)
			r, err := svc.Request(context.Background(), h.alice, enrol.RequestInput{SubjectID: sub.ID, Profile: "practitioner-signing", CSR: csrPEM(t, newKey())})
			if err != nil {
				t.Fatal(err)
			}
			return svc.Approve(ctx, h.bob, r.ID, "")
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc, err := enrol.New(enrol.Config{Notify: enrol.NoNotify{}, Store: h.db, Issuer: h.pki.CA, Profiles: h.pki.Profiles, Arc: h.pki.Arc,
				URLs: h.pki.URLs, Audit: cancelAtIntent{audit.NewLog(h.db, log, h.clock.Now), cancel}, Log: log, Now: h.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			c, err := issue(t, svc, ctx)
			if err != nil {
				t.Fatalf("issuance cancelled while signing: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the context was not cancelled during the issuance")
			}
			if _, err := h.db.CertificateBySerial(context.Background(), c.Serial); err != nil {
				t.Fatalf("the certificate signed is not recorded: %v", err)
			}
			evs, err := h.db.ListAudit(context.Background(), store.AuditFilter{Object: "certificate:" + c.SerialHex(), Action: "certificate.issue", Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var outcomes []string
			for _, e := range evs {
				outcomes = append(outcomes, string(e.Outcome))
			}
			slices.Sort(outcomes)
			if !slices.Equal(outcomes, []string{string(audit.Intent), string(audit.OK)}) {
				t.Fatalf("audit outcomes %v; want an intent and ok", outcomes)
			}
		})
	}
}
