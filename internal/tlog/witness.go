package tlog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witnesses (C2SP tlog-witness): after the log signs a checkpoint it asks
// each configured witness to cosign it, proving from its own tiles that
// the checkpoint extends the last one the witness cosigned. A witness
// cosigns only checkpoints consistent with every one it cosigned before,
// so a log showing different auditors different trees would need the
// witnesses' collusion. Each cosignature (cosignature/v1, C2SP
// tlog-cosignature) is verified under the witness's configured key before
// it is stored, and served appended to the checkpoint: the same note,
// more signature lines, which clients that do not know the witnesses
// ignore.
//
// Submitting never holds the log up: each witness has one goroutine (Run
// starts them), at most one request in flight, a timeout, and a backoff
// when it fails; appending, sequencing and signing go on without it.

// Witness is a witness the log asks for cosignatures.
type Witness struct {
	// VerifierKey is the witness's cosignature/v1 note verifier key
	// (name+hash+base64, an Ed25519 key of type 0x04, C2SP
	// tlog-cosignature): its cosignatures are verified under it. Its name
	// is the witness's name, in its signature lines.
	VerifierKey string
	// URL is the witness's submission prefix: checkpoints are posted to
	// URL/add-checkpoint.
	URL string
}

// ErrWitness is wrapped by every refusal of a witness's configuration.
var ErrWitness = errors.New("tlog: witness")

// algCosignatureV1 is the vkey type of an Ed25519 cosignature/v1 key.
const algCosignatureV1 = 0x04

// WitnessVerifier is the verifier of a witness's cosignatures: vkey MUST
// be an Ed25519 cosignature/v1 key (type 0x04). A plain Ed25519 note key
// (type 0x01) is refused, though it has the same form: it would verify
// other signatures than the witness makes.
func WitnessVerifier(vkey string) (note.Verifier, error) {
	name, rest, _ := strings.Cut(vkey, "+")
	hash16, key64, ok := strings.Cut(rest, "+")
	if !ok || name == "" {
		return nil, fmt.Errorf("%w: key %q is not name+hash+base64", ErrWitness, vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(raw) != 33 || raw[0] != algCosignatureV1 {
		return nil, fmt.Errorf("%w: key %q is not an Ed25519 cosignature/v1 key (type 0x04)", ErrWitness, vkey)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrWitness, vkey, err)
	}
	// NewVerifierForCosignatureV1 does not check the key hash the vkey
	// states: a mistyped one would match no signature line, silently.
	if h, err := strconv.ParseUint(hash16, 16, 32); err != nil || len(hash16) != 8 || uint32(h) != v.KeyHash() {
		return nil, fmt.Errorf("%w: key %q: its hash is not its key's", ErrWitness, vkey)
	}
	return witnessVerifier{Verifier: v, key: base64.StdEncoding.EncodeToString(raw[1:])}, nil
}

// witnessVerifier is a witness's verifier that knows its public key.
type witnessVerifier struct {
	note.Verifier
	key string // the Ed25519 public key, base64
}

// WitnessIdentity is what makes a witness one witness: its public key. A
// cosignature/v1 signature does not sign the witness's name, so one
// signature verifies under any name given with the same key, and one key
// under two names is one witness, never two toward a quorum. A verifier
// not made by WitnessVerifier is known by its name and key hash.
func WitnessIdentity(v note.Verifier) string {
	if w, ok := v.(witnessVerifier); ok {
		return "ed25519:" + w.key
	}
	return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
}

// ParseWitness parses a witness written "VKEY URL" (rxd's -audit-witness).
func ParseWitness(s string) (Witness, error) {
	vkey, u, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return Witness{}, fmt.Errorf("%w: %q is not \"VKEY URL\"", ErrWitness, s)
	}
	w := Witness{VerifierKey: vkey, URL: strings.TrimSpace(u)}
	return w, CheckWitnesses([]Witness{w})
}

// CheckWitnesses checks each witness's key and URL, and that no witness
// is named twice.
func CheckWitnesses(ws []Witness) error {
	seen := map[string]bool{}
	for _, w := range ws {
		v, err := WitnessVerifier(w.VerifierKey)
		if err != nil {
			return err
		}
		if seen[v.Name()] || seen[WitnessIdentity(v)] {
			return fmt.Errorf("%w: %q is configured twice (by its name or its key)", ErrWitness, v.Name())
		}
		seen[v.Name()], seen[WitnessIdentity(v)] = true, true
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%w: %s: URL %q is not an http(s) URL prefix", ErrWitness, v.Name(), w.URL)
		}
	}
	return nil
}

