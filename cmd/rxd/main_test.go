package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
)

func TestImportRegistryCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	good := filepath.Join(dir, "registry.csv")
	if err := os.WriteFile(good, []byte(insuredtest.Rows(1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-registry", "-db", db, "-mode", "full", good}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "1000 persons — 750 main insured, 250 dependants") || !strings.Contains(errb.String(), "100.0%") {
		t.Fatalf("summary %q, progress %q", out.String(), errb.String())
	}

	bad := filepath.Join(dir, "bad.csv")
	rows := insuredtest.Header() + insuredtest.Row(2000) + strings.Replace(insuredtest.Row(2001), ",active,", ",asleep,", 1) + insuredtest.Row(2000)
	if err := os.WriteFile(bad, []byte(rows), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"import-registry", "-db", db, "-mode", "update", "-quiet", "-json", bad}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "2 bad row(s)") {
		t.Fatalf("bad file: %v", err)
	}
	var ie insured.ImportError
	if json.Unmarshal(out.Bytes(), &ie) != nil || ie.Total != 2 || ie.Rows[0].Line != 3 || ie.Rows[1].Line != 4 {
		t.Fatalf("reported %s", out.String())
	}
	d, _ := sqlstore.Open(context.Background(), sqlstore.SQLite, db)
	defer d.Close()
	s, _ := sqlstore.NewInsured(context.Background(), d)
	if n, _ := s.Count(context.Background()); n != 1000 {
		t.Fatalf("count after a rejected update = %d", n)
	}
}

func TestImportCatalogueAndCheckRulesCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rxd.db")
	drugs, services := catalogtest.Sample()
	df := filepath.Join(dir, "drugs.csv")
	sf := filepath.Join(dir, "services.csv")
	os.WriteFile(df, []byte(drugs), 0o600)
	os.WriteFile(sf, []byte(services), 0o600)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"import-catalogue", "-db", db, "-label", "1405 Farvardin", "-valid-from", "1405-01-01", "-drugs", df, "-services", sf}, &out, &errb); err != nil {
		t.Fatalf("%v %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "13 drugs, 6 services, in force from 2026-03-21") {
		t.Fatalf("summary %q", out.String())
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte(catalogtest.DrugsHeader+"\n1,x,,N02BE01,tablet,1 mg,-5,70,false,1,,,0,0,,,true\n"), 0o600)
	out.Reset()
	err := run(context.Background(), []string{"import-catalogue", "-db", db, "-label", "bad", "-valid-from", "1405-07-01", "-drugs", bad}, &out, &errb)
	if err == nil || !strings.Contains(out.String(), "drugs line 2: price") {
		t.Fatalf("bad catalogue: %v %q", err, out.String())
	}

	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, rules.StarterYAML(), 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"check-rules", rulesFile}, &out, &errb); err != nil || !strings.Contains(out.String(), "15 rules, compiled and type-checked") {
		t.Fatalf("check-rules: %v %q", err, out.String())
	}
	os.WriteFile(rulesFile, bytes.Replace(rules.StarterYAML(), []byte("item.catalogue.coverage_percent > 0"), []byte("item.catalogue.coverage_pct > 0"), 1), 0o600)
	if err := run(context.Background(), []string{"check-rules", rulesFile}, &out, &errb); err == nil || !strings.Contains(err.Error(), "item-covered") || !strings.Contains(err.Error(), "coverage_pct") {
		t.Fatalf("a misspelled field: %v", err)
	}
}

func TestServeNeedsClientAuthentication(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"serve", "-db", filepath.Join(t.TempDir(), "rxd.db")}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "-client-ca") {
		t.Fatalf("serve without TLS: %v", err)
	}
}

// TestServe starts the real command: TLS with a server certificate from a
// test hierarchy, client certificates required, and — since the test
// hierarchy's OCSP responder does not exist — every caller refused with the
// reason: the service fails closed.
func TestServe(t *testing.T) {
	now := time.Now()
	p := testpki.New(t, nil, func() time.Time { return now })
	dir := t.TempDir()
	writePEM := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(profile string, kind pki.Role, id string) (*ecdsa.PrivateKey, *x509.Certificate) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k, p.Issue(t, profile, testpki.Subject(kind, id, now), k)
	}
	sk, sc := issue("service-tls-server", pki.RoleService, "rxd")
	skDER, _ := x509.MarshalPKCS8PrivateKey(sk)
	certFile := writePEM("rxd.crt", &pem.Block{Type: "CERTIFICATE", Bytes: sc.Raw}, &pem.Block{Type: "CERTIFICATE", Bytes: p.Intermediate.Raw})
	keyFile := writePEM("rxd.key", &pem.Block{Type: "PRIVATE KEY", Bytes: skDER})
	caFile := writePEM("root.crt", &pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Raw})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var out, errb bytes.Buffer
		done <- run(ctx, []string{"serve", "-db", filepath.Join(dir, "rxd.db"), "-listen", addr, "-tls-cert", certFile, "-tls-key", keyFile, "-client-ca", caFile}, &out, &errb)
	}()
	vk, vc := issue("service-tls-client", pki.RoleVendor, "vendor")
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{vc.Raw, p.Intermediate.Raw}, PrivateKey: vk}}}}}
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = c.Get("https://" + addr + "/v1/eligibility/" + insuredtest.NationalID(0)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), "no fresh evidence") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve ended with %v", err)
	}
}
