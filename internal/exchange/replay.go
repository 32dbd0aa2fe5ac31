package exchange

import (
	jsonv2 "github.com/go-json-experiment/json"

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
//
// The id is read as strictly as the verifier reads it: a payload with two
// members named id (spelt alike, escaped or not) or in another case ("ID",
// which encoding/json folds onto id and takes, being later) has no one id,
// and is left to the verifier to refuse for what it is rather than
// answered as a conflict with whichever stored document it names last.
func stored(jws string, kind rx.Kind) (id, hash string, ok bool) {
	k, payload, err := rx.Peek(jws)
	if err != nil || k != kind {
		return "", "", false
	}
	var doc struct {
		ID string `json:"id"`
	}
	// The v2 decoder refuses duplicate names, invalid UTF-8 and trailing
	// data, and matches names exactly; other members are skipped.
	if jsonv2.Unmarshal(payload, &doc) != nil || doc.ID == "" {
		return "", "", false
	}
	return doc.ID, rx.SHA256(jws), true
}