// witness is a configured witness, as the log reaches it.
type witness struct {
	name     string
	url      string
	verifier note.Verifier
	// kick asks the witness's goroutine to submit the latest checkpoint;
	// kicks while it is busy or backing off coalesce into one.
	kick chan struct{}
	// mu holds one submission at a time: at most one request in flight.
	mu sync.Mutex
	// known is the size of the last checkpoint the witness cosigned, as
	// far as the log knows (0 at first: the witness says, in a 409).
	known uint64
}

// witnessMetrics count what witnesses answered.
type witnessMetrics struct {
	requests *prometheus.CounterVec
	cosigned *prometheus.GaugeVec
}

// Outcomes of a request to a witness (the outcome label).
const (
	WitnessCosigned    = "cosigned"        // a cosignature, verified and stored
	WitnessConflict    = "conflict"        // 409: the witness has another size
	WitnessRefused     = "refused"         // any other HTTP status
	WitnessBadAnswer   = "bad_cosignature" // 200, but no valid cosignature under its key
	WitnessUnreachable = "error"           // no answer: connection, timeout
)

func newWitnessMetrics(reg prometheus.Registerer) *witnessMetrics {
	m := &witnessMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nuskha_audit_witness_requests_total",
			Help: "Checkpoints submitted to the audit log's witnesses (C2SP tlog-witness), by witness and outcome: cosigned, conflict (409, retried from the witness's size), refused (another status), bad_cosignature (dropped), error (no answer).",
		}, []string{"witness", "outcome"}),
		cosigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nuskha_audit_witness_cosigned_size",
			Help: "Size of the latest audit log checkpoint each witness cosigned (a cosignature stored).",
		}, []string{"witness"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.cosigned)
	}
	return m
}

// newWitnesses checks the configured witnesses and prepares them.
func newWitnesses(ws []Witness) ([]*witness, error) {
	if err := CheckWitnesses(ws); err != nil {
		return nil, err
	}
	out := make([]*witness, len(ws))
	for i, w := range ws {
		v, _ := WitnessVerifier(w.VerifierKey)
		out[i] = &witness{name: v.Name(), url: strings.TrimSuffix(w.URL, "/") + "/add-checkpoint", verifier: v, kick: make(chan struct{}, 1)}
	}
	return out, nil
}

