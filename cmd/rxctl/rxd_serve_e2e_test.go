package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/nuskha/nuskha/internal/client"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/testutil/audittest"
	"github.com/nuskha/nuskha/internal/trustd"
)

// rxdProcess is the real rxd binary serving in a child process: built from
// this tree, started with `rxd serve`, stopped with SIGTERM when the test
// ends.
type rxdProcess struct {
	url  string // https://localhost:PORT, the name in rxd's certificate
	logs *rxdLogs
}

// buildRxd builds cmd/rxd into a temporary directory and returns its path.
func buildRxd(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build rxd: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "rxd")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/nuskha/nuskha/cmd/rxd").CombinedOutput(); err != nil {
		t.Fatalf("go build rxd: %v\n%s", err, out)
	}
	return bin
}

// rxdCommand runs a one-shot rxd command (an import) and fails the test if
// it fails.
func rxdCommand(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("rxd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startRxd runs `rxd serve` with args on a port of the kernel's choosing
// and returns once rxd logs the address it listens on.
func startRxd(t *testing.T, bin string, args ...string) *rxdProcess {
	t.Helper()
	logs := &rxdLogs{listening: make(chan string, 1)}
	cmd := exec.Command(bin, append([]string{"serve", "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("rxd ended with %v\n%s", err, logs)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("rxd did not stop within 30 s of SIGTERM\n%s", logs)
		}
	})
	select {
	case addr := <-logs.listening:
		_, port, _ := strings.Cut(addr, ":")
		return &rxdProcess{url: "https://localhost:" + port, logs: logs}
	case err := <-exited:
		exited <- err
		t.Fatalf("rxd serve ended before it listened: %v\n%s", err, logs)
	case <-time.After(time.Minute):
		t.Fatalf("rxd serve did not listen within a minute\n%s", logs)
	}
	return nil
}

// rxdLogs is rxd's standard error: kept whole for the test to read, and
// the address of its first "rxd serving" line handed over.
type rxdLogs struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	seen      int
	listening chan string
}

func (l *rxdLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		rest := l.buf.Bytes()[l.seen:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.seen += i + 1
		var line struct{ Msg, Listen string }
		if json.Unmarshal(rest[:i], &line) == nil && line.Msg == "rxd serving" {
			select {
			case l.listening <- line.Listen:
			default:
			}
		}
	}
}

func (l *rxdLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestRxdRefusesRevokedCallerWithinBound is issue 10's finding 2 as an
// attack: a vendor whose key is stolen is revoked (keyCompromise) by an
// officer at trustd, and the real rxd — serving in its own process, with
// its own revocation checker, nothing swapped — must refuse the vendor's
// calls within its -revocation-recheck bound, not when a cached OCSP
// answer expires hours later.
func TestRxdRefusesRevokedCallerWithinBound(t *testing.T) {
	d := deploy(t, trustd.StoreConfig{Driver: "sqlite", Path: "trustd.db"})
	work := t.TempDir()
	vendorChain, vendorKey := d.enrolService(work, "his-connector", "vendor", "service-tls-client")
	rxdChain, rxdKey := d.enrolService(work, "rxd", "service", "service-tls-server")

	bin := buildRxd(t)
	db := filepath.Join(work, "rxd.db")
	rxdCommand(t, bin, "import-registry", "-db", db, "-create", "-mode", "full", "-quiet", writeFile(t, work, "registry.csv", insuredtest.Rows(20)))
	const recheck = 3 * time.Second
	audit, _ := audittest.Keys(t, work)
	rxd := startRxd(t, bin, append([]string{"-db", db, "-tls-cert", rxdChain, "-tls-key", rxdKey, "-client-ca", d.init.RootCert,
		"-revocation-recheck", recheck.String()}, audittest.Flags(audit)...)...)
	// rxctl, for the last word, as the vendor.
	t.Setenv("NUSKHA_RXD_URL", rxd.url)
	t.Setenv("NUSKHA_CLIENT_CERT", vendorChain)
	t.Setenv("NUSKHA_CLIENT_KEY", vendorKey)

	// The vendor's software: its key opened once, its connection kept, as
	// a real integration would.
	vc, err := pemutil.ReadCertificateBundle(vendorChain)
	if err != nil {
		t.Fatal(err)
	}
	key, err := d.keys.OpenKey(context.Background(), vendorKey)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pemutil.ReadCertificateBundle(d.init.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	vendor, err := client.New(client.Options{BaseURL: rxd.url, Roots: pool, ClientChain: vc, ClientKey: key})
	if err != nil {
		t.Fatal(err)
	}
	nid := insuredtest.NationalID(3)
	lookup := func() error {
		var res insured.Result
		err := vendor.Do(context.Background(), "GET", "/v1/eligibility/"+nid, nil, &res)
		if err == nil && !res.Eligible {
			t.Fatalf("the test's patient is not eligible: %+v", res)
		}
		return err
	}
	// The vendor works; rxd has asked trustd's responder and holds "good".
	for range 2 {
		if err := lookup(); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}

	// Timed from before the officer acts: the measured delay is an upper
	// bound on the real one.
	revoked := time.Now()
	d.ok("alice", "cert", "revoke", "-serial", hex.EncodeToString(vc[0].SerialNumber.Bytes()), "-reason", "keyCompromise")

	// Waiting is the point here: the vendor keeps calling, as its software
	// would, until refused or well past the bound.
	const margin = 3 * time.Second
	deadline := revoked.Add(recheck + margin + 5*time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := lookup()
		if err != nil {
			took := time.Since(revoked)
			var p *client.Problem
			if !errors.As(err, &p) || p.Status != 401 || p.Code != "unauthenticated" || !strings.Contains(p.Detail, "keyCompromise") {
				t.Fatalf("after revocation: %v; want 401 unauthenticated, naming keyCompromise", err)
			}
			t.Logf("revoked caller refused after %.1f s (bound: -revocation-recheck %s)", took.Seconds(), recheck)
			if took > recheck+margin {
				t.Fatalf("refused after %s, more than the %s bound (+%s margin)", took.Round(time.Millisecond), recheck, margin)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked vendor is still served %s after its revocation (bound %s)", time.Since(revoked).Round(time.Millisecond), recheck)
		}
		<-tick.C
	}
	// Revocation is final: the vendor stays refused.
	d.refused("", "unauthenticated", "eligibility", "check", nid)

	// rxd logged each lookup it answered under the vendor's name and a
	// pseudonym of the person, and nowhere the national id.
	logs := rxd.logs.String()
	if n := strings.Count(logs, `"msg":"eligibility lookup","caller":"`); n < 2 || strings.Contains(logs, nid) || strings.Contains(logs, nid[:8]) || strings.Contains(logs, nid[2:]) {
		t.Fatalf("rxd's log (%d lookups):\n%s", n, logs)
	}
}
