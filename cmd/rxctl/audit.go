package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
	"github.com/nuskha/nuskha/internal/tlsconf"
)

// The auditor's tool: it trusts a log's checkpoints only under a verifier
// key from the trust bundle (signed by trustd's bundle key, chained to the
// pinned root) or given by hand, remembers the last checkpoint it saw, and
// accepts a new one only with a proof, from the log's own tiles, that it
// extends the remembered one. With database access it also recomputes the
// tree from the stored entries (tlog.Audit) and names the first one wrong.

// errTampered is a log that does not verify: the command did its job and
// the answer is that the log was changed, or forked.
var errTampered = errors.New("the audit log does not verify")

type indexList []uint64

func (l *indexList) String() string { return fmt.Sprint(*l) }
func (l *indexList) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("an entry index is a number: %v", err)
	}
	*l = append(*l, n)
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// auditTarget is the log to check and the keys to check it with.
type auditTarget struct {
	origin    string
	url       string
	verifiers []note.Verifier
	// fromBundle: the keys came from a verified trust bundle.
	fromBundle bool
}

// auditLogFlags choose a log and its keys.
type auditLogFlags struct {
	log, origin, bundle, caFile, arc *string
	vkeys                            stringList
	// cert and key: a client certificate for a log served only to
	// authenticated callers (rxd's, to the insurer's services). Not taken
	// from NUSKHA_CLIENT_CERT: trustd's log is open to anyone, and a
	// vendor's credentials in the environment are not an auditor's.
	cert, key *string
}

func addAuditLogFlags(fs *flag.FlagSet) *auditLogFlags {
	f := &auditLogFlags{
		log:    fs.String("log", "", "the log's base URL (its checkpoint is <URL>/checkpoint); default: the URL the bundle gives the log"),
		origin: fs.String("origin", "", "the log's origin; default: the first log the bundle names (trustd's own)"),
		bundle: fs.String("bundle", "", "trust bundle (rxctl trust pull) naming the log and its verifier keys"),
		caFile: fs.String("ca-file", envOr("NUSKHA_CA_FILE", ""), "pinned root certificate(s): to verify the bundle, and the log's TLS"),
		arc:    fs.String("oid-arc", pki.DefaultArc, "the deployment's OID arc"),
		cert:   fs.String("cert", "", "client certificate chain (PEM), for a log served only to authenticated callers (rxd's: a service certificate)"),
		key:    fs.String("key", "", "the client certificate's key URI (softkey:… or pkcs11:…), with -cert"),
	}
	fs.Var(&f.vkeys, "vkey", "a verifier key of the log, name+hash+base64 (repeat for retired keys); instead of, or beside, the bundle's")
	return f
}

// target resolves the flags: the keys of the log, from the bundle and -vkey.
func (f *auditLogFlags) target() (*auditTarget, error) {
	t := &auditTarget{origin: *f.origin, url: *f.log}
	keys := []string(f.vkeys)
	if *f.bundle != "" {
		raw, err := os.ReadFile(*f.bundle)
		if err != nil {
			return nil, err
		}
		v, err := verifyBundle(raw, *f.caFile, *f.arc)
		if err != nil {
			return nil, err
		}
		if len(v.Logs) == 0 {
			return nil, errors.New("the trust bundle names no audit log")
		}
		l := v.Logs[0]
		if t.origin != "" {
			var ok bool
			if l, ok = v.Log(t.origin); !ok {
				return nil, usageError{fmt.Errorf("the trust bundle names no log %q", t.origin)}
			}
		}
		t.origin, t.fromBundle = l.Origin, true
		keys = append(keys, l.VerifierKeys...)
		if t.url == "" {
			t.url = l.URL
		}
	}
	if len(keys) == 0 {
		return nil, usageError{errors.New("-bundle (a trust bundle naming the log) or -vkey is required: checkpoints are trusted only under a key")}
	}
	if t.origin == "" {
		return nil, usageError{errors.New("-origin is required without -bundle")}
	}
	for _, k := range keys {
		if err := tlog.CheckLogKey(t.origin, k); err != nil {
			return nil, usageError{fmt.Errorf("-vkey: %v", err)}
		}
		v, _ := note.NewVerifier(k)
		t.verifiers = append(t.verifiers, v)
	}
	return t, nil
}

