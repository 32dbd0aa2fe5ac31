package trustd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/pki/lint"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
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
	for _, secret := range []string{"secrets/intermediate.pass", "officers/alice.pass", "ca/intermediate.key"} {
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

func TestInitRefusals(t *testing.T) {
	d := deps(t)
	for name, officers := range map[string][]trustd.Officer{
		"one officer cannot satisfy dual control": {{Name: "alice"}},
		"duplicate officer names":                 {{Name: "alice"}, {Name: "alice"}},
		"officer name with a path":                {{Name: "alice"}, {Name: "../bob"}},
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
