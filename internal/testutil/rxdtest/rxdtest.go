// Package rxdtest opens rxd's stores, filled with test data, for the tests
// of everything built on them: a generated insured-person registry (see
// insuredtest), the sample catalogue in force from 2026-01-01 (see
// catalogtest) and the starter rules.
package rxdtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/adjudicate"
	"github.com/nuskha/nuskha/internal/catalogue"
	"github.com/nuskha/nuskha/internal/catalogue/catalogtest"
	"github.com/nuskha/nuskha/internal/insured"
	"github.com/nuskha/nuskha/internal/insured/insuredtest"
	"github.com/nuskha/nuskha/internal/rules"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Data is rxd's database with its stores.
type Data struct {
	DB        *sqlstore.DB
	Registry  *rxstore.Insured
	Catalogue *catalogue.Catalogue
	Rules     *rules.Engine
}

// Open makes a fresh database of the driver (SQLite in a temporary
// directory, or a PostgreSQL schema through pgtest) holding the first
// persons of the generated registry and the sample catalogue.
func Open(t testing.TB, driver string, persons int) *Data {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "rxd.db")
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
	}
	return OpenAt(t, driver, dsn, persons)
}

// OpenAt is Open on the database at dsn (a PostgreSQL schema reached
// through a pgtest.Proxy, say).
func OpenAt(t testing.TB, driver, dsn string, persons int) *Data {
	t.Helper()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := rxstore.NewInsured(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	insuredtest.MustImport(t, reg, insured.Full, insuredtest.Rows(persons))
	cs, err := rxstore.NewCatalogue(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return &Data{DB: db, Registry: reg, Catalogue: catalogtest.InForce(t, cs), Rules: rules.NewEngine(rules.Starter())}
}

// Checker is the eligibility checker over the registry, default policy.
func (d *Data) Checker() *insured.Checker {
	return &insured.Checker{Registry: d.Registry, Policy: insured.DefaultPolicy()}
}

// Adjudicator is the real decision function over the data, on now's clock.
func (d *Data) Adjudicator(now func() time.Time) *adjudicate.Adjudicator {
	return &adjudicate.Adjudicator{Eligibility: d.Checker(), Catalogue: d.Catalogue, Rules: d.Rules,
		History: d.Registry, Usage: d.Registry, Now: now}
}

// AuditLog is rxd's audit log in the database (its tables migrated).
func (d *Data) AuditLog(t testing.TB) *tlogstore.Store {
	t.Helper()
	s, err := tlogstore.New(context.Background(), d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Budgets are the callers' daily lookup budgets in the database (their
// table migrated).
func (d *Data) Budgets(t testing.TB) *rxstore.Budgets {
	t.Helper()
	b, err := rxstore.NewBudgets(context.Background(), d.DB)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pseudonyms are patients' pseudonyms under a fixed test key (held in
// memory: the key's custody is internal/hsm's, tested there).
func Pseudonyms() *tlog.Pseudonyms { return tlog.NewPseudonyms(testMAC{}) }

// Pseudonym is the test pseudonym of a national id.
func Pseudonym(t testing.TB, nationalID string) tlog.Pseudonym {
	t.Helper()
	p, err := Pseudonyms().Of(nationalID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type testMAC struct{}

func (testMAC) URI() string { return "test:pseudonym-key" }

func (testMAC) Sum(msg []byte) ([sha256.Size]byte, error) {
	h := hmac.New(sha256.New, []byte("rxdtest pseudonym key, 32 bytes."))
	h.Write(msg)
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// NoteKey is a checkpoint key for tests, sealed and unsealed under an
// AES key held in memory.
func NoteKey(t testing.TB) *tlog.NoteKey {
	t.Helper()
	var k testAEAD
	sealed, _, err := tlog.GenerateNoteKey(k, "rxd.test/k1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := tlog.OpenNoteKey(k, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

type testAEAD struct{}

func (testAEAD) URI() string { return "test:seal-key" }

func (testAEAD) gcm() cipher.AEAD {
	b, _ := aes.NewCipher([]byte("rxdtest sealing key of 32 bytes."))
	g, _ := cipher.NewGCM(b)
	return g
}

func (k testAEAD) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	return k.gcm().Seal(nonce, nonce, plaintext, aad), nil
}

func (k testAEAD) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 12 {
		return nil, errors.New("rxdtest: sealed data too short")
	}
	return k.gcm().Open(nil, sealed[:12], sealed[12:], aad)
}