// kickWitnesses asks every witness to cosign the latest checkpoint,
// without waiting.
func (l *Log) kickWitnesses() {
	for _, w := range l.witnesses {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Backoff after a failed submission: doubling from witnessBackoffMin up to
// witnessBackoffMax; the latest checkpoint is submitted again after it.
const (
	witnessBackoffMin = time.Second
	witnessBackoffMax = 5 * time.Minute
)

// runWitness submits the latest checkpoint to w each time it is kicked,
// until ctx ends.
func (l *Log) runWitness(ctx context.Context, w *witness) {
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		err := l.cosign(ctx, w)
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, witnessBackoffMin), witnessBackoffMax)
		l.log.WarnContext(ctx, "audit log: witness did not cosign; trying again later", "witness", w.name, "retry_in", backoff.String(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// SubmitToWitnesses asks each witness, one after the other, to cosign the
// latest checkpoint, and stores the cosignatures that verify. Run does the
// same in the background after each checkpoint; this waits for the
// answers.
func (l *Log) SubmitToWitnesses(ctx context.Context) error {
	var errsOut []error
	for _, w := range l.witnesses {
		if err := l.cosign(ctx, w); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	return errors.Join(errsOut...)
}

// maxConflicts bounds how often one submission follows a witness's 409.
const maxConflicts = 3

// cosign submits the latest checkpoint to w, unless w cosigned it
// already: with a proof from the size w last cosigned, following w's 409
// to the size it has.
func (l *Log) cosign(ctx context.Context, w *witness) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range maxConflicts + 1 {
		cp, err := l.store.LatestCheckpoint(ctx)
		if errors.Is(err, ErrNoCheckpoint) {
			return nil
		}
		if err != nil {
			return err
		}
		if cp.CosignedBy(w.verifier) {
			w.known = max(w.known, cp.Size)
			return nil
		}
		if w.known > cp.Size {
			// The witness has a later checkpoint (another process of this
			// log signed it, and this one reads an older latest): the next
			// checkpoint is submitted from there.
			return nil
		}
		proof := [][]byte{}
		if w.known > 0 && w.known < cp.Size {
			if proof, err = ConsistencyProof(ctx, l.store, w.known, cp.Size); err != nil {
				return fmt.Errorf("tlog: witness %s: proof from %d to %d: %w", w.name, w.known, cp.Size, err)
			}
		}
		sigs, known, err := l.addCheckpoint(ctx, w, w.known, proof, cp.Note)
		if errors.Is(err, errConflict) {
			l.wm.requests.WithLabelValues(w.name, WitnessConflict).Inc()
			// A size beyond every checkpoint this log has signed is a
			// checkpoint of this origin the log does not have — a split
			// view, or a witness gone wrong — never a size to submit
			// from (nor to wait for: it would stop the submissions).
			latest, lerr := l.store.LatestCheckpoint(ctx)
			if lerr != nil {
				w.known = 0
				return lerr
			}
			if known > latest.Size {
				w.known = 0
				l.log.ErrorContext(ctx, "audit log: witness claims a checkpoint larger than any this log has signed: a split view, or a witness in error",
					"witness", w.name, "witness_size", known, "log_size", latest.Size)
				return fmt.Errorf("tlog: witness %s claims size %d, beyond the log's %d", w.name, known, latest.Size)
			}
			l.log.InfoContext(ctx, "audit log: witness has another size; submitting from it", "witness", w.name, "sent", w.known, "witness_size", known)
			w.known = known
			continue
		}
		if err != nil {
			// The witness's size is learnt again from its next 409.
			w.known = 0
			return err
		}
		line, err := verifyCosignature(cp, sigs, w.verifier)
		if err != nil {
			l.wm.requests.WithLabelValues(w.name, WitnessBadAnswer).Inc()
			l.log.ErrorContext(ctx, "audit log: witness answered without a valid cosignature; dropped", "witness", w.name, "size", cp.Size, "err", err)
			return err
		}
		if err := l.store.AddCosignature(ctx, cp.Size, Cosignature{Witness: w.name, KeyHash: w.verifier.KeyHash(), Line: line}, l.now().UTC()); err != nil {
			return fmt.Errorf("tlog: storing %s's cosignature: %w", w.name, err)
		}
		l.wm.requests.WithLabelValues(w.name, WitnessCosigned).Inc()
		l.wm.cosigned.WithLabelValues(w.name).Set(float64(cp.Size))
		w.known = cp.Size
		return nil
	}
	return fmt.Errorf("tlog: witness %s: still in conflict after %d tries", w.name, maxConflicts+1)
}

// errConflict is a witness's 409: it cosigned another size last.
var errConflict = errors.New("tlog: witness has another size")

// Limits on what a witness is sent and answers.
const (
	maxProofLines     = 63 // tlog-witness: at most 63 consistency proof lines
	maxWitnessAnswer  = 16 << 10
	maxConflictAnswer = 32
)

// addCheckpoint posts one add-checkpoint request (C2SP tlog-witness) and
// returns the signature lines of a 200, or errConflict and the witness's
// size for a 409.
func (l *Log) addCheckpoint(ctx context.Context, w *witness, old uint64, proof [][]byte, signed []byte) ([]byte, uint64, error) {
	if len(proof) > maxProofLines {
		return nil, 0, fmt.Errorf("tlog: witness %s: a proof of %d hashes", w.name, len(proof))
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", old)
	for _, h := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	body.WriteByte('\n')
	body.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, &body)
	if err != nil {
		return nil, 0, err
	}
	resp, err := l.witnessHTTP.Do(req)
	if err != nil {
		l.wm.requests.WithLabelValues(w.name, WitnessUnreachable).Inc()
		return nil, 0, fmt.Errorf("tlog: witness %s: %w", w.name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessAnswer+1))
	if err != nil {
		l.wm.requests.WithLabelValues(w.name, WitnessUnreachable).Inc()
		return nil, 0, fmt.Errorf("tlog: witness %s: reading its answer: %w", w.name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if len(answer) > maxWitnessAnswer {
			l.wm.requests.WithLabelValues(w.name, WitnessBadAnswer).Inc()
			return nil, 0, fmt.Errorf("tlog: witness %s: an answer over %d bytes", w.name, maxWitnessAnswer)
		}
		return answer, 0, nil
	case http.StatusConflict:
		text, ok := strings.CutSuffix(string(answer), "\n")
		n, err := strconv.ParseUint(text, 10, 64)
		if !ok || err != nil || strconv.FormatUint(n, 10) != text {
			l.wm.requests.WithLabelValues(w.name, WitnessRefused).Inc()
			return nil, 0, fmt.Errorf("tlog: witness %s: 409 without a size (%q)", w.name, clip(answer, maxConflictAnswer))
		}
		return nil, n, errConflict
	default:
		// 422 among them: the witness holds a checkpoint this one does not
		// extend — a split view, or a witness that lost its state — which
		// a person must look at; the error says which.
		l.wm.requests.WithLabelValues(w.name, WitnessRefused).Inc()
		return nil, 0, fmt.Errorf("tlog: witness %s refused the checkpoint (old size %d): %s: %q", w.name, old, resp.Status, clip(answer, 200))
	}
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// verifyCosignature checks a witness's add-checkpoint answer (signature
// lines) against the checkpoint it was sent: it MUST hold a valid
// timestamped cosignature of the checkpoint under the witness's key, and
// every line MUST be a well-formed signature line. It returns that
// cosignature's line.
func verifyCosignature(cp *SignedCheckpoint, answer []byte, v note.Verifier) ([]byte, error) {
	if len(answer) == 0 || !bytes.HasSuffix(answer, []byte("\n")) {
		return nil, errors.New("tlog: the answer is not signature lines")
	}
	for _, line := range strings.SplitAfter(string(answer), "\n") {
		if line != "" && !strings.HasPrefix(line, "— ") {
			return nil, fmt.Errorf("tlog: the answer has a line that is not a signature: %q", clip([]byte(line), 80))
		}
	}
	n, err := note.Open(append(append([]byte(nil), cp.Note...), answer...), note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("tlog: no valid cosignature: %w", err)
	}
	for _, s := range n.Sigs {
		if s.Name != v.Name() || s.Hash != v.KeyHash() {
			continue
		}
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil || t.Unix() == 0 {
			return nil, errors.New("tlog: the cosignature has no timestamp")
		}
		return []byte("— " + s.Name + " " + s.Base64 + "\n"), nil
	}
	return nil, errors.New("tlog: no cosignature under the witness's key")
}

// Cosignature is a witness's cosignature of a checkpoint, as stored.
type Cosignature struct {
	// Witness is the witness's name; KeyHash its key's hash (as in the
	// signature line).
	Witness string
	KeyHash uint32
	// Line is the signature line, "— <name> <base64>\n".
	Line []byte
}

// CosignedBy reports whether the checkpoint carries a cosignature line
// under v's name and key hash (stored only after it verified).
func (c *SignedCheckpoint) CosignedBy(v note.Verifier) bool {
	for _, s := range c.Cosignatures {
		if s.Witness == v.Name() && s.KeyHash == v.KeyHash() {
			return true
		}
	}
	return false
}

// Served is the checkpoint as the log serves it: its signed note with the
// witnesses' cosignature lines appended.
func (c *SignedCheckpoint) Served() []byte {
	out := append([]byte(nil), c.Note...)
	for _, s := range c.Cosignatures {
		out = append(out, s.Line...)
	}
	return out
}

// ParseCosignatureLine reads the witness name and key hash of a stored
// signature line.
func ParseCosignatureLine(line []byte) (Cosignature, error) {
	rest, ok := strings.CutPrefix(string(line), "— ")
	if !ok || !strings.HasSuffix(rest, "\n") {
		return Cosignature{}, errors.New("tlog: not a signature line")
	}
	name, b64, ok := strings.Cut(strings.TrimSuffix(rest, "\n"), " ")
	sig, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(sig) < 4 || name == "" {
		return Cosignature{}, errors.New("tlog: not a signature line")
	}
	return Cosignature{Witness: name, KeyHash: binary.BigEndian.Uint32(sig), Line: line}, nil
}

// Cosigners counts the distinct witnesses (WitnessIdentity: one key is one
// witness, whatever names it is given under) among ws whose valid
// cosignature the signed checkpoint carries (C2SP tlog-cosignature). A
// line under one of their names and key hashes that does not verify is
// an error: the checkpoint was tampered with.
func Cosigners(signed []byte, ws ...note.Verifier) (int, error) {
	n, err := note.Open(signed, note.VerifierList(ws...))
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	seen := map[string]bool{}
	for _, s := range n.Sigs {
		t, err := fnote.CoSigV1Timestamp(s)
		if err != nil || t.Unix() == 0 {
			continue
		}
		for _, v := range ws {
			if v.Name() == s.Name && v.KeyHash() == s.Hash {
				seen[WitnessIdentity(v)] = true
			}
		}
	}
	return len(seen), nil
}
