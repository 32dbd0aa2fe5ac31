package rxapi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/httpedge"
)

// IdempotencyTTL is how long the answer to a write made with an
// Idempotency-Key is kept for its retries.
const IdempotencyTTL = 24 * time.Hour

// SealKeySize is the size of API.SealKey.
const SealKeySize = 32

// ReplayedHeader marks an answer replayed for an Idempotency-Key.
const ReplayedHeader = "Idempotent-Replayed"

// validKey reports whether an Idempotency-Key is 1 to 64 of A-Z a-z 0-9 - _.
func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// requestHash is the SHA-256 of its parts, each length-prefixed so that
// no two sequences hash alike by moving bytes between them.
func requestHash(parts ...[]byte) []byte {
	h := sha256.New()
	for _, part := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// boundRequest is the hash of a request as an Idempotency-Key binds it:
// its method, path, body and the SHA-256 of its Claim-Secret (absent or
// not), so that a kept answer is replayed only to a request that could
// have made it — a close sent again with a wrong secret is not answered
// the receipt.
func boundRequest(r *http.Request, body []byte) []byte {
	secret := sha256.Sum256([]byte(r.Header.Get("Claim-Secret")))
	return requestHash([]byte(r.Method), []byte(r.URL.Path), body, secret[:])
}

// idempotencyCaller is who may replay an answer: the calling software's
// certificate and, past a session, the card acting.
func idempotencyCaller(r *http.Request) string {
	c := CallerFrom(r.Context()).Thumbprint
	if a := actorFrom(r.Context()); a != nil {
		c += "|" + a.Role + ":" + a.CertSerial
	}
	return c
}

// idempotent makes a write safe to retry with an Idempotency-Key: the
// first successful answer (2xx) is kept for IdempotencyTTL, bound to the
// caller and the request's hash, and a retry of the same request gets it
// again byte for byte, status included (marked Idempotent-Replayed: true);
// another request under the key is idempotency-key-reused. A refusal is
// not kept: it changed nothing, and a retry is judged afresh. Requests
// under one key are served one at a time by this process (a claim taken
// twice at once would rotate its secret under the first answer).
//
// Answers carry secrets (a session's token, a claim's secret) that the
// exchange otherwise keeps only as hashes, so they are kept sealed
// (AES-256-GCM under SealKey, bound to the key, caller and request).
func (a *API) idempotent(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			next(w, r)
			return
		}
		if a.Exchange == nil || a.Idempotency == nil {
			a.failExchange(w, r, errNoExchange)
			return
		}
		if !validKey(key) {
			a.failExchange(w, r, errs.FieldError(errs.Malformed, "Idempotency-Key", "must be 1 to 64 of A-Z a-z 0-9 - _"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, httpedge.Limit(r)))
		if err != nil {
			if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
				a.failExchange(w, r, errs.New(errs.TooLarge, "body larger than %d bytes", mbe.Limit))
				return
			}
			a.failExchange(w, r, errs.New(errs.Malformed, "the body could not be read"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		caller, hash := idempotencyCaller(r), boundRequest(r, body)
		defer a.keyLocks.lock(caller + "\x00" + key)()
		ctx := r.Context()
		kept, err := a.Idempotency.Idempotent(ctx, key, caller, hash, a.Now())
		if err != nil {
			a.failExchange(w, r, err)
			return
		}
		if kept != nil {
			a.replay(w, r, kept)
			return
		}
		rec := &captured{header: w.Header().Clone()}
		next(rec, r)
		if rec.status/100 == 2 {
			now := a.Now()
			sealed := a.seal(rec.body.Bytes(), key, caller, hash)
			if _, err := a.Idempotency.Remember(ctx, &exchange.IdempotencyRecord{Key: key, Caller: caller, RequestSHA256: hash,
				Status: rec.status, Body: sealed, CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL)}); err != nil {
				// The act is done and this is its answer; only its retries
				// are not covered. Another instance's first answer (a race
				// across instances) is not ours to send: ours is what
				// stands now.
				a.Log.WarnContext(ctx, "an answer could not be kept for its Idempotency-Key", "request_id", httpedge.RequestID(ctx), "err", err)
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// replay answers a kept answer again.
func (a *API) replay(w http.ResponseWriter, r *http.Request, kept *exchange.IdempotencyRecord) {
	body, err := a.unseal(kept.Body, kept.Key, kept.Caller, kept.RequestSHA256)
	if err != nil {
		a.failExchange(w, r, errs.New(errs.Conflict, "the answer kept for this Idempotency-Key cannot be read by this rxd (its sealing key changed); retry with a new key"))
		return
	}
	if len(body) > 0 {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(ReplayedHeader, "true")
	w.WriteHeader(kept.Status)
	_, _ = w.Write(body)
}

func sealAD(key, caller string, hash []byte) []byte {
	return requestHash([]byte(key), []byte(caller), hash)
}

func (a *API) seal(body []byte, key, caller string, hash []byte) []byte {
	nonce := make([]byte, a.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read does not fail (Go 1.24)
	return a.aead.Seal(nonce, nonce, body, sealAD(key, caller, hash))
}

func (a *API) unseal(sealed []byte, key, caller string, hash []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("rxapi: a kept answer is too short")
	}
	return a.aead.Open(nil, sealed[:n], sealed[n:], sealAD(key, caller, hash))
}

// newAEAD is AES-256-GCM under key, or under a random key (good for this
// process only) when key is not SealKeySize bytes.
func newAEAD(key []byte) cipher.AEAD {
	if len(key) != SealKeySize {
		key = make([]byte, SealKeySize)
		_, _ = rand.Read(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key is always accepted
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// captured is an answer held back until it is kept.
type captured struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header { return c.header }

func (c *captured) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captured) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}

// keyLocks serialises requests by a string key, holding an entry only
// while a request under it is served.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock waits for key and returns its unlock.
func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.held == nil {
		k.held = map[string]*keyLock{}
	}
	l := k.held[key]
	if l == nil {
		l = &keyLock{}
		k.held[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.held, key)
		}
		k.mu.Unlock()
	}
}
