package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/cli"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/lifecycle"
	"github.com/nuskha/nuskha/internal/testutil/logbuf"
	"github.com/nuskha/nuskha/internal/trustd"
)

// TestSIGHUPReloads: SIGHUP to a serving trustd puts a renewed TLS
// certificate on its admin and public listeners and a re-signed ARL on
// its relying-party listener, without a restart. After the certificate
// and the ARL files are broken, a SIGHUP says the reload failed and what
// was served stays.
func TestSIGHUPReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	stdout, stderr, code := runTrustd("init", "-dir", dir, "-officer", "alice", "-officer", "bob",
		"-admin-listen", "127.0.0.1:0", "-public-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0")
	if code != cli.ExitOK {
		t.Fatalf("init: exit %d: %s", code, stderr)
	}
	_, rootKey, _ := strings.Cut(stdout, "root key:  ")
	rootKey, _, _ = strings.Cut(rootKey, "\n")
	config := filepath.Join(dir, "trustd.json")
	cfg, err := trustd.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}

	// trustd serve, in this process: the SIGHUP below is sent to it.
	logs := logbuf.NewLines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", config}, io.Discard, logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	wait := func(msg string, n int) {
		t.Helper()
		select {
		case <-logs.Logged(msg, n):
		case err := <-done:
			t.Fatalf("serve ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%q was not logged %d times", msg, n)
		}
	}
	wait("listening", 3)
	addrs := map[string]string{}
	for _, l := range logs.Find("listening") {
		addrs[l["listener"].(string)], _ = l["addr"].(string)
	}
	serial := func(listener string) string {
		t.Helper()
		// Only the certificate served matters here, not who may call.
		c, err := tls.Dial("tcp", addrs[listener], &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	}
	arlNumber := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addrs["http"] + "/crl/root-ca.crl")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, _ := io.ReadAll(resp.Body)
		list, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatalf("the ARL served: %d %v", resp.StatusCode, err)
		}
		return list.Number.String()
	}
	oldSerial, oldARL := serial("admin"), arlNumber()
	if serial("public") != oldSerial || oldARL != "1" {
		t.Fatalf("before: public serves serial %s, admin %s; ARL %s", serial("public"), oldSerial, oldARL)
	}

	newSerial := renewTLS(t, cfg)
	if _, stderr, code := runTrustd("sign-arl", "-config", config, "-root-key", rootKey); code != cli.ExitOK {
		t.Fatalf("sign-arl: exit %d: %s", code, stderr)
	}
	// Nothing changes before the SIGHUP (the ARL's own re-read is minutes away).
	if serial("admin") != oldSerial || arlNumber() != oldARL {
		t.Fatal("the new certificate or ARL was served before the SIGHUP")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("ARL loaded", 2) // the first at start; Reload loads it after the certificate
	if got := logs.Find(trustd.MsgReloaded); len(got) != 1 || got[0]["what"] != "tls" {
		t.Fatalf("reloaded: %v", got)
	}
	for _, l := range []string{"admin", "public"} {
		if got := serial(l); got != newSerial {
			t.Errorf("after SIGHUP the %s listener serves serial %s, want the renewed %s (was %s)", l, got, newSerial, oldSerial)
		}
	}
	if got := arlNumber(); got != "2" {
		t.Errorf("after SIGHUP the ARL served is number %s, want 2", got)
	}

	for _, f := range []string{cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.CA.ARL)} {
		if err := os.WriteFile(f, []byte("not what it was\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait(lifecycle.MsgReloadFailed, 1)
	msg, _ := logs.Find(lifecycle.MsgReloadFailed)[0]["err"].(string)
	if !strings.Contains(msg, "TLS certificate not reloaded, the running one stays") || !strings.Contains(msg, "ARL not reloaded") {
		t.Errorf("the failed reload says %q", msg)
	}
	if got, arl := serial("admin"), arlNumber(); got != newSerial || arl != "2" {
		t.Errorf("after a failed reload: serial %s, ARL %s; want %s and 2 kept", got, arl, newSerial)
	}
}

// renewTLS writes a new certificate for trustd's TLS key, issued by the
// intermediate as init's was, in place of tls.cert; it returns its serial.
func renewTLS(t *testing.T, cfg *trustd.Config) string {
	t.Helper()
	chain, err := pemutil.ReadCertificateBundle(cfg.Path(cfg.TLS.Cert))
	if err != nil {
		t.Fatal(err)
	}
	keys := hsm.NewManager(hsm.NoPrompt)
	defer keys.Close()
	issuer, err := keys.OpenKey(context.Background(), cfg.CA.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *chain[0]
	tmpl.SerialNumber = new(big.Int).Add(chain[0].SerialNumber, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, chain[1], chain[0].PublicKey, issuer)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[1].Raw})...)
	if err := os.WriteFile(cfg.Path(cfg.TLS.Cert), out, 0o600); err != nil {
		t.Fatal(err)
	}
	return tmpl.SerialNumber.Text(16)
}
