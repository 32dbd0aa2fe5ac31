package tlogstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/testutil/pgtest"
	"github.com/nuskha/nuskha/internal/tlog"
)

var ctx = context.Background()

const origin = "audit.nuskha.example/test"

func openStore(t testing.TB, driver string) *tlogstore.Store {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "tlog.db")
	if driver == sqlstore.Postgres {
		dsn = pgtest.Schema(t)
	}
	db, err := sqlstore.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := tlogstore.New(ctx, db)
	if err != nil {
		t.Fatalf("New(%s): %v", driver, err)
	}
	return s
}

// each runs the suite's test f over both stores: one contract, the
// embedded SQLite and PostgreSQL.
func each(t *testing.T, f func(t *testing.T, s *tlogstore.Store)) {
	for _, driver := range []string{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(driver, func(t *testing.T) { f(t, openStore(t, driver)) })
	}
}

var (
	keyOnce sync.Once
	testKey *tlog.NoteKey
	keyErr  error
)

// noteKey is the suite's checkpoint key, sealed under a software AES key
// the way the embedded default keeps it (made once: PBKDF2 is slow).
func noteKey(t testing.TB) *tlog.NoteKey {
	keyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tlogstore-key-")
		if err != nil {
			keyErr = err
			return
		}
		defer os.RemoveAll(dir)
		pw := filepath.Join(dir, "pass")
		os.WriteFile(pw, []byte("correct horse battery staple"), 0o600)
		m := hsm.NewManager(nil)
		defer m.Close()
		uri := hsm.SoftKeyURI(filepath.Join(dir, "seal.key"), pw)
		if keyErr = m.CreateSecret(ctx, uri, hsm.AES256GCM); keyErr != nil {
			return
		}
		aead, err := m.OpenAEAD(ctx, uri)
		if err != nil {
			keyErr = err
			return
		}
		sealed, _, err := tlog.GenerateNoteKey(aead, origin)
		if err != nil {
			keyErr = err
			return
		}
		testKey, keyErr = tlog.OpenNoteKey(aead, sealed)
	})
	if keyErr != nil {
		t.Fatal(keyErr)
	}
	return testKey
}

func newLog(t testing.TB, s *tlogstore.Store, batch int) *tlog.Log {
	t.Helper()
	l, err := tlog.New(s, tlog.Config{Origin: origin, Key: noteKey(t), BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var t0 = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)

func entry(i int) *tlog.Entry {
	return &tlog.Entry{
		Time:    t0.Add(time.Duration(i) * time.Millisecond),
		Actor:   tlog.Actor{Kind: tlog.ActorOfficer, ID: fmt.Sprintf("officer-%d", i%7)},
		Action:  "view",
		Object:  fmt.Sprintf("rx:%d", i),
		Outcome: audit.OK,
		Patient: tlog.Pseudonym{byte(i), byte(i >> 8), 1},
	}
}

func encoded(t testing.TB, e *tlog.Entry) []byte {
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fill appends entries [from, to) in one transaction.
func fill(t testing.TB, s *tlogstore.Store, from, to int) {
	t.Helper()
	var es []*tlog.Entry
	for i := from; i < to; i++ {
		es = append(es, entry(i))
	}
	if err := s.Append(ctx, es...); err != nil {
		t.Fatal(err)
	}
}

func publish(t testing.TB, l *tlog.Log) *tlog.SignedCheckpoint {
	t.Helper()
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestAppendCommitsWithTheAction: an entry appended in a transaction that
// rolls back was never appended; one in a transaction that commits is
// pending; an invalid one fails the transaction's work.
func TestAppendCommitsWithTheAction(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		if _, err := s.DB().SQL().ExecContext(ctx, "CREATE TABLE actions (id INTEGER PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		act := func(id int, e *tlog.Entry, fail error) error {
			return s.DB().Tx(ctx, func(tx *sql.Tx) error {
				if _, err := s.DB().Exec(ctx, tx, "INSERT INTO actions (id) VALUES ($1)", id); err != nil {
					return err
				}
				if err := s.AppendTx(ctx, tx, e); err != nil {
					return err
				}
				return fail
			})
		}
		boom := errors.New("the action failed after its entry was appended")
		if err := act(1, entry(1), boom); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		bad := entry(2)
		bad.Object = "nid:0499370899"
		if err := act(2, bad, nil); !errors.Is(err, tlog.ErrInvalidEntry) {
			t.Fatalf("invalid entry: got %v", err)
		}
		if n, _ := s.Pending(ctx); n != 0 {
			t.Fatalf("%d entries pending after two failed actions", n)
		}
		var actions int
		s.DB().SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM actions").Scan(&actions)
		if actions != 0 {
			t.Fatalf("%d actions committed without their entries", actions)
		}
		if err := act(3, entry(3), nil); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.Pending(ctx); n != 1 {
			t.Fatalf("%d pending, want 1", n)
		}
	})
}

// TestSequencePublishProve: entries appended in several transactions are
// sequenced in order, in batches; each checkpoint verifies under the
// key, extends the one before, and proves every entry in it.
func TestSequencePublishProve(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 100)
		if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, tlog.ErrNoCheckpoint) {
			t.Fatalf("a new log has a checkpoint: %v", err)
		}
		var cps []*tlog.SignedCheckpoint
		for _, to := range []int{1, 3, 256, 257, 600} {
			from := 0
			if len(cps) > 0 {
				from = int(cps[len(cps)-1].Size)
			}
			fill(t, s, from, to)
			cps = append(cps, publish(t, l))
		}
		for i, cp := range cps {
			got, err := tlog.VerifyCheckpoint(cp.Note, origin, noteKey(t).Verifier())
			if err != nil {
				t.Fatal(err)
			}
			if got.Size != cp.Size || !bytes.Equal(got.Root, cp.Root) {
				t.Fatalf("checkpoint %d says %d/%x, stored as %d/%x", i, got.Size, got.Root, cp.Size, cp.Root)
			}
			if i > 0 {
				p, err := tlog.ConsistencyProof(ctx, s, cps[i-1].Size, cp.Size)
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.VerifyExtends(cps[i-1].Checkpoint, got, p); err != nil {
					t.Fatalf("checkpoint %d does not extend %d: %v", i, i-1, err)
				}
			}
		}
		last := cps[len(cps)-1]
		if last.Size != 600 {
			t.Fatalf("size %d, want 600", last.Size)
		}
		// Publishing again with nothing new signs nothing new.
		if again := publish(t, l); again.Size != last.Size || !bytes.Equal(again.Note, last.Note) {
			t.Fatal("an idle publish signed a new checkpoint")
		}
		all, err := s.Checkpoints(ctx)
		if err != nil || len(all) != len(cps) {
			t.Fatalf("%d checkpoints stored (%v), want %d", len(all), err, len(cps))
		}
		entries, err := s.ReadEntries(ctx, 0, 600)
		if err != nil || len(entries) != 600 {
			t.Fatalf("%d entries, %v", len(entries), err)
		}
		for i, e := range entries {
			if !bytes.Equal(e, encoded(t, entry(i))) {
				t.Fatalf("entry %d is not the %dth appended", i, i)
			}
			if i%37 != 0 && i != 599 {
				continue
			}
			p, err := tlog.InclusionProof(ctx, s, uint64(i), last.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.VerifyEntry(last.Checkpoint, uint64(i), e, p); err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if err := tlog.VerifyEntry(last.Checkpoint, uint64(i), encoded(t, entry(i+1)), p); err == nil {
				t.Fatalf("entry %d's proof proves another entry", i)
			}
		}
		if rep, err := tlog.Audit(ctx, s, checkpoints(all)...); err != nil || rep.Checked != 600 || rep.Beyond != 0 {
			t.Fatalf("audit of an untouched log: %+v, %v", rep, err)
		}
	})
}