// client reaches the log at base, trusting the pinned roots for HTTPS and
// presenting the client certificate if one is given.
func (f *auditLogFlags) client(ctx context.Context, e *env, base string) (*tlog.Client, error) {
	if base == "" {
		return nil, usageError{errors.New("-log (the log's base URL) is required: the bundle gives none for this log")}
	}
	if (*f.cert == "") != (*f.key == "") {
		return nil, usageError{errors.New("-cert and -key go together")}
	}
	if *f.cert != "" && !strings.HasPrefix(base, "https:") {
		return nil, usageError{fmt.Errorf("-cert: the log %s is not served over HTTPS", base)}
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if strings.HasPrefix(base, "https:") && (*f.caFile != "" || *f.cert != "") {
		cfg := tlsconf.New()
		if *f.caFile != "" {
			certs, err := pemutil.ReadCertificateBundle(*f.caFile)
			if err != nil {
				return nil, err
			}
			if cfg.RootCAs, err = systemPlus(certs); err != nil {
				return nil, err
			}
		}
		if *f.cert != "" {
			c, err := clientCertificate(ctx, e, *f.cert, *f.key)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg}
	}
	return &tlog.Client{Base: base, HTTP: hc}, nil
}

// auditState is what the auditor remembers of a log: the last checkpoint
// verified, as the signed note the log served.
func readState(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// writeState replaces path with note, atomically: a crash leaves the old
// state or the new one.
func writeState(path string, note []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(note); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// auditVerify is `rxctl audit verify`.
func auditVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "audit verify")
	lf := addAuditLogFlags(fs)
	state := fs.String("state", "", "file remembering the last checkpoint verified: the new one must extend it; written only when everything verified")
	tofu := fs.Bool("tofu", false, "without a remembered checkpoint and a bundle, trust the log's current checkpoint as the start (trust on first use)")
	var entries indexList
	fs.Var(&entries, "entry", "check that entry N is in the log, and print it (repeat)")
	driver := fs.String("db-driver", "", "with database access: sqlite or postgres; recompute the tree from the stored entries")
	dbPath := fs.String("db", "", "SQLite file (with -db-driver sqlite)")
	dsnFile := fs.String("dsn-file", "", "file holding the PostgreSQL URL (with -db-driver postgres)")
	archive := fs.String("archive", "", "verify an archive of pruned entries (trustd/rxd audit export) against the log's checkpoints")
	var witnessKeys stringList
	fs.Var(&witnessKeys, "witness", "a witness's cosignature/v1 verifier key (repeat): the checkpoint accepted must be cosigned by -witness-quorum of them")
	quorum := fs.Int("witness-quorum", 0, "how many of the -witness keys must have cosigned the checkpoint (default: all of them)")
	wait := fs.Duration("witness-wait", 10*time.Second, "how long to wait for a checkpoint the witnesses have cosigned: the newest may not be yet")
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Errorf("audit verify takes no arguments, got %q", fs.Args())}
	}
	t, err := lf.target()
	if err != nil {
		return err
	}
	wq, err := witnessQuorum(witnessKeys, *quorum)
	if err != nil {
		return err
	}
	remembered, err := readState(*state)
	if err != nil {
		return err
	}
	if remembered == nil && !t.fromBundle && !*tofu {
		return usageError{errors.New("no remembered checkpoint (-state) and no trust bundle: give -bundle, or -tofu to trust the log's current checkpoint as the start")}
	}
	c, err := lf.client(ctx, e, t.url)
	if err != nil {
		return err
	}
	signed, cp, err := fetchCheckpoint(ctx, c, t, wq, *wait)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "log %s: checkpoint of %d entries, signature verified\n", t.origin, cp.Size)
	if wq != nil {
		fmt.Fprintf(e.stdout, "cosigned by %d of the %d witnesses named (quorum %d)\n", wq.got, len(wq.verifiers), wq.quorum)
	}
	if remembered != nil {
		old, err := tlog.ParseCheckpoint(noteText(remembered))
		if err != nil {
			return fmt.Errorf("-state %s: %w", *state, err)
		}
		if old.Origin != cp.Origin {
			return usageError{fmt.Errorf("-state %s remembers log %q, not %q", *state, old.Origin, cp.Origin)}
		}
		if cp.Size < old.Size {
			return fmt.Errorf("%w: the log now has %d entries, it had %d when last seen: it was cut short or forked", errTampered, cp.Size, old.Size)
		}
		var proof [][]byte
		if old.Size > 0 && cp.Size > old.Size {
			if proof, err = tlog.ConsistencyProof(ctx, c.Tiles(cp.Size), old.Size, cp.Size); err != nil {
				return fmt.Errorf("%w: no consistency proof from %d to %d entries: %w", errTampered, old.Size, cp.Size, err)
			}
		}
		if err := tlog.VerifyExtends(old, cp, proof); err != nil {
			return fmt.Errorf("%w: the checkpoint of %d entries does not extend the one of %d remembered (a fork): %w", errTampered, cp.Size, old.Size, err)
		}
		fmt.Fprintf(e.stdout, "consistent with the %d entries remembered\n", old.Size)
	}
	for _, i := range entries {
		en, err := checkEntry(ctx, c, cp, i)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "entry %d included: %s %s:%s %s %s %s%s\n", i, en.Time.UTC().Format(time.RFC3339), en.Actor.Kind, en.Actor.ID,
			en.Action, en.Object, en.Outcome, codeSuffix(en.Code))
	}
	if *driver != "" {
		if err := auditDatabase(ctx, e, t, cp, *driver, *dbPath, *dsnFile); err != nil {
			return err
		}
	}
	if *archive != "" {
		if err := verifyArchive(ctx, e, t, c, cp, *archive); err != nil {
			return err
		}
	}
	if *state != "" {
		if err := writeState(*state, signed); err != nil {
			return fmt.Errorf("-state: %w", err)
		}
	}
	fmt.Fprintln(e.stdout, "audit log verified")
	return nil
}

