package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/testutil/testpki"
	"github.com/nuskha/nuskha/internal/tlog"
)

const auditOrigin = "trustd.test/trustd-audit"

// auditedLog is a log as a daemon keeps it: entries in its database
// (SQLite or PostgreSQL), checkpoints signed with a sealed note key, the
// whole served read-only over HTTP.
type auditedLog struct {
	t      *testing.T
	store  *tlogstore.Store
	log    *tlog.Log
	key    *tlog.NoteKey
	vkey   string
	url    string
	dbArgs []string // the database flags of rxctl audit verify
	dir    string
}

func newAuditedLog(t *testing.T, driver string, key *tlog.NoteKey) *auditedLog {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	a := &auditedLog{t: t, dir: dir}
	dsn := filepath.Join(dir, "daemon.db")
	a.dbArgs = []string{"-db-driver", "sqlite", "-db", dsn}
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
		dsnFile := filepath.Join(dir, "dsn")
		if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.dbArgs = []string{"-db-driver", "postgres", "-dsn-file", dsnFile}
	}
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if a.store, err = tlogstore.New(ctx, db); err != nil {
		t.Fatal(err)
	}
	if a.log, err = tlog.New(a.store, tlog.Config{Origin: auditOrigin, Key: key}); err != nil {
		t.Fatal(err)
	}
	a.key, a.vkey = key, key.VerifierKey()
	srv := httptest.NewServer(tlog.Handler(a.store, nil))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

