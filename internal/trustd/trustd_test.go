package trustd_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/storetest"
	"github.com/nuskha/nuskha/internal/store/truststore"
	"github.com/nuskha/nuskha/internal/testutil/filemode"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/tlsconf"
	"github.com/nuskha/nuskha/internal/trustd"
)

func deps(t *testing.T) trustd.Deps {
	keys := hsm.NewManager(hsm.NoPrompt)
	t.Cleanup(func() { keys.Close() })
	return trustd.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now, Keys: keys}
}

func TestInitThenServeConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(context.Background(), trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(res.ConfigFile)
	if strings.Contains(string(raw), "root.key") {
		t.Fatal("the config references the root key; day-to-day issuance must not need it")
	}
	for _, secret := range []string{"secrets/intermediate.pass", "handover/alice/alice.pass", "handover/alice/alice.key", "ca/intermediate.key"} {
		fi, err := os.Stat(filepath.Join(dir, secret))
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: %v, mode %v; want owner-only", secret, err, fi.Mode())
		}
	}
	svc, err := trustd.New(context.Background(), cfg, d)
	if err != nil {
		t.Fatalf("serving the config init wrote: %v", err)
	}
	defer svc.Close()

	t.Run("TLS 1.2 offers only AEAD suites", func(t *testing.T) {
		for name, c := range map[string]*tls.Config{"admin": svc.AdminTLS(), "public": svc.PublicTLS()} {
			if c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.CipherSuites, tlsconf.CipherSuites) {
				t.Fatalf("%s listener: min version %x, suites %v", name, c.MinVersion, c.CipherSuites)
			}
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", svc.PublicTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		roots := x509.NewCertPool()
		pemRoot, _ := os.ReadFile(res.RootCert)
		roots.AppendCertsFromPEM(pemRoot)
		dial := func(suite uint16) error {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}})
			if err == nil {
				c.Close()
			}
			return err
		}
		if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA); err == nil {
			t.Fatal("the public listener accepted ECDHE-ECDSA-AES128-SHA")
		}
		if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err != nil {
			t.Fatalf("the public listener refused ECDHE-ECDSA-AES128-GCM-SHA256: %v", err)
		}
	})

	t.Run("init never overwrites a CA", func(t *testing.T) {
		_, err := trustd.Init(context.Background(), trustd.InitOptions{Dir: dir, Officers: []trustd.Officer{{Name: "a"}, {Name: "b"}}}, d)
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestStateIsPrivate: everything init writes, and the database's WAL and
// shared-memory files while trustd runs, is for the CA's owner alone —
// the registry holds national ids — whatever the umask. Certificates and
// revocation lists are public, but nobody else may write them.
func TestStateIsPrivate(t *testing.T) {
	filemode.PermissiveUmask(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "ca")
	// An empty directory made by someone else's packaging, world-readable.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := deps(t)
	res, err := trustd.Init(context.Background(), trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := trustd.New(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	seen := filemode.Private(t, dir, ".crt", ".crl")
	for _, want := range []string{".", "trustd.db", "trustd.db-wal", "trustd.db-shm", "trustd.json", "secrets/intermediate.pass", "ca/intermediate.key"} {
		if !slices.Contains(seen, want) {
			t.Errorf("%s was not there to check (found %q)", want, seen)
		}
	}
}

// TestOfficersKeysAreNotLeftTogether: the CA host must not end up holding
// every officer's key, or its owner can act as every officer. An officer who
// brings a CSR gets only a certificate; a key init makes is in that
// officer's own hand-over directory, not beside the others'.
func TestOfficersKeysAreNotLeftTogether(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	bobKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrFile := filepath.Join(t.TempDir(), "bob.csr")
	if err := os.WriteFile(csrFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(t, bobKey).Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	bob, err := trustd.ParseOfficer("bob=csr:" + csrFile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := trustd.Init(context.Background(), trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, bob},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, deps(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ := os.ReadDir(filepath.Join(dir, "officers"))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"alice.crt", "bob.crt"}) {
		t.Fatalf("officers/ holds %q; want only the certificates", names)
	}
	alice := res.Officers[0]
	if alice.Handover != filepath.Join(dir, "handover", "alice") || !strings.HasPrefix(alice.KeyURI, "softkey:path="+alice.Handover+"/") {
		t.Fatalf("alice: hand-over %q, key %q", alice.Handover, alice.KeyURI)
	}
	for _, f := range []string{"alice.key", "alice.pass", "alice.crt"} {
		if _, err := os.Stat(filepath.Join(alice.Handover, f)); err != nil {
			t.Errorf("alice's hand-over directory: %v", err)
		}
	}
	if res.Officers[1].KeyURI != "" || res.Officers[1].Handover != "" {
		t.Fatalf("bob brought a CSR, yet init reports key %q, hand-over %q", res.Officers[1].KeyURI, res.Officers[1].Handover)
	}
	if _, err := os.Stat(filepath.Join(dir, "handover", "bob")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a hand-over directory for bob: %v", err)
	}
	chain, err := pemutil.ReadCertificateBundle(res.Officers[1].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bobKey.PublicKey.Equal(chain[0].PublicKey) {
		t.Fatal("bob's certificate is not for the key that made his CSR")
	}
	// Both can authenticate to the admin API: the certificate is an
	// officer's, issued by this CA.
	roots := x509.NewCertPool()
	root, _ := pemutil.ReadCertificate(res.RootCert)
	roots.AddCert(root)
	inters := x509.NewCertPool()
	inters.AddCert(chain[1])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestParseOfficer(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := testpki.CSR(t, key).Raw
	tampered := slices.Clone(csr)
	tampered[len(tampered)-5] ^= 1 // in the signature
	dir := t.TempDir()
	for name, der := range map[string][]byte{"good.csr": csr, "tampered.csr": tampered} {
		if err := os.WriteFile(filepath.Join(dir, name), der, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		arg, err string
		want     trustd.Officer
	}{
		{arg: "alice", want: trustd.Officer{Name: "alice"}},
		{arg: "alice=pkcs11:token=alice;object=officer", want: trustd.Officer{Name: "alice", KeyURI: "pkcs11:token=alice;object=officer"}},
		{arg: "bob=csr:" + filepath.Join(dir, "tampered.csr"), err: "proof of possession"},
		{arg: "bob=csr:" + filepath.Join(dir, "absent.csr"), err: "no such file"},
	} {
		got, err := trustd.ParseOfficer(tc.arg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error containing %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v", tc.arg, got, err)
		}
	}
	got, err := trustd.ParseOfficer("bob=csr:" + filepath.Join(dir, "good.csr"))
	if err != nil || got.Name != "bob" || got.KeyURI != "" || got.CSR == nil || !key.PublicKey.Equal(got.CSR.PublicKey) {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestInitRefusals(t *testing.T) {
	d := deps(t)
	for name, officers := range map[string][]trustd.Officer{
		"one officer cannot satisfy dual control": {{Name: "alice"}},
		"duplicate officer names":                 {{Name: "alice"}, {Name: "alice"}},
		"officer name with a path":                {{Name: "alice"}, {Name: "../bob"}},
		"officer named ..":                        {{Name: "alice"}, {Name: ".."}},
		"officer name starting with a dot":        {{Name: "alice"}, {Name: ".bob"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := trustd.Init(context.Background(), trustd.InitOptions{Dir: dir, Officers: officers}, d); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(dir); err == nil {
				t.Fatal("a refused init left files behind")
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	good := map[string]any{
		"store": map[string]any{"driver": "sqlite", "path": "trustd.db"},
		"ca":    map[string]any{"root_certs": []string{"ca/root.crt"}, "intermediate_cert": "ca/int.crt", "intermediate_key": "pkcs11:token=CA;object=issuing?module-path=/x.so&pin-source=/pin"},
		"tls":   map[string]any{"cert": "tls/t.crt", "key": "softkey:path=/k?pin-source=/p"},
		"admin": map[string]any{"listen": "127.0.0.1:8443"}, "public": map[string]any{"listen": "127.0.0.1:8444"},
		"status": map[string]any{"service_subject": "sub_trustd"},
	}
	write := func(t *testing.T, m map[string]any) string {
		p := filepath.Join(t.TempDir(), "trustd.json")
		b, _ := json.Marshal(m)
		os.WriteFile(p, b, 0o600)
		return p
	}
	cfg, err := trustd.LoadConfig(write(t, good))
	if err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	clone := func() map[string]any {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
	t.Run("enrolment request lifetime", func(t *testing.T) {
		if got := cfg.Enrolment.Lifetime(); got != 7*24*time.Hour {
			t.Fatalf("without enrolment.request_lifetime requests live %s, want 7 days", got)
		}
		m := clone()
		m["enrolment"] = map[string]any{"request_lifetime": "72h"}
		c, err := trustd.LoadConfig(write(t, m))
		if err != nil || c.Enrolment.Lifetime() != 72*time.Hour {
			t.Fatalf("request_lifetime 72h: %v, %v", c, err)
		}
	})
	t.Run("witnesses", func(t *testing.T) {
		m := clone()
		m["audit_log"] = map[string]any{"origin": "ca.example/trustd-audit", "sealing_key": "softkey:path=/k?pin-source=/p", "note_key": "n",
			"witnesses": []any{map[string]any{"name": "witness.example/w1", "vkey": witnessKey, "url": "https://witness.example/w1"}}}
		c, err := trustd.LoadConfig(write(t, m))
		if err != nil || len(c.AuditLog.Witnesses) != 1 || c.AuditLog.Witnesses[0].URL != "https://witness.example/w1" {
			t.Fatalf("a witness: %v, %+v", err, c)
		}
	})
	for _, tc := range []struct {
		name string
		mod  func(m map[string]any)
		want string
	}{
		{"unknown field", func(m map[string]any) { m["tls_cert"] = "x" }, "unknown field"},
		{"PIN in a key URI", func(m map[string]any) {
			m["ca"].(map[string]any)["intermediate_key"] = "pkcs11:token=CA;object=i?module-path=/x.so&pin-value=Sesame-PIN"
		}, "pin-value"},
		{"unknown driver", func(m map[string]any) { m["store"].(map[string]any)["driver"] = "mysql" }, "store.driver"},
		{"postgres without dsn_file", func(m map[string]any) { m["store"] = map[string]any{"driver": "postgres"} }, "dsn_file"},
		{"bad listen address", func(m map[string]any) { m["admin"] = map[string]any{"listen": "8443"} }, "admin.listen"},
		{"bad OID arc", func(m map[string]any) { m["oid_arc"] = "1.2.x" }, "oid_arc"},
		{"non-http URL", func(m map[string]any) { m["urls"] = map[string]any{"crl": []string{"ldap://x/crl"}} }, "urls"},
		{"no root", func(m map[string]any) { m["ca"].(map[string]any)["root_certs"] = []string{} }, "ca.root_certs"},
		{"bad log level", func(m map[string]any) { m["log"] = map[string]any{"level": "loud"} }, "log.level"},
		{"key template without {n}", func(m map[string]any) { m["status"].(map[string]any)["ocsp_key"] = "softkey:path=/x.key" }, "{n}"},
		{"CRL refreshed less often than it expires", func(m map[string]any) {
			m["status"].(map[string]any)["crl_refresh"] = "48h"
		}, "crl_refresh"},
		{"duration that is not a string", func(m map[string]any) { m["status"].(map[string]any)["crl_validity"] = 24 }, "duration"},
		{"negative request lifetime", func(m map[string]any) { m["enrolment"] = map[string]any{"request_lifetime": "-1h"} }, "enrolment.request_lifetime"},
		{"per-address cap above the total", func(m map[string]any) {
			m["public"] = map[string]any{"listen": "127.0.0.1:8444", "max_connections": 10, "max_connections_per_ip": 20}
		}, "public"},
		{"negative read timeout", func(m map[string]any) {
			m["public"] = map[string]any{"listen": "127.0.0.1:8444", "read_timeout": "-1s"}
		}, "public.read_timeout"},
		{"read timeout that would cut honest requests", func(m map[string]any) {
			m["public"] = map[string]any{"listen": "127.0.0.1:8444", "read_timeout": "1ms"}
		}, "public.read_timeout: must be between 1s and 10m"},
		{"read timeout that cuts nobody off", func(m map[string]any) {
			m["http"] = map[string]any{"listen": "127.0.0.1:8080", "read_timeout": "1h"}
		}, "http.read_timeout: must be between 1s and 10m"},
		{"negative write limit", func(m map[string]any) { m["anonymous_writes"] = map[string]any{"per_ip_burst": -1} }, "anonymous_writes"},
		{"audit log without its note key", func(m map[string]any) {
			m["audit_log"] = map[string]any{"origin": "ca.example/trustd-audit", "sealing_key": "softkey:path=/k?pin-source=/p"}
		}, "audit_log.note_key"},
		{"other log with a key that is not a note key", func(m map[string]any) {
			m["audit_log"] = map[string]any{"other_logs": []any{map[string]any{"origin": "rxd.example/rxd-audit", "vkey": "rxd+abc"}}}
		}, "audit_log.other_logs[0]"},
		{"witness with a plain note key", func(m map[string]any) {
			m["audit_log"] = map[string]any{"origin": "ca.example/trustd-audit", "sealing_key": "softkey:path=/k?pin-source=/p", "note_key": "n",
				"witnesses": []any{map[string]any{"vkey": plainWitnessKey, "url": "https://witness.example/w1"}}}
		}, "audit_log.witnesses[0].vkey"},
		{"witness named other than its key", func(m map[string]any) {
			m["audit_log"] = map[string]any{"origin": "ca.example/trustd-audit", "sealing_key": "softkey:path=/k?pin-source=/p", "note_key": "n",
				"witnesses": []any{map[string]any{"name": "witness.example/w2", "vkey": witnessKey, "url": "https://witness.example/w1"}}}
		}, "audit_log.witnesses[0].name"},
		{"witness without a URL", func(m map[string]any) {
			m["audit_log"] = map[string]any{"origin": "ca.example/trustd-audit", "sealing_key": "softkey:path=/k?pin-source=/p", "note_key": "n",
				"witnesses": []any{map[string]any{"vkey": witnessKey, "url": "witness.example/w1"}}}
		}, "audit_log.witnesses"},
		{"witness of no log", func(m map[string]any) {
			m["audit_log"] = map[string]any{"witnesses": []any{map[string]any{"vkey": witnessKey, "url": "https://witness.example/w1"}}}
		}, "the log has no origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := clone()
			tc.mod(m)
			_, err := trustd.LoadConfig(write(t, m))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
			// The PIN is letters: error messages carry temporary paths,
			// whose random digits once matched a numeric PIN by chance.
			if strings.Contains(err.Error(), "Sesame-PIN") {
				t.Fatal("the error repeats the PIN")
			}
		})
	}
}

// A witness's cosignature/v1 key (type 0x04), and the same key as a plain
// Ed25519 note key (type 0x01), which a witness's config refuses.
const (
	witnessKey      = "witness.example/w1+3fc31fea+BOuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1"
	plainWitnessKey = "witness.example/w1+75ff98fe+AeuLrCoZ7GrLOqUffFcuaoTsE903Lrf1shbNHaw91Ef1"
)

// trustd.json is for operators to read and edit: a PKCS#11 URI's '&'
// stays '&'.
func TestSavedConfigIsReadable(t *testing.T) {
	const uri = "pkcs11:token=Nuskha%20CA;object=issuing-ca-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/trustd/hsm.pin"
	path := filepath.Join(t.TempDir(), "trustd.json")
	cfg := &trustd.Config{CA: trustd.CAConfig{IntermediateKey: uri}}
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"intermediate_key": "`+uri+`"`) {
		t.Fatalf("saved config:\n%s", raw)
	}
}

// TestARLCeremony: init signs the root's first ARL, which trustd serves
// and the intermediate points to; sign-arl, with the root key, re-signs it
// with the next number and can revoke the intermediate; a running trustd
// picks the file up.
func TestARLCeremony(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", HTTPBaseURL: "http://trustd.test:8080",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := pemutil.ReadCertificate(filepath.Join(dir, "ca", "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inter.CRLDistributionPoints, []string{"http://trustd.test:8080/crl/root-ca.crl"}) || cfg.CA.ARL != "ca/root.crl" {
		t.Fatalf("intermediate CDP %v, ca.arl %q", inter.CRLDistributionPoints, cfg.CA.ARL)
	}
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	first := svc.Publisher().ARL()
	if first == nil || first.Number.Int64() != 1 || len(first.RevokedCertificateEntries) != 0 {
		t.Fatalf("the ARL served after init: %+v", first)
	}
	rp := httptest.NewServer(svc.API().RelyingPartyHandler())
	defer rp.Close()
	get := func() *x509.RevocationList {
		resp, err := http.Get(rp.URL + "/crl/root-ca.crl")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, _ := io.ReadAll(resp.Body)
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatalf("ARL over HTTP: %d %v", resp.StatusCode, err)
		}
		return l
	}
	if get().Number.Int64() != 1 {
		t.Fatal("the relying-party listener does not serve the ARL")
	}

	tlsChain, err := pemutil.ReadCertificateBundle(filepath.Join(dir, "tls", "trustd.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := tlsChain[0]
	for name, o := range map[string]trustd.ARLOptions{
		"without the root key":   {},
		"with another key":       {RootKey: cfg.CA.IntermediateKey},
		"revoking a leaf":        {RootKey: res.RootKeyURI, Revoke: leaf, Reason: 2},
		"revoking with a reason": {RootKey: res.RootKeyURI, Revoke: inter, Reason: 6},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := trustd.SignARL(ctx, cfg, o, d); err == nil {
				t.Fatal("signed")
			}
			if svc.ReloadARL() != nil || get().Number.Int64() != 1 {
				t.Fatal("a refused sign-arl changed the ARL")
			}
		})
	}
	second, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI, Revoke: inter, Reason: 2}, d)
	if err != nil {
		t.Fatal(err)
	}
	if second.Number.Int64() != 2 || len(second.RevokedCertificateEntries) != 1 || second.RevokedCertificateEntries[0].SerialNumber.Cmp(inter.SerialNumber) != 0 {
		t.Fatalf("ARL 2: %+v", second)
	}
	if _, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI, Revoke: inter, Reason: 2}, d); err == nil {
		t.Fatal("the intermediate was revoked twice")
	}
	if err := svc.ReloadARL(); err != nil {
		t.Fatal(err)
	}
	if got := get(); got.Number.Int64() != 2 || len(got.RevokedCertificateEntries) != 1 {
		t.Fatalf("after sign-arl the listener serves ARL %s", got.Number)
	}
	// A yearly re-signing keeps the revoked intermediate listed.
	third, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI}, d)
	if err != nil || third.Number.Int64() != 3 || len(third.RevokedCertificateEntries) != 1 {
		t.Fatalf("ARL 3: %+v %v", third, err)
	}
	if f, err := mustLinter(t).RevocationList(third.Raw); err != nil || len(f) != 0 {
		t.Fatalf("zlint on the re-signed ARL: %v %v", f, err)
	}
	// A file that is not this root's ARL, or an older one, is refused and
	// the ARL served stays.
	if err := svc.ReloadARL(); err != nil {
		t.Fatal(err)
	}
	arlPath := filepath.Join(dir, "ca", "root.crl")
	for name, der := range map[string][]byte{"another root's": testpki.New(t, nil, time.Now).ARL(t, time.Now()).Raw, "an older": second.Raw, "garbage": []byte("x")} {
		if err := os.WriteFile(arlPath, der, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := svc.ReloadARL(); err == nil || get().Number.Int64() != 3 {
			t.Fatalf("%s ARL file: reload %v, serving ARL %s", name, err, get().Number)
		}
	}
}

func mustLinter(t *testing.T) *lint.Linter {
	l, err := lint.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestMissingDatabase: a config whose embedded database is gone (a wrong
// directory, a lost disk) is refused, naming the path, instead of serving
// a CA with an empty registry; nothing is created there.
func TestMissingDatabase(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Path(cfg.Store.Path)
	if err := os.Rename(db, db+".moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := trustd.New(ctx, cfg, d); err == nil || !strings.Contains(err.Error(), db) {
		t.Fatalf("serving without the database: %v", err)
	}
	if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a database was made at %s: %v", db, err)
	}
}

// TestAddOfficersRestoresTheQuorum: when fewer than two officers can act
// (Bob revoked his compromised key himself), nothing can be approved; the
// recovery ceremony, with the offline root key present, certifies new
// officers. It refuses while the quorum holds and without the root key.
func TestAddOfficersRestoresTheQuorum(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	carol := trustd.AddOfficersOptions{RootKey: res.RootKeyURI, Officers: []trustd.Officer{{Name: "carol"}}}
	if _, err := trustd.AddOfficers(ctx, cfg, carol, d); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("with the quorum intact: %v", err)
	}
	active := func() int {
		db, err := truststore.Open(ctx, sqlstore.SQLite, cfg.Path("trustd.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ids, err := revoke.ActiveOfficers(ctx, db, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	// Bob's key is compromised and he revokes it, as the holder may alone.
	chain, err := pemutil.ReadCertificateBundle(res.Officers[1].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	bob := chain[0]
	db, err := truststore.Open(ctx, sqlstore.SQLite, cfg.Path("trustd.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := db.RecordStatus(ctx, &revoke.Event{Serial: bob.SerialNumber, Status: revoke.Revoked, Reason: revoke.KeyCompromise,
		EffectiveAt: now, RecordedAt: now, RequestedBy: revoke.Holder}, []revoke.Status{revoke.Good, revoke.OnHold}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n := active(); n != 1 {
		t.Fatalf("%d officers can act after bob's revocation", n)
	}

	keyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyDir, "k.pass"), []byte("not the root, whatever it says\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notRoot := hsm.SoftKeyURI(filepath.Join(keyDir, "k.key"), filepath.Join(keyDir, "k.pass"))
	if _, err := d.Keys.CreateKey(ctx, notRoot, hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		o          trustd.AddOfficersOptions
	}{
		{"without the root key", "not the key of any root", trustd.AddOfficersOptions{RootKey: notRoot, Officers: carol.Officers}},
		{"reusing a first officer's name", "officers/alice.crt exists", trustd.AddOfficersOptions{RootKey: res.RootKeyURI, Officers: []trustd.Officer{{Name: "alice"}}}},
	} {
		if _, err := trustd.AddOfficers(ctx, cfg, tc.o, d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if n := active(); n != 1 {
		t.Fatalf("refused ceremonies changed the officers: %d can act", n)
	}
	made, err := trustd.AddOfficers(ctx, cfg, carol, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 1 || made[0].Handover != filepath.Join(dir, "handover", "carol") {
		t.Fatalf("made %+v", made)
	}
	if n := active(); n != 2 {
		t.Fatalf("%d officers can act after the ceremony", n)
	}
	// The running service accepts her; its audit log holds the ceremony.
	svc, err := trustd.New(ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.AuditLog().Step(ctx); err != nil {
		t.Fatal(err)
	}
	entries, err := svc.Store().AuditLog().ReadEntries(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range entries {
		e, err := tlog.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Actor.ID+" "+e.Action+" "+e.Object+" "+string(e.Outcome))
	}
	for _, want := range []string{"ceremony ceremony.officer.add officers intent", "ceremony ceremony.officer.add officers ok"} {
		if !slices.Contains(got, want) {
			t.Errorf("no entry %q among %q", want, got)
		}
	}
}

// TestSignARLKeepsHistory: the audit log, not the file, says which ARLs
// were signed. A lost ARL file is not replaced by a new ARL 1 that drops a
// revoked intermediate, nor an older file signed over.
func TestSignARLKeepsHistory(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0", HTTPBaseURL: "http://trustd.test:8080",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := pemutil.ReadCertificate(filepath.Join(dir, "ca", "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	path := cfg.Path(cfg.CA.ARL)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI, Revoke: inter, Reason: 2}, d); err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI}, d); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("signed with the ARL file gone: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an ARL was written: %v", err)
	}

	if err := os.WriteFile(path, first, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI}, d); err == nil || !strings.Contains(err.Error(), "ARL 2 was signed") {
		t.Fatalf("signed over an older ARL: %v", err)
	}

	if err := os.WriteFile(path, second, 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := trustd.SignARL(ctx, cfg, trustd.ARLOptions{RootKey: res.RootKeyURI}, d)
	if err != nil || third.Number.Int64() != 3 || len(third.RevokedCertificateEntries) != 1 {
		t.Fatalf("with the latest file restored: %v %+v", err, third)
	}
}

// TestRecordCertificate: a certificate the issuing key signed for a
// reserved issuance attempt, whose record was lost with the database, is
// recorded from the log (and so becomes revocable by its serial); one the
// key signed outside any attempt, or not signed by the key, is refused.
func TestRecordCertificate(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	d := deps(t)
	res, err := trustd.Init(ctx, trustd.InitOptions{
		Dir: dir, Officers: []trustd.Officer{{Name: "alice"}, {Name: "bob"}},
		AdminListen: "127.0.0.1:0", PublicListen: "127.0.0.1:0",
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := trustd.LoadConfig(res.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	db, err := truststore.Open(ctx, sqlstore.SQLite, cfg.Path(cfg.Store.Path))
	if err != nil {
		t.Fatal(err)
	}
	sub := storetest.Practitioner("MC-7001", "0499370899")
	if err := db.CreateSubject(ctx, sub, "officer-a"); err != nil {
		t.Fatal(err)
	}
	e := storetest.NewEnrolment(sub.ID)
	if err := db.CreateEnrolment(ctx, e); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	a := &enrol.Issuance{EnrolmentID: e.ID, Attempt: 1, Serial: big.NewInt(0x7001), NotBefore: now.Add(-time.Minute), NotAfter: now.AddDate(1, 0, 0),
		ClaimedBy: "officer-b", ClaimedAt: now}
	if err := db.ReserveIssuance(ctx, a); err != nil {
		t.Fatal(err)
	}
	db.Close()

	inter, err := pemutil.ReadCertificate(filepath.Join(dir, "ca", "intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	interKey, err := d.Keys.OpenKey(ctx, cfg.CA.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sign := func(serial int64, notBefore, notAfter time.Time, issuer *x509.Certificate, key crypto.Signer) []byte {
		tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "lost"}, NotBefore: notBefore, NotAfter: notAfter}
		der, err := x509.CreateCertificate(rand.Reader, tpl, issuer, leafKey.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	impostor := *inter // the issuing CA's name, another key
	impostor.PublicKey = otherKey.Public()
	for name, der := range map[string][]byte{
		"a serial no attempt reserved":  sign(0x7002, a.NotBefore, a.NotAfter, inter, interKey),
		"another validity":              sign(0x7001, a.NotBefore, a.NotAfter.Add(time.Hour), inter, interKey),
		"not signed by the issuing key": sign(0x7001, a.NotBefore, a.NotAfter, &impostor, otherKey),
	} {
		if _, err := trustd.RecordCertificate(ctx, cfg, der, d); err == nil {
			t.Errorf("%s: recorded", name)
		}
	}
	lost := sign(0x7001, a.NotBefore, a.NotAfter, inter, interKey)
	rec, err := trustd.RecordCertificate(ctx, cfg, lost, d)
	if err != nil || rec.EnrolmentID != e.ID || rec.SubjectID != sub.ID {
		t.Fatalf("recording the lost certificate: %+v %v", rec, err)
	}
	if _, err := trustd.RecordCertificate(ctx, cfg, lost, d); err == nil || !strings.Contains(err.Error(), "recorded already") {
		t.Fatalf("recorded twice: %v", err)
	}
	db, err = truststore.Open(ctx, sqlstore.SQLite, cfg.Path(cfg.Store.Path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if c, err := db.CertificateBySerial(ctx, big.NewInt(0x7001)); err != nil || !bytes.Equal(c.DER, lost) {
		t.Fatalf("the recorded certificate: %v", err)
	}
}