// errUnwitnessed is a checkpoint without the witnesses' quorum: it may be
// genuine, and not yet cosigned, but it is not accepted.
var errUnwitnessed = errors.New("the audit log's checkpoint is not cosigned by enough witnesses")

// witnesses is what -witness and -witness-quorum ask of a checkpoint.
type witnesses struct {
	verifiers []note.Verifier
	quorum    int
	got       int // how many cosigned the checkpoint accepted
}

func witnessQuorum(keys []string, quorum int) (*witnesses, error) {
	if len(keys) == 0 {
		if quorum != 0 {
			return nil, usageError{errors.New("-witness-quorum needs -witness keys")}
		}
		return nil, nil
	}
	w := &witnesses{}
	seen := map[string]string{} // by identity, the name first given
	for _, k := range keys {
		v, err := tlog.WitnessVerifier(k)
		if err != nil {
			return nil, usageError{fmt.Errorf("-witness: %v", err)}
		}
		// One key is one witness: a cosignature does not sign the name,
		// so the same key under two names would count twice.
		id := tlog.WitnessIdentity(v)
		if name, ok := seen[id]; ok {
			if name != v.Name() {
				return nil, usageError{fmt.Errorf("-witness: %s and %s are one key, one witness", name, v.Name())}
			}
			continue
		}
		seen[id] = v.Name()
		w.verifiers = append(w.verifiers, v)
	}
	w.quorum = len(w.verifiers)
	if quorum != 0 {
		w.quorum = quorum
	}
	if w.quorum < 1 || w.quorum > len(w.verifiers) {
		return nil, usageError{fmt.Errorf("-witness-quorum %d: between 1 and the %d distinct -witness keys", quorum, len(w.verifiers))}
	}
	return w, nil
}