// noteKeyForTest makes a checkpoint key sealed under a software AES key,
// as trustd init does for the embedded default.
func noteKeyForTest(t *testing.T, name string) *tlog.NoteKey {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pass")
	if err := os.WriteFile(pw, []byte("auditor test pass"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := hsm.NewManager(nil)
	t.Cleanup(func() { m.Close() })
	uri := hsm.SoftKeyURI(filepath.Join(dir, "seal.key"), pw)
	if err := m.CreateSecret(ctx, uri, hsm.AES256GCM); err != nil {
		t.Fatal(err)
	}
	aead, err := m.OpenAEAD(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _, err := tlog.GenerateNoteKey(aead, name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tlog.OpenNoteKey(aead, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// grow appends entries [from, to), of actor who, and signs a checkpoint.
func (a *auditedLog) grow(from, to int, who string) {
	a.t.Helper()
	ctx := context.Background()
	var es []*tlog.Entry
	for i := from; i < to; i++ {
		es = append(es, &tlog.Entry{Time: time.Date(2026, 12, 5, 8, 0, 0, i, time.UTC), Actor: tlog.Actor{Kind: tlog.ActorOfficer, ID: who},
			Action: "certificate.revoke", Object: fmt.Sprintf("certificate:%x", i+1), Outcome: audit.OK})
	}
	if err := a.store.Append(ctx, es...); err != nil {
		a.t.Fatal(err)
	}
	if err := a.log.Step(ctx); err != nil {
		a.t.Fatal(err)
	}
}

// verify runs rxctl audit verify against the log.
func (a *auditedLog) verify(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	base := []string{"audit", "verify", "-log", a.url, "-origin", auditOrigin, "-vkey", a.vkey}
	code = run(context.Background(), append(base, args...), &out, &errb, hsm.NewManager(nil))
	return out.String(), errb.String(), code
}

// exec runs SQL on the log's database behind the store's back.
func (a *auditedLog) exec(q string, args ...any) {
	a.t.Helper()
	db := a.store.DB()
	if _, err := db.SQL().ExecContext(context.Background(), db.Rebind(q), args...); err != nil {
		a.t.Fatalf("%s: %v", q, err)
	}
}

// unguard drops the append-only triggers, as the database's
// administrator could: only the checkpoints can catch what follows.
func (a *auditedLog) unguard() {
	if a.store.DB().Dialect() == sqlstore.Postgres {
		a.exec("ALTER TABLE tlog_entries DISABLE TRIGGER USER")
		return
	}
	a.exec("DROP TRIGGER tlog_entries_no_update")
	a.exec("DROP TRIGGER tlog_entries_pruned_only")
}

func (a *auditedLog) entry(i int) []byte {
	a.t.Helper()
	es, err := a.store.ReadEntries(context.Background(), uint64(i), 1)
	if err != nil || len(es) != 1 {
		a.t.Fatalf("entry %d: %v", i, err)
	}
	return es[0]
}

func eachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}

// TestAuditVerifyFindsTampering: with database access, the auditor's tool
// recomputes the tree from the stored entries and names the first one
// wrong — edited, deleted, inserted or reordered — with a non-zero exit;
// the untouched log verifies.
func TestAuditVerifyFindsTampering(t *testing.T) {
	key := noteKeyForTest(t, auditOrigin+"/k1")
	eachDriver(t, func(t *testing.T, driver string) {
		for _, tc := range []struct {
			name   string
			tamper func(a *auditedLog)
			want   string
		}{
			{"untouched", func(*auditedLog) {}, ""},
			{"edited", func(a *auditedLog) {
				a.exec("UPDATE tlog_entries SET entry = $1 WHERE idx = 7", bytes.Replace(a.entry(7), []byte("officer-a"), []byte("officer-b"), 1))
			}, "stored entry 7: does not hash to the leaf"},
			{"deleted", func(a *auditedLog) { a.exec("DELETE FROM tlog_entries WHERE idx = 12") }, "stored entry 12: missing"},
			{"inserted", func(a *auditedLog) {
				// A row slipped in at 5, the rest moved up one.
				for i := 29; i >= 5; i-- {
					a.exec("UPDATE tlog_entries SET idx = idx + 1 WHERE idx = $1", i)
				}
				a.exec("INSERT INTO tlog_entries (idx, entry) VALUES (5, $1)", a.entry(3))
			}, "stored entry 5: does not hash"},
			{"reordered", func(a *auditedLog) {
				e9, e10 := a.entry(9), a.entry(10)
				a.exec("UPDATE tlog_entries SET entry = $1 WHERE idx = 9", e10)
				a.exec("UPDATE tlog_entries SET entry = $1 WHERE idx = 10", e9)
			}, "stored entry 9: does not hash"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := newAuditedLog(t, driver, key)
				a.grow(0, 30, "officer-a")
				a.unguard()
				tc.tamper(a)
				stdout, stderr, code := a.verify(append([]string{"-tofu"}, a.dbArgs...)...)
				if tc.want == "" {
					if code != exitOK || !strings.Contains(stdout, "database: 30 stored entries recomputed") || !strings.Contains(stdout, "audit log verified") {
						t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
					}
					return
				}
				if code == exitOK || !strings.Contains(stderr, "the audit log does not verify: "+tc.want) {
					t.Fatalf("exit %d, want a failure naming %q\nstdout %s\nstderr %s", code, tc.want, stdout, stderr)
				}
			})
		}
	})
}

// TestAuditVerifyRemembersOnlyWhatVerified: the state file holds the last
// checkpoint verified; a later one is accepted only with a proof that it
// extends it. A forked log (same origin and key, another history) and one
// cut short are refused, and the state file is left as it was; a log
// that grew is accepted and remembered. Without a state or a bundle, the
// first checkpoint is trusted only when -tofu says so.
func TestAuditVerifyRemembersOnlyWhatVerified(t *testing.T) {
	key := noteKeyForTest(t, auditOrigin+"/k1")
	eachDriver(t, func(t *testing.T, driver string) {
		a := newAuditedLog(t, driver, key)
		a.grow(0, 20, "officer-a")
		state := filepath.Join(t.TempDir(), "trustd.state")

		if _, stderr, code := a.verify("-state", state); code != exitRefused || !strings.Contains(stderr, "-tofu") {
			t.Fatalf("first use without -tofu: exit %d, %s", code, stderr)
		}
		if _, err := os.Stat(state); err == nil {
			t.Fatal("a refused first use wrote the state")
		}
		if stdout, stderr, code := a.verify("-state", state, "-tofu", "-entry", "3"); code != exitOK ||
			!strings.Contains(stdout, "entry 3 included: 2026-12-05T08:00:00Z officer:officer-a certificate.revoke certificate:4 ok") {
			t.Fatalf("first use with -tofu: exit %d\n%s%s", code, stdout, stderr)
		}
		remembered, _ := os.ReadFile(state)
		if !bytes.HasPrefix(remembered, []byte(auditOrigin+"\n20\n")) {
			t.Fatalf("state: %q", remembered)
		}

		// A fork: the same origin and key, another history, longer.
		fork := newAuditedLog(t, driver, key)
		fork.grow(0, 25, "officer-z")
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"audit", "verify", "-log", fork.url, "-origin", auditOrigin, "-vkey", a.vkey, "-state", state},
			&out, &errb, hsm.NewManager(nil))
		if code == exitOK || !strings.Contains(errb.String(), "does not extend the one of 20 remembered") {
			t.Fatalf("forked log: exit %d\n%s%s", code, out.String(), errb.String())
		}
		// Cut short: a log of fewer entries than remembered.
		short := newAuditedLog(t, driver, key)
		short.grow(0, 10, "officer-a")
		errb.Reset()
		code = run(context.Background(), []string{"audit", "verify", "-log", short.url, "-origin", auditOrigin, "-vkey", a.vkey, "-state", state},
			&out, &errb, hsm.NewManager(nil))
		if code == exitOK || !strings.Contains(errb.String(), "cut short or forked") {
			t.Fatalf("shorter log: exit %d\n%s", code, errb.String())
		}
		// Another key: the checkpoint is not trusted.
		if _, stderr, code := a.verify("-state", state, "-vkey", "bad"); code == exitOK {
			t.Fatalf("bad -vkey accepted: %s", stderr)
		}
		other := noteKeyForTest(t, auditOrigin+"/k1")
		errb.Reset()
		code = run(context.Background(), []string{"audit", "verify", "-log", a.url, "-origin", auditOrigin, "-vkey", other.VerifierKey(), "-state", state},
			&out, &errb, hsm.NewManager(nil))
		if code == exitOK || !strings.Contains(errb.String(), "the log's checkpoint") {
			t.Fatalf("checkpoint under another key: exit %d, %s", code, errb.String())
		}
		if now, _ := os.ReadFile(state); !bytes.Equal(now, remembered) {
			t.Fatalf("a refused run changed the state:\n%s\nwas\n%s", now, remembered)
		}

		// The log grows: consistent, accepted, remembered.
		a.grow(20, 300, "officer-a")
		stdout, stderr, code := a.verify("-state", state, "-entry", "299")
		if code != exitOK || !strings.Contains(stdout, "consistent with the 20 entries remembered") || !strings.Contains(stdout, "entry 299 included") {
			t.Fatalf("grown log: exit %d\n%s%s", code, stdout, stderr)
		}
		if now, _ := os.ReadFile(state); !bytes.HasPrefix(now, []byte(auditOrigin+"\n300\n")) {
			t.Fatalf("state after success: %q", now)
		}
		if _, stderr, code := a.verify("-state", state, "-entry", "300"); code != exitRefused || !strings.Contains(stderr, "the log has 300 entries") {
			t.Fatalf("entry past the end: exit %d, %s", code, stderr)
		}
	})
}

// TestAuditVerifyArchives: entries archived and pruned by the daemon's
// export verify from their archive against the log's checkpoints, and
// the database audit goes on over what is left; an archive altered
// afterwards, or of another log, is refused.
func TestAuditVerifyArchives(t *testing.T) {
	key := noteKeyForTest(t, auditOrigin+"/k1")
	eachDriver(t, func(t *testing.T, driver string) {
		a := newAuditedLog(t, driver, key)
		a.grow(0, 100, "officer-a")
		archive := filepath.Join(a.dir, "archive.json")
		if _, err := a.store.ExportFile(context.Background(), archive, 60, time.Time{}, true); err != nil {
			t.Fatal(err)
		}
		a.grow(100, 120, "officer-a")
		args := append([]string{"-tofu", "-archive", archive}, a.dbArgs...)
		stdout, stderr, code := a.verify(args...)
		if code != exitOK || !strings.Contains(stdout, "archive archive.json: entries 0 to 60 verified, in the log's checkpoint of 120 entries") ||
			!strings.Contains(stdout, "the first 60 pruned") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		raw, _ := os.ReadFile(archive)
		altered := filepath.Join(a.dir, "altered.json")
		os.WriteFile(altered, bytes.Replace(raw, []byte(`"first": 0`), []byte(`"first": 1`), 1), 0o600)
		if _, stderr, code := a.verify("-tofu", "-archive", altered); code == exitOK || !strings.Contains(stderr, "bad archive") {
			t.Fatalf("altered archive: exit %d, %s", code, stderr)
		}
		other := newAuditedLog(t, driver, key)
		other.grow(0, 120, "officer-z")
		var out, errb bytes.Buffer
		code = run(context.Background(), []string{"audit", "verify", "-log", other.url, "-origin", auditOrigin, "-vkey", a.vkey, "-tofu", "-archive", archive},
			&out, &errb, hsm.NewManager(nil))
		if code == exitOK || !strings.Contains(errb.String(), "does not extend the archive's checkpoint") {
			t.Fatalf("archive of another history: exit %d, %s", code, errb.String())
		}
	})
}

// TestAuditVerifyWithClientCertificate: a log served only to callers with
// a client certificate (rxd's, to the insurer's services) verifies with
// -cert and -key, and is not read without them.
func TestAuditVerifyWithClientCertificate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := newAuditedLog(t, sqlstore.SQLite, noteKeyForTest(t, auditOrigin+"/k1"))
	a.grow(0, 3, "officer-a")

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate, pub any) *x509.Certificate {
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), now.Add(-time.Hour), now.Add(time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	server := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "log"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, serverKey.Public())
	pw := filepath.Join(dir, "client.pass")
	if err := os.WriteFile(pw, []byte("client key pass"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyURI := hsm.SoftKeyURI(filepath.Join(dir, "client.key"), pw)
	m := hsm.NewManager(nil)
	t.Cleanup(func() { m.Close() })
	clientKey, err := m.CreateKey(ctx, keyURI, hsm.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	client := issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "auditor"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		clientKey.Public())
	caFile, certFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "client.pem")
	if err := os.WriteFile(caFile, testpki.PEM(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, testpki.PEM(client), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewUnstartedServer(tlog.Handler(a.store, nil))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{server.Raw}, PrivateKey: serverKey, Leaf: server}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	run := func(extra ...string) (string, string, int) {
		var out, errb bytes.Buffer
		args := append([]string{"audit", "verify", "-log", srv.URL, "-origin", auditOrigin, "-vkey", a.vkey, "-tofu", "-ca-file", caFile}, extra...)
		code := run(ctx, args, &out, &errb, hsm.NewManager(nil))
		return out.String(), errb.String(), code
	}
	if stdout, stderr, code := run(); code == exitOK || strings.Contains(stdout, "audit log verified") {
		t.Fatalf("without a client certificate: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := run("-cert", certFile); code != exitRefused || !strings.Contains(stderr, "-cert and -key go together") {
		t.Fatalf("-cert without -key: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code := run("-cert", certFile, "-key", keyURI, "-entry", "2")
	if code != exitOK || !strings.Contains(stdout, "checkpoint of 3 entries, signature verified") || !strings.Contains(stdout, "entry 2 included") ||
		!strings.Contains(stdout, "audit log verified") {
		t.Fatalf("with a client certificate: exit %d\n%s%s", code, stdout, stderr)
	}
}
