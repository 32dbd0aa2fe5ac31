package hsm

import (
	"context"
	"testing"
	"time"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/nuskha/nuskha/internal/testutil/softhsm"
)

// TestPKCS11HMACCardPulledAfterSignInit: the token's sessions end (as
// when a card is pulled) between C_SignInit and the first C_SignUpdate —
// the one instant where crypto11's HMAC (v1.2.5 hmac.go) panics in Sum
// before it gives its session back to the pool. The MAC MUST come back
// as an error or, the token being there, as the right MAC after one
// reconnect — not a crash, and not a hang: closing a crypto11 context
// waits for every session it lent, under the token's lock, which would
// stop every key of the token and the daemon's shutdown for good. Later
// MACs work, and the Manager closes.
//
// SoftHSM2 does not fail there when its token directory goes away (the
// key is read at C_SignInit), so the test closes every session of the
// token itself (C_CloseAllSessions, from a handle of its own on the same
// module) at that instant, through the same steps as hmacOn.
//
// It runs in a process of its own: were the session kept again, the
// context's Close would wait for it holding crypto11's module-wide lock,
// and every later PKCS#11 test of the process would wait too.
func TestPKCS11HMACCardPulledAfterSignInit(t *testing.T) {
	if !softhsm.InOwnProcess(t, "NUSKHA_HSM_PULLED_CHILD", 2*time.Minute) {
		return
	}
	tok := softhsm.NewToken(t, "pulled")
	m := NewManager(nil)
	ctx := context.Background()
	uri := PKCS11URI(tok.Module, tok.Label, "pseudonym", nil, tok.PINFile)
	if err := m.CreateSecret(ctx, uri, HMACSHA256); err != nil {
		t.Fatal(err)
	}
	mac, err := m.OpenMAC(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("0499370899")
	want, err := mac.Sum(msg)
	if err != nil {
		t.Fatal(err)
	}

	s := mac.(*pkcs11MAC).s
	done := make(chan error, 1)
	var got [32]byte
	var pulledErr error
	go func() {
		pulled := false
		done <- s.use(func(k *crypto11.SecretKey) error {
			h, err := k.NewHMAC(pkcs11.CKM_SHA256_HMAC, 0)
			if err != nil {
				return err
			}
			if pulled {
				got, err = sumHMAC(h, msg)
				return err
			}
			pulled = true
			closeAllSessions(t, tok)
			_, pulledErr = sumHMAC(h, msg)
			return pulledErr
		})
	}()
	select {
	case err := <-done:
		// The pulled card's MAC is an error that says the session went
		// (so use reconnects), and the MAC on the fresh context is right.
		if !isCKR(pulledErr, pkcs11.CKR_SESSION_HANDLE_INVALID) {
			t.Errorf("the MAC whose session ended after C_SignInit: %v, want CKR_SESSION_HANDLE_INVALID", pulledErr)
		}
		if err != nil || got != want {
			t.Fatalf("the MAC after the reconnect: %x, %v; want %x", got, err, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the MAC whose session ended after C_SignInit has not returned in 30 s: the context is being closed, waiting for the session crypto11 never gave back")
	}
	if again, err := mac.Sum(msg); err != nil || again != want {
		t.Fatalf("a MAC after: %x, %v; want %x", again, err, want)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("closing the Manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("closing the Manager has not returned in 30 s")
	}
}

// closeAllSessions ends every session of the process on tok's slot,
// crypto11's included, as pulling the card does.
func closeAllSessions(t *testing.T, tok *softhsm.Token) {
	t.Helper()
	p := pkcs11.New(tok.Module)
	if p == nil {
		t.Fatal("cannot load", tok.Module)
	}
	defer p.Destroy()
	// crypto11 has initialised the module: this handle shares its state,
	// and does not finalise it.
	if err := p.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		t.Fatal(err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := p.GetTokenInfo(s); err == nil && info.Label == tok.Label {
			if err := p.CloseAllSessions(s); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no token %q", tok.Label)
}

// A cleanup that panics is reported as a session not given back, and the
// panic goes no further.
func TestCallRecovered(t *testing.T) {
	if !callRecovered(func() {}) {
		t.Fatal("a cleanup that returned was reported as failed")
	}
	if callRecovered(func() { panic("attempt to Put into a full ResourcePool") }) {
		t.Fatal("a cleanup that panicked was reported as done")
	}
}