// fetchCheckpoint fetches the log's checkpoint and verifies it under the
// log's keys and, with -witness, the witnesses' quorum. The log serves a
// new checkpoint before its witnesses have answered, so one short of the
// quorum is fetched again until wait has passed; then it is refused.
func fetchCheckpoint(ctx context.Context, c *tlog.Client, t *auditTarget, wq *witnesses, wait time.Duration) ([]byte, tlog.Checkpoint, error) {
	deadline := time.Now().Add(wait)
	for {
		signed, err := c.Checkpoint(ctx)
		if err != nil {
			return nil, tlog.Checkpoint{}, err
		}
		cp, err := tlog.VerifyCheckpoint(signed, t.origin, t.verifiers...)
		if err != nil {
			return nil, tlog.Checkpoint{}, fmt.Errorf("%w: the log's checkpoint: %w", errTampered, err)
		}
		if wq == nil {
			return signed, cp, nil
		}
		n, err := tlog.Cosigners(signed, wq.verifiers...)
		if err != nil {
			return nil, tlog.Checkpoint{}, fmt.Errorf("%w: the log's checkpoint: a witness's cosignature: %w", errTampered, err)
		}
		if n >= wq.quorum {
			wq.got = n
			return signed, cp, nil
		}
		if !time.Now().Before(deadline) {
			return nil, tlog.Checkpoint{}, fmt.Errorf("%w: the checkpoint of %d entries has %d of the %d cosignatures required", errUnwitnessed, cp.Size, n, wq.quorum)
		}
		select {
		case <-ctx.Done():
			return nil, tlog.Checkpoint{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func codeSuffix(code string) string {
	if code == "" {
		return ""
	}
	return " (" + code + ")"
}

// noteText is a signed note's text (before the blank line).
func noteText(n []byte) []byte {
	if i := strings.Index(string(n), "\n\n"); i >= 0 {
		return n[:i+1]
	}
	return n
}

// checkEntry fetches entry i and proves it is in cp's tree.
func checkEntry(ctx context.Context, c *tlog.Client, cp tlog.Checkpoint, i uint64) (*tlog.Entry, error) {
	if i >= cp.Size {
		return nil, usageError{fmt.Errorf("-entry %d: the log has %d entries", i, cp.Size)}
	}
	bundle, err := c.Entries(ctx, i/tlog.TileWidth, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	raw := bundle[i%tlog.TileWidth]
	proof, err := tlog.InclusionProof(ctx, c.Tiles(cp.Size), i, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	if err := tlog.VerifyEntry(cp, i, raw, proof); err != nil {
		return nil, fmt.Errorf("%w: entry %d is not in the checkpoint's tree: %w", errTampered, i, err)
	}
	en, err := tlog.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %w", errTampered, i, err)
	}
	return en, nil
}

// auditDatabase recomputes the tree from the entries stored in the log's
// database and checks it against every checkpoint stored (each verified
// under the log's keys) and the one just fetched.
func auditDatabase(ctx context.Context, e *env, t *auditTarget, served tlog.Checkpoint, driver, path, dsnFile string) error {
	var dsn string
	switch driver {
	case sqlstore.SQLite:
		if path == "" {
			return usageError{errors.New("-db (the SQLite file) is required with -db-driver sqlite")}
		}
		// Opening a missing file would make an empty database.
		if _, err := os.Stat(path); err != nil {
			return err
		}
		dsn = path
	case sqlstore.Postgres:
		if dsnFile == "" {
			return usageError{errors.New("-dsn-file is required with -db-driver postgres")}
		}
		b, err := os.ReadFile(dsnFile)
		if err != nil {
			return err
		}
		dsn = strings.TrimSpace(string(b))
	default:
		return usageError{fmt.Errorf("-db-driver %q is not sqlite or postgres", driver)}
	}
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	st := tlogstore.Attach(db)
	stored, err := st.Checkpoints(ctx)
	if err != nil {
		return err
	}
	cps := []tlog.Checkpoint{served}
	for _, s := range stored {
		cp, err := tlog.VerifyCheckpoint(s.Note, t.origin, t.verifiers...)
		if err != nil {
			return fmt.Errorf("%w: stored checkpoint of %d entries: %w", errTampered, s.Size, err)
		}
		cps = append(cps, cp)
	}
	report, err := tlog.Audit(ctx, st, cps...)
	var te *tlog.TamperError
	if errors.As(err, &te) {
		if te.Exact {
			return fmt.Errorf("%w: stored entry %d: %s", errTampered, te.Index, te.Reason)
		}
		return fmt.Errorf("%w: a stored entry in [%d, %d): %s", errTampered, te.Index, te.Before, te.Reason)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "database: %d stored entries recomputed against %d checkpoints", report.Checked, len(cps))
	if report.Pruned > 0 {
		fmt.Fprintf(e.stdout, " (the first %d pruned: verify their archives)", report.Pruned)
	}
	fmt.Fprintf(e.stdout, "; %d sequenced since\n", report.Beyond)
	return nil
}

// verifyArchive checks an archive of pruned entries: its checkpoint under
// the log's keys, every entry's inclusion in it, and that the log's
// current checkpoint extends it — the archived entries are those the log
// published.
func verifyArchive(ctx context.Context, e *env, t *auditTarget, c *tlog.Client, current tlog.Checkpoint, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	a, err := tlog.ParseArchive(raw)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errTampered, path, err)
	}
	acp, err := a.Verify(t.origin, t.verifiers...)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errTampered, path, err)
	}
	if acp.Size > current.Size {
		return fmt.Errorf("%w: %s: its checkpoint has %d entries, the log %d", errTampered, path, acp.Size, current.Size)
	}
	var proof [][]byte
	if acp.Size > 0 && current.Size > acp.Size {
		if proof, err = tlog.ConsistencyProof(ctx, c.Tiles(current.Size), acp.Size, current.Size); err != nil {
			return fmt.Errorf("%w: no consistency proof from the archive's %d entries to %d: %w", errTampered, acp.Size, current.Size, err)
		}
	}
	if err := tlog.VerifyExtends(acp, current, proof); err != nil {
		return fmt.Errorf("%w: %s: the log does not extend the archive's checkpoint: %w", errTampered, path, err)
	}
	fmt.Fprintf(e.stdout, "archive %s: entries %d to %d verified, in the log's checkpoint of %d entries\n", filepath.Base(path), a.First,
		a.First+uint64(len(a.Entries)), current.Size)
	return nil
}

// systemPlus is the system's roots and certs.
func systemPlus(certs []*x509.Certificate) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
