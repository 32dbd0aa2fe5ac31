package exchange

import (
	"encoding/json"

	"github.com/nuskha/nuskha/internal/rx"
)

// stored names a document that may have been accepted before: its id and
// signing-input hash, read without verifying anything (ok false when it
// does not parse as a document of kind, for the verifier to refuse). A
// document whose id and hash are a stored one's was accepted already —
// the hash binds every signed byte, and the stored one was verified — so
// its first answer is answered again without judging it anew: a signer
// revoked since, rules or a registry changed since, do not turn a retry
// into a refusal. An id stored under another hash is a conflict.
func stored(jws string, kind rx.Kind) (id, hash string, ok bool) {
	k, payload, err := rx.Peek(jws)
	if err != nil || k != kind {
		return "", "", false
	}
	var doc struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(payload, &doc) != nil || doc.ID == "" {
		return "", "", false
	}
	return doc.ID, rx.SHA256(jws), true
}