func checkpoints(scs []*tlog.SignedCheckpoint) []tlog.Checkpoint {
	var out []tlog.Checkpoint
	for _, c := range scs {
		out = append(out, c.Checkpoint)
	}
	return out
}

// TestTheDatabaseRefusesRewrites: entries and checkpoints cannot be
// changed or removed, and a tile can only grow, whatever the code above
// does.
func TestTheDatabaseRefusesRewrites(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		l := newLog(t, s, 100)
		fill(t, s, 0, 10)
		publish(t, l)
		for _, q := range []string{
			"UPDATE tlog_entries SET entry = entry WHERE idx = 1",
			"DELETE FROM tlog_entries WHERE idx = 9",
			"UPDATE tlog_checkpoints SET note = note",
			"DELETE FROM tlog_checkpoints",
			"DELETE FROM tlog_tiles",
			"UPDATE tlog_tiles SET hashes = substr(hashes, 1, 32) WHERE level = 0 AND idx = 0",
			"UPDATE tlog_tiles SET idx = idx + 5 WHERE level = 0 AND idx = 0",
			"DELETE FROM tlog_state",
		} {
			if s.DB().Dialect() == sqlstore.Postgres {
				q = pgSQL(q)
			}
			if _, err := s.DB().SQL().ExecContext(ctx, q); err == nil {
				t.Errorf("%s: accepted", q)
			}
		}
		if rep, err := tlog.Audit(ctx, s, mustLatest(t, s).Checkpoint); err != nil || rep.Checked != 10 {
			t.Fatalf("after the refused rewrites: %+v, %v", rep, err)
		}
	})
}

// pgSQL spells SQLite's blob functions for PostgreSQL.
func pgSQL(q string) string {
	return string(bytes.ReplaceAll([]byte(q), []byte("substr(hashes, 1, 32)"), []byte("substring(hashes from 1 for 32)")))
}

func mustLatest(t testing.TB, s *tlogstore.Store) *tlog.SignedCheckpoint {
	t.Helper()
	cp, err := s.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// A key's check value is recorded by the first to give one, and every
// later one is held to it: the same value passes, another is
// ErrKeyChanged and changes nothing; the recorded value cannot be updated
// or deleted, even by hand.
func TestCheckKey(t *testing.T) {
	each(t, func(t *testing.T, s *tlogstore.Store) {
		first, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
		for i := range 2 {
			if err := s.CheckKey(ctx, "pseudonym", first, now); err != nil {
				t.Fatalf("check %d with the recorded value: %v", i, err)
			}
		}
		if err := s.CheckKey(ctx, "pseudonym", other, now); !errors.Is(err, tlogstore.ErrKeyChanged) {
			t.Fatalf("another value: %v, want ErrKeyChanged", err)
		}
		if err := s.CheckKey(ctx, "another-key", other, now); err != nil {
			t.Fatalf("another key's own value: %v", err)
		}
		for _, q := range []string{"UPDATE tlog_key_checks SET value = $1", "DELETE FROM tlog_key_checks WHERE value <> $1"} {
			if _, err := s.DB().SQL().ExecContext(ctx, s.DB().Rebind(q), other); err == nil {
				t.Fatalf("%s: allowed", q)
			}
		}
		if err := s.CheckKey(ctx, "pseudonym", first, now); err != nil {
			t.Fatalf("the recorded value after the refused changes: %v", err)
		}
	})
}
