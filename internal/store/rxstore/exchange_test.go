package rxstore_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/exchange/exchangetest"
	"github.com/nuskha/nuskha/internal/pki"
	"github.com/nuskha/nuskha/internal/rx"
	"github.com/nuskha/nuskha/internal/store/rxstore"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
)

func openExchange(t testing.TB, driver string) *rxstore.Exchange {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), driver, dsnFor(t, driver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log, err := tlogstore.New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rxstore.NewExchange(context.Background(), db, log)
	if err != nil {
		t.Fatalf("NewExchange(%s): %v", driver, err)
	}
	return s
}

func TestExchangeSQLite(t *testing.T) {
	exchangetest.Run(t, func(t *testing.T) exchange.Store { return openExchange(t, sqlstore.SQLite) })
}

func TestExchangePostgres(t *testing.T) {
	openExchange(t, sqlstore.Postgres) // skips (or fails, if required) without PostgreSQL
	exchangetest.Run(t, func(t *testing.T) exchange.Store { return openExchange(t, sqlstore.Postgres) })
}

// TestExchangeLastGuards: what the database itself refuses, whatever the
// code above it does — more dispensed than prescribed, or less than
// nothing, and any change to a recorded act.
func TestExchangeLastGuards(t *testing.T) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) {
			s := openExchange(t, driver)
			ctx := context.Background()
			p, err := s.InsertPrescription(ctx, exchangetest.Entry(), exchangetest.Prescription(t, rx.Item{Kind: "drug", Code: "A", Quantity: 2}), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, h := exchangetest.Secret()
			c, err := s.Claim(ctx, exchangetest.Entry(), &exchange.Claim{ID: rx.NewID(), PrescriptionID: p.ID, Organisation: exchange.ClaimHolder(pki.RolePharmacy, "PH-1"), CertSerial: "01", SecretSHA256: h, CreatedAt: exchangetest.Now, ExpiresAt: exchangetest.Now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			d := exchangetest.Dispense(p, exchangetest.Now, exchange.DispensedLine{Item: 0, Quantity: 1})
			if _, _, err := s.Dispense(ctx, exchangetest.Entry(), c.ID, h, d, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Settle(ctx, exchangetest.Entry(), d.ID, []byte(`{}`), exchangetest.Now); err != nil {
				t.Fatal(err)
			}
			db := s.SQL()
			for _, q := range []string{
				"UPDATE prescription_lines SET dispensed = quantity + 1",
				"UPDATE prescription_lines SET dispensed = -1",
				"UPDATE dispenses SET jws = 'x'",
				"DELETE FROM dispense_lines",
				"DELETE FROM dispenses",
				"UPDATE settlements SET answer = answer",
				"DELETE FROM settlements",
			} {
				if _, err := db.ExecContext(ctx, q); err == nil {
					t.Errorf("%s: the database allowed it", q)
				}
			}
			r, err := s.PrescriptionByID(ctx, p.ID, exchangetest.Now)
			if err != nil || r.Lines[0].Dispensed != 1 {
				t.Fatalf("after the refused statements: %+v %v", r, err)
			}
		})
	}
}

// TestDocumentsStoredUncompressed: on PostgreSQL the columns that hold
// signed documents and answers never go through pglz, which gives up on
// base64 after paying for the attempt (migration 0004).
func TestDocumentsStoredUncompressed(t *testing.T) {
	s := openExchange(t, sqlstore.Postgres)
	want := map[string][]string{
		"prescriptions": {"jws", "answer"}, "dispenses": {"jws", "answer"}, "receipts": {"jws"},
		"cancellations": {"jws"}, "settlements": {"answer"}, "idempotency_keys": {"body"},
	}
	for table, cols := range want {
		for _, col := range cols {
			var storage string
			err := s.SQL().QueryRowContext(context.Background(),
				"SELECT attstorage FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2", table, col).Scan(&storage)
			if err != nil {
				t.Fatalf("%s.%s: %v", table, col, err)
			}
			if storage != "e" {
				t.Errorf("%s.%s has storage %q, want e (EXTERNAL)", table, col, storage)
			}
		}
	}
}

// TestSignedDocumentsStayInTheRow: on PostgreSQL a prescription's JWS of
// a real size (3.4 KB) is stored in its row, not split into TOAST chunks
// (migration 0005), and still read back whole. An inline value's stored
// size is its length and a 4-byte header; one moved out of line is
// reported without it.
func TestSignedDocumentsStayInTheRow(t *testing.T) {
	s := openExchange(t, sqlstore.Postgres)
	ctx := context.Background()
	p := exchangetest.Prescription(t, rx.Item{Kind: "drug", Code: "A", Quantity: 2})
	random := func(n int) string {
		b := make([]byte, n*3/4)
		_, _ = rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	p.JWS = random(3400)
	p.Answer = []byte(random(4700))
	if _, err := s.InsertPrescription(ctx, exchangetest.Entry(), p, nil); err != nil {
		t.Fatal(err)
	}
	var header int
	var jws string
	if err := s.SQL().QueryRowContext(ctx, "SELECT pg_column_size(jws) - octet_length(jws), jws FROM prescriptions WHERE id = $1", p.ID).Scan(&header, &jws); err != nil {
		t.Fatal(err)
	}
	if header != 4 {
		t.Errorf("the JWS is stored with %d bytes beyond its length, want 4 (in the row)", header)
	}
	if jws != p.JWS {
		t.Error("the JWS read back is not the one stored")
	}
}

// exchangeSchema is rxstore's exchange schema, whose migrations the tests
// below run again.
func exchangeSchema(t *testing.T) sqlstore.Schema {
	t.Helper()
	for _, sc := range rxstore.Schemas() {
		if sc.Name == "exchange" {
			return sc
		}
	}
	t.Fatal("rxstore has no exchange schema")
	return sqlstore.Schema{}
}

// TestStorageMigrationGivesWay: migration 0004 locks the exchange's six
// busiest tables (ACCESS EXCLUSIVE, for a moment each) in one
// transaction, while other rxd instances serve. Behind a transaction
// that reads one of them for long (a report, a vacuum that will not be
// cancelled), it gives up within seconds, failing this instance's start,
// rather than wait holding the tables it has locked — every prescription
// queued behind it. Once the reader is done it applies.
func TestStorageMigrationGivesWay(t *testing.T) {
	ctx := context.Background()
	s := openExchange(t, sqlstore.Postgres)
	db := s.SQL()
	schema := exchangeSchema(t)
	// A database from before 0004 (the storage already changed does not
	// matter for the locks).
	if _, err := db.ExecContext(ctx, "DELETE FROM schema_migrations_exchange WHERE version = 4"); err != nil {
		t.Fatal(err)
	}
	reader, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Rollback()
	if _, err := reader.ExecContext(ctx, "SELECT count(*) FROM settlements"); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = s.Migrate(mctx, schema)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("migrating behind a long reader: %v, want a lock timeout (55P03)", err)
	}
	if err := reader.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx, schema); err != nil {
		t.Fatalf("migrating once the reader is done: %v", err)
	}
}

