package tlog

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/hsm"
)

// The checkpoint key is Ed25519, which C2SP signed notes use and
// PKCS#11 tokens (SoftHSM2 through crypto11 among them) do not offer. Its
// private key is therefore kept sealed — AES-256-GCM under a secret key on
// the token (hsm.AEAD) — in a file beside the configuration, and unsealed
// into the process's memory when the log starts. The file alone is
// useless; the token alone signs nothing. docs/audit-log.md says how the
// key is rotated.
//
// A sealed key file is three lines:
//
//	nuskha-sealed-note-key/v1
//	<verifier key: name+hash+base64 public key>
//	<base64 of nonce‖AES-GCM(signer key)‖tag>
//
// and the verifier key line is the AAD, so that a sealed private key
// cannot be passed off under another public key.
const sealedKeyHeader = "nuskha-sealed-note-key/v1"

// ErrSealedKey is wrapped when a sealed key file cannot be used.
var ErrSealedKey = errors.New("tlog: sealed note key")

// GenerateNoteKey makes a new checkpoint key called name and returns it
// sealed under aead, and its verifier key. Rotating makes a new one with a
// new name (the log's origin does not change).
func GenerateNoteKey(aead hsm.AEAD, name string) (sealed []byte, vkey string, err error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return nil, "", fmt.Errorf("tlog: note key: %w", err)
	}
	ct, err := aead.Seal([]byte(skey), sealedKeyAAD(vkey))
	if err != nil {
		return nil, "", err
	}
	return fmt.Appendf(nil, "%s\n%s\n%s\n", sealedKeyHeader, vkey, base64.StdEncoding.EncodeToString(ct)), vkey, nil
}

func sealedKeyAAD(vkey string) []byte { return []byte(sealedKeyHeader + "\n" + vkey + "\n") }

// OpenNoteKey unseals a key made by GenerateNoteKey.
func OpenNoteKey(aead hsm.AEAD, sealed []byte) (*NoteKey, error) {
	lines := bytes.Split(sealed, []byte("\n"))
	if len(lines) != 4 || string(lines[0]) != sealedKeyHeader || len(lines[3]) != 0 {
		return nil, fmt.Errorf("%w: not a %s file", ErrSealedKey, sealedKeyHeader)
	}
	vkey := string(lines[1])
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealedKey, err)
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(string(lines[2]))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealedKey, err)
	}
	skey, err := aead.Open(ct, sealedKeyAAD(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealedKey, err)
	}
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealedKey, err)
	}
	// The unsealed key MUST be the private half of the verifier key.
	probe, err := note.Sign(&note.Note{Text: "nuskha key check\n"}, signer)
	if err == nil {
		_, err = note.Open(probe, note.VerifierList(verifier))
	}
	if err != nil || signer.Name() != verifier.Name() || signer.KeyHash() != verifier.KeyHash() {
		return nil, fmt.Errorf("%w: the private key is not the verifier key's", ErrSealedKey)
	}
	return &NoteKey{signer: signer, verifier: verifier, vkey: vkey}, nil
}
