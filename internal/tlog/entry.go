// Package tlog is the audit log made tamper-evident: entries, each naming
// who did what to which object and with what outcome — a patient only by
// a keyed pseudonym — are the leaves of an RFC 9162 Merkle tree, and signed
// checkpoints (C2SP tlog-checkpoint) commit the log to every entry before
// them. Auditors fetch checkpoints, tiles and entries over HTTP (C2SP
// tlog-tiles) and check them with standard tools; the verification code
// here is what nuskha's own auditor tool runs.
//
// An action and its entry commit together: a store appends an entry,
// unsequenced, in the caller's transaction, and a sequencer moves pending
// entries into the tree in batches, so that appends never wait for the
// tree. docs/audit-log.md describes the design and the formats.
package tlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
)

// EntryVersion is the first line of every encoded entry.
const EntryVersion = "nuskha-audit/v1"

// MaxEntrySize bounds an encoded entry (and keeps it within an entry
// bundle's 16-bit length prefix).
const MaxEntrySize = 2048

// ActorKind says what kind of subject acted.
type ActorKind string

// Actor kinds.
const (
	// ActorCert is a certificate holder (a practitioner, a pharmacy's
	// terminal, an insurer's system), named by the SHA-256 fingerprint of
	// the certificate it authenticated with.
	ActorCert ActorKind = "cert"
	// ActorOfficer is one of trustd's officers, named by subject id.
	ActorOfficer ActorKind = "officer"
	// ActorSystem is the software itself ("ceremony", "publisher", …).
	ActorSystem ActorKind = "system"
)

// Actor is who acted.
type Actor struct {
	Kind ActorKind
	// ID is the certificate's fingerprint in lowercase hex (ActorCert),
	// or a subject id or name.
	ID string
	// Role and Org are the actor's role and organisation id, when it has
	// them (both optional).
	Role string
	Org  string
}

// Pseudonym is a patient's keyed pseudonym (see Pseudonyms). The zero
// value means the entry concerns no patient.
type Pseudonym [32]byte

// IsZero reports whether p is the zero value (no patient).
func (p Pseudonym) IsZero() bool { return p == Pseudonym{} }

// Entry is one audit record. It never holds a national id or prescription
// contents: objects are named by id, patients by pseudonym.
type Entry struct {
	Time    time.Time
	Actor   Actor
	Action  string        // issue, revoke, hold, approve, prescribe, view, claim, dispense, close, cancel, rules-check, export, …
	Object  string        // rx:<id>, certificate:<serial>, enrolment:<id>, … (optional)
	Outcome audit.Outcome // intent, ok, refused, failed
	Code    string        // the error code of a refusal or failure (optional)
	Patient Pseudonym     // zero when no patient is concerned
}

// ErrInvalidEntry is wrapped by every refusal of an entry, to encode or to
// decode.
var ErrInvalidEntry = errors.New("tlog: invalid entry")

// timeLayout is the one way an entry's time is written: UTC, nanoseconds
// always nine digits.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// field names, in their order in an encoded entry.
var fieldNames = [...]string{"time", "actor", "role", "org", "action", "object", "outcome", "code", "patient"}

// Validate checks every field against its charset and shape, and refuses
// an entry any of whose text fields is a national id.
func (e *Entry) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("%w: %s %s", ErrInvalidEntry, field, why) }
	if e.Time.IsZero() {
		return bad("time", "is missing")
	}
	if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
		return bad("time", "is out of range")
	}
	switch e.Actor.Kind {
	case ActorCert:
		if len(e.Actor.ID) != 64 || !isLowerHex(e.Actor.ID) {
			return bad("actor", "of a certificate must be its SHA-256 fingerprint in lowercase hex")
		}
	case ActorOfficer, ActorSystem:
		if !isToken(e.Actor.ID, 1) {
			return bad("actor", "id must be 1-128 of A-Z a-z 0-9 . _ : / @ + = -")
		}
	default:
		return bad("actor", fmt.Sprintf("kind %q is not cert, officer or system", e.Actor.Kind))
	}
	if !isAction(e.Action) {
		return bad("action", "must be 1-64 of a-z 0-9 . - starting with a letter")
	}
	switch e.Outcome {
	case audit.Intent, audit.OK, audit.Refused, audit.Failed:
	default:
		return bad("outcome", fmt.Sprintf("%q is not intent, ok, refused or failed", e.Outcome))
	}
	for _, f := range []struct{ name, v string }{{"role", e.Actor.Role}, {"org", e.Actor.Org}, {"object", e.Object}, {"code", e.Code}} {
		if !isToken(f.v, 0) {
			return bad(f.name, "must be at most 128 of A-Z a-z 0-9 . _ : / @ + = -")
		}
	}
	for _, v := range []string{e.Actor.ID, e.Actor.Role, e.Actor.Org, e.Object, e.Code} {
		if identifying(v) {
			return fmt.Errorf("%w: %w", ErrInvalidEntry, audit.ErrIdentifying)
		}
	}
	return nil
}