// TestToastTargetMigrationLocks: migration 0005 changes a storage
// parameter, which takes SHARE UPDATE EXCLUSIVE, not ACCESS EXCLUSIVE: it
// neither waits for readers and writers nor stops them, and gives up
// (55P03) only behind what holds that lock for long, a VACUUM (an
// anti-wraparound one is not cancelled for it) or CREATE INDEX
// CONCURRENTLY, emulated here by LOCK TABLE.
func TestToastTargetMigrationLocks(t *testing.T) {
	ctx := context.Background()
	s := openExchange(t, sqlstore.Postgres)
	db := s.SQL()
	schema := exchangeSchema(t)
	remigrate := func(holder string) error {
		t.Helper()
		if _, err := db.ExecContext(ctx, "DELETE FROM schema_migrations_exchange WHERE version = 5"); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, holder); err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return s.Migrate(mctx, schema)
	}
	if err := remigrate("LOCK TABLE prescriptions IN ROW EXCLUSIVE MODE; SELECT count(*) FROM dispenses"); err != nil {
		t.Fatalf("migrating beside a writer and a reader: %v, want it applied without waiting", err)
	}
	err := remigrate("LOCK TABLE dispenses IN SHARE UPDATE EXCLUSIVE MODE")
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("migrating behind a vacuum's lock: %v, want a lock timeout (55P03)", err)
	}
	if err := s.Migrate(ctx, schema); err != nil {
		t.Fatalf("migrating once the vacuum is done: %v", err)
	}
	var opts string
	if err := db.QueryRowContext(ctx, "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'dispenses'::regclass").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if opts != "toast_tuple_target=8160" {
		t.Fatalf("dispenses' options: %q", opts)
	}
}
