package trustd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
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
	if _, err := trustd.LoadConfig(write(t, good)); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	clone := func() map[string]any {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		return m
	}
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