// Holdable is s if an entry can hold it as an id, role, organisation or
// object — at most 128 of A-Z a-z 0-9 . _ : / @ + = -, and neither it nor
// a ':'-separated part of it written as a national id (a ten-digit
// licence number can be) — else "". What a caller chose, or a
// registration that happens to look like an id, is left out of an entry
// rather than failing the action it records.
func Holdable(s string) string {
	if !isToken(s, 0) || identifying(s) {
		return ""
	}
	return s
}

// identifying reports whether v, or one of its ':'-separated parts (an
// object is kind:id), is a national id as one is written.
func identifying(v string) bool {
	if audit.Identifying(v) {
		return true
	}
	for _, part := range strings.Split(v, ":") {
		if audit.Identifying(part) {
			return true
		}
	}
	return false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isToken: the charset of ids and codes, no spaces, no controls, nothing
// outside ASCII (so no other digits either).
func isToken(s string, min int) bool {
	if len(s) < min || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:/@+=-", c) >= 0) {
			return false
		}
	}
	return true
}

func isAction(s string) bool {
	if len(s) == 0 || len(s) > 64 || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Encode validates e and returns its canonical encoding: the line
// EntryVersion, then one line per field, in fixed order, each "name value"
// (or just "name" when the value is empty), every line ending in LF.
func (e *Entry) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	patient := ""
	if !e.Patient.IsZero() {
		patient = hex.EncodeToString(e.Patient[:])
	}
	values := [len(fieldNames)]string{
		e.Time.UTC().Format(timeLayout),
		string(e.Actor.Kind) + ":" + e.Actor.ID,
		e.Actor.Role, e.Actor.Org, e.Action, e.Object, string(e.Outcome), e.Code, patient,
	}
	var b bytes.Buffer
	b.WriteString(EntryVersion + "\n")
	for i, name := range fieldNames {
		b.WriteString(name)
		if values[i] != "" {
			b.WriteByte(' ')
			b.WriteString(values[i])
		}
		b.WriteByte('\n')
	}
	if b.Len() > MaxEntrySize {
		return nil, fmt.Errorf("%w: encoded entry of %d bytes", ErrInvalidEntry, b.Len())
	}
	return b.Bytes(), nil
}

// Decode parses an encoded entry. It accepts only what Encode produces:
// anything else — another version, a field out of order, a stray space,
// a time not in its one form, a national id — is refused.
func Decode(b []byte) (*Entry, error) {
	bad := func(why string) (*Entry, error) { return nil, fmt.Errorf("%w: %s", ErrInvalidEntry, why) }
	if len(b) > MaxEntrySize {
		return bad("too long")
	}
	rest, ok := bytes.CutPrefix(b, []byte(EntryVersion+"\n"))
	if !ok {
		return bad("not " + EntryVersion)
	}
	var values [len(fieldNames)]string
	for i, name := range fieldNames {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return bad("truncated before " + name)
		}
		rest = after
		v, found := bytes.CutPrefix(line, []byte(name))
		switch {
		case !found:
			return bad("expected field " + name)
		case len(v) == 0:
		case v[0] != ' ' || len(v) == 1:
			return bad("malformed field " + name)
		default:
			values[i] = string(v[1:])
		}
	}
	if len(rest) != 0 {
		return bad("trailing data")
	}
	t, err := time.Parse(timeLayout, values[0])
	if err != nil {
		return bad("time: " + err.Error())
	}
	kind, id, _ := strings.Cut(values[1], ":")
	e := &Entry{
		Time:    t,
		Actor:   Actor{Kind: ActorKind(kind), ID: id, Role: values[2], Org: values[3]},
		Action:  values[4],
		Object:  values[5],
		Outcome: audit.Outcome(values[6]),
		Code:    values[7],
	}
	if values[8] != "" {
		p, err := hex.DecodeString(values[8])
		if err != nil || len(p) != len(e.Patient) || !isLowerHex(values[8]) {
			return bad("patient must be 64 lowercase hex digits")
		}
		e.Patient = Pseudonym(p)
		if e.Patient.IsZero() {
			return bad("patient is the zero pseudonym")
		}
	}
	// What is accepted is exactly what encodes back to b: the checks
	// above are for the message, this one is for canonicity.
	again, err := e.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return bad("not in canonical form")
	}
	return e, nil
}
