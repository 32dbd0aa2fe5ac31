package rxapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"

	"github.com/nuskha/nuskha/internal/httpedge"
)

// Audit records every eligibility lookup: who asked (the caller) about
// whom (a pseudonym of the national id, never the id) and what the answer
// was. An error withholds the answer: a lookup that is not recorded is not
// answered. For now LogAudit, the access log, implements it; the
// tamper-evident audit log will.
type Audit interface {
	Lookup(ctx context.Context, caller Caller, pseudonym, outcome string) error
}

// LogAudit writes one "eligibility lookup" line per lookup to Log.
type LogAudit struct{ Log *slog.Logger }

// Lookup logs the lookup; nil Log writes nothing.
func (l LogAudit) Lookup(ctx context.Context, caller Caller, pseudonym, outcome string) error {
	if l.Log != nil {
		l.Log.InfoContext(ctx, "eligibility lookup", "caller", caller.SubjectID, "role", string(caller.Role), "person", pseudonym, "outcome", outcome,
			"request_id", httpedge.RequestID(ctx))
	}
	return nil
}

// MinPseudonymKey is the shortest key accepted: HMAC-SHA256's block
// strength.
const MinPseudonymKey = 32

// Pseudonyms turns national ids into keyed pseudonyms: HMAC-SHA256 under
// a per-deployment key, the first 128 bits in hex. The same id gives the
// same pseudonym under the same key, so one person's lookups can be told
// apart from another's, and by whom; without the key a pseudonym cannot
// be turned back into an id by trying the billion or so valid ones.
type Pseudonyms struct{ key []byte }

// NewPseudonyms uses key (at least MinPseudonymKey bytes).
func NewPseudonyms(key []byte) (*Pseudonyms, error) {
	if len(key) < MinPseudonymKey {
		return nil, errors.New("rxapi: a pseudonym key needs at least 32 bytes")
	}
	return &Pseudonyms{key: append([]byte(nil), key...)}, nil
}

// RandomPseudonyms uses a fresh random key: pseudonyms then correlate
// lookups only within this process's life.
func RandomPseudonyms() *Pseudonyms {
	key := make([]byte, MinPseudonymKey)
	_, _ = rand.Read(key) // crypto/rand.Read does not fail (Go 1.24)
	return &Pseudonyms{key: key}
}

// Of is the pseudonym of a national id as nationalid.Parse returns it.
func (p *Pseudonyms) Of(nationalID string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(nationalID))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
