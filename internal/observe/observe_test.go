package observe_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/observe"
	"github.com/nuskha/nuskha/internal/testutil/promtool"
)

// flaky is a signer whose token can be taken away.
type flaky struct {
	crypto.Signer
	gone bool
}

func (f *flaky) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.gone {
		return nil, errors.New("CKR_DEVICE_REMOVED at /secret/path?pin=1234")
	}
	return f.Signer.Sign(r, d, o)
}

// TestOpsListener: /healthz answers while a dependency is down; /readyz
// is 200 with every check while they pass, and 503 unavailable (with a
// Retry-After) naming the check that failed, with its own detail and not
// its cause's text (a path, a PIN); the signing key's metrics follow the
// probe; what /metrics exports passes promtool.
func TestOpsListener(t *testing.T) {
	reg := observe.NewRegistry("test")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	token := &flaky{Signer: key}
	signer := observe.NewSigners(reg).Wrap("exchange", token)
	dbDown := false
	ready := &observe.Readiness{Checks: []observe.Check{
		observe.SignerCheck("exchange-key", signer),
		{Name: "database", Run: func(context.Context) error {
			if dbDown {
				return errs.Wrap(errs.Unavailable, errors.New("dial tcp 10.0.0.5:5432: user=nuskha"), "the database does not answer")
			}
			return nil
		}},
	}}
	srv := httptest.NewServer(observe.Handler(reg, ready, nil))
	defer srv.Close()
	get := func(path string, status int) (http.Header, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status {
			t.Fatalf("%s: %d %s, want %d", path, resp.StatusCode, b, status)
		}
		return resp.Header, b
	}
	get("/readyz", 200)
	if _, m := get("/metrics", 200); !strings.Contains(string(m), `nuskha_hsm_token_up{key="exchange"} 1`) {
		t.Fatalf("token not up:\n%s", m)
	}

	token.gone, dbDown = true, true
	get("/healthz", 200)
	h, b := get("/readyz", 503)
	if h.Get("Retry-After") == "" || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("headers %v", h)
	}
	var nr observe.NotReady
	if err := json.Unmarshal(b, &nr); err != nil || nr.Code != errs.Unavailable || len(nr.Checks) != 2 {
		t.Fatalf("%v %s", err, b)
	}
	for _, c := range nr.Checks {
		if c.OK || c.Detail == "" {
			t.Errorf("check %+v", c)
		}
	}
	for _, secret := range []string{"1234", "/secret/path", "10.0.0.5", "user=nuskha", "CKR_"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("/readyz shows %q: %s", secret, b)
		}
	}
	_, m := get("/metrics", 200)
	for _, want := range []string{`nuskha_hsm_token_up{key="exchange"} 0`, `nuskha_hsm_sign_failures_total{key="exchange"} 1`, `nuskha_build_info{daemon="test"`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("no %s in:\n%s", want, m)
		}
	}
	promtool.Check(t, "/metrics", m)
}

// TestPublicReadinessIsBounded: on a public listener, answered without a
// credential, many requests at once and in a row run the checks (an HSM
// signature, the database's write lock) once per observe.ReadyFor, not
// once each; the operations listener's /readyz runs them every time.
func TestPublicReadinessIsBounded(t *testing.T) {
	var runs atomic.Int64
	clock := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	rd := &observe.Readiness{Checks: []observe.Check{{Name: "key", Run: func(context.Context) error { runs.Add(1); return nil }}}, Now: now}
	get := func(url string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	public := httptest.NewServer(rd.Public())
	defer public.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			resp, err := http.Get(public.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("50 public /readyz within ReadyFor ran the checks %d times", n)
	}
	mu.Lock()
	clock = clock.Add(observe.ReadyFor)
	mu.Unlock()
	get(public.URL)
	if n := runs.Load(); n != 2 {
		t.Errorf("a public /readyz ReadyFor later: %d runs, want 2", n)
	}
	ops := httptest.NewServer(rd)
	defer ops.Close()
	before := runs.Load()
	for range 3 {
		get(ops.URL)
	}
	if n := runs.Load() - before; n != 3 {
		t.Errorf("3 operations /readyz ran the checks %d times", n)
	}
}

// TestWrapKeepsInProcess: measuring a key does not hide that it signs in
// this process's memory (rx.Verifier.Sign skips re-verifying such a key's
// signatures, and rxd's exchange key is always measured), nor makes a
// token's key look like one.
func TestWrapKeepsInProcess(t *testing.T) {
	keys := hsm.NewManager(nil)
	t.Cleanup(func() { keys.Close() })
	dir := t.TempDir()
	pass := filepath.Join(dir, "key.pass")
	if err := os.WriteFile(pass, []byte("a long enough passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	soft, err := keys.CreateKey(context.Background(), "softkey:path="+filepath.Join(dir, "key.pem")+"?pin-source="+pass, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signers := observe.NewSigners(observe.NewRegistry("test"))
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		want bool
	}{
		{"softkey", soft, true},
		{"token", &flaky{Signer: ecKey}, false},
	} {
		ip, ok := signers.Wrap("exchange", tc.key).(interface{ InProcess() bool })
		if got := ok && ip.InProcess(); got != tc.want {
			t.Errorf("%s measured: InProcess %v, want %v", tc.name, got, tc.want)
		}
	}
}
