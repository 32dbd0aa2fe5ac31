package trustd_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/pki/bundle"
	"github.com/nuskha/nuskha/internal/testutil/softhsm"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/trustapi"
	"github.com/nuskha/nuskha/internal/trustd"
)

// TestAuditLogFromInitToBundle: init makes the audit log's keys (the
// sealing key in a file by default, or on a token), the ceremony's acts
// are its first entries, serve signs a checkpoint of them and serves it
// under /audit/, and the trust bundle names the log with the key that
// signed it — so an auditor holding the bundle verifies the checkpoint,
// and every entry is in it.
func TestAuditLogFromInitToBundle(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) string // the sealing key's URI; "" for the default
	}{
		{"sealing key in an encrypted file", func(*testing.T) string { return "" }},
		{"sealing key on a token", func(t *testing.T) string {
			tok := softhsm.NewToken(t, "trustd-audit")
			return hsm.PKCS11URI(tok.Module, tok.Label, "audit-sealing", nil, tok.PINFile)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "ca")
			d := deps(t)
			res, err := trustd.Init(ctx, trustd.InitOptions{
				Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}}, AuditKey: tc.key(t),
				AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", HTTPBaseURL: "http://ca.example:8080",
			}, d)
			if err != nil {
				t.Fatal(err)
			}
			if res.AuditOrigin != "ca.example/trustd-audit" || !strings.HasPrefix(res.AuditVerifierKey, "ca.example/trustd-audit/k1+") {
				t.Fatalf("audit log %q, key %q", res.AuditOrigin, res.AuditVerifierKey)
			}
			if fi, err := os.Stat(filepath.Join(dir, "ca", "audit-note.key")); err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Fatalf("sealed note key: %v, mode %v", err, fi.Mode())
			}
			cfg, err := trustd.LoadConfig(res.ConfigFile)
			if err != nil {
				t.Fatal(err)
			}
			svc, err := trustd.New(ctx, cfg, d)
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			if err := svc.AuditLog().Step(ctx); err != nil {
				t.Fatal(err)
			}

			// The bundle names the log and its key.
			raw, err := svc.Publisher().Bundle(ctx)
			if err != nil {
				t.Fatal(err)
			}
			roots, err := pemutil.ReadCertificateBundle(res.RootCert)
			if err != nil {
				t.Fatal(err)
			}
			arc, err := pki.ParseArc(cfg.OIDArc)
			if err != nil {
				t.Fatal(err)
			}
			v, err := bundle.Verify(raw, roots, arc, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			l, ok := v.Log(res.AuditOrigin)
			if !ok || !slices.Equal(l.VerifierKeys, []string{res.AuditVerifierKey}) || l.URL != "http://ca.example:8080/audit/" {
				t.Fatalf("the bundle's logs: %+v", v.Logs)
			}
			verifier, err := note.NewVerifier(l.VerifierKeys[0])
			if err != nil {
				t.Fatal(err)
			}

			// The public listener serves it; what it serves verifies.
			srv := httptest.NewServer(svc.API().PublicHandler())
			defer srv.Close()
			c := &tlog.Client{Base: srv.URL + trustapi.AuditLogPath}
			signed, err := c.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := tlog.VerifyCheckpoint(signed, res.AuditOrigin, verifier)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for first := uint64(0); first < cp.Size; first += tlog.TileWidth {
				entries, err := c.Entries(ctx, first/tlog.TileWidth, cp.Size)
				if err != nil {
					t.Fatal(err)
				}
				for i, b := range entries {
					idx := first + uint64(i)
					p, err := tlog.InclusionProof(ctx, c.Tiles(cp.Size), idx, cp.Size)
					if err != nil {
						t.Fatal(err)
					}
					if err := tlog.VerifyEntry(cp, idx, b, p); err != nil {
						t.Fatalf("entry %d: %v", idx, err)
					}
					e, err := tlog.Decode(b)
					if err != nil {
						t.Fatal(err)
					}
					actions = append(actions, string(e.Actor.Kind)+":"+e.Actor.ID+" "+e.Action+" "+string(e.Outcome))
				}
			}
			for _, want := range []string{
				"system:ceremony ceremony.root ok", "system:ceremony ceremony.intermediate ok", "system:ceremony ceremony.audit-log ok",
				"system:ceremony ceremony.arl ok", "system:ceremony subject.create ok", "system:ceremony certificate.issue intent",
				"system:ceremony certificate.issue ok", "system:trustd certificate.issue ok", "system:trustd credential.install ok",
			} {
				if !slices.Contains(actions, want) {
					t.Errorf("no entry %q among %q", want, actions)
				}
			}
		})
	}
}
