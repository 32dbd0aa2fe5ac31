package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/problem"
)

// TestTrustdAnswersShownIndented: trustd answers compact JSON, as every
// API does (problem.JSON); the commands that show an answer as it came
// (an officer's calls, cert status) indent it for the person reading —
// the README's walkthrough (deploy/demo.sh) and the end-to-end tests look
// for `"name": "value"`.
func TestTrustdAnswersShownIndented(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.JSON(w, http.StatusOK, map[string]any{"status": "good", "licence_valid_from_hijri": "1403-01-01", "rule": "a && b"})
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := write("server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	keys := hsm.NewManager(nil)
	t.Cleanup(func() { keys.Close() })
	keyURI := "softkey:path=" + filepath.Join(dir, "officer.key") + "?pin-source=" + write("officer.pass", []byte("officer key passphrase\n"))
	key, err := keys.CreateKey(context.Background(), keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "officer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := write("officer.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	officer := []string{"-admin", srv.URL, "-ca-file", caFile, "-cert", certFile, "-key", keyURI}
	for _, args := range [][]string{
		{"cert", "status", "-serial", "01", "-public", srv.URL, "-ca-file", caFile},
		append([]string{"subject", "show", "sub_1"}, officer...),
		append([]string{"subject", "update", "sub_1", "-file", write("s.json", []byte(`{"version": 1}`))}, officer...),
		append([]string{"change", "list"}, officer...),
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr, keys); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
		}
		for _, want := range []string{`"status": "good"`, `"licence_valid_from_hijri": "1403-01-01"`, `"rule": "a && b"`} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%q shows %s, without %s", args[:2], stdout.String(), want)
			}
		}
	}
}

// A claim granted with an expiry still ahead is shown held until then; one
// given back lapsed, for its secret only, is shown lapsed and as for
// closing — not "held until" a time already past.
func TestClaimHoldShown(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	if got := hold(now.Add(2*time.Hour), now); got != "held until 2026-12-05T12:00:00Z" {
		t.Errorf("a running claim: %q", got)
	}
	got := hold(now.Add(-time.Minute), now)
	if !strings.HasPrefix(got, "lapsed at 2026-12-05T09:59:00Z") || !strings.Contains(got, "rxctl rx close") || strings.Contains(got, "held until") {
		t.Errorf("a lapsed claim given back: %q", got)
	}
}
