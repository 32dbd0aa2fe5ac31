// Package tlogstore keeps the audit log (internal/tlog) in a daemon's own
// database, PostgreSQL or the embedded SQLite, beside the tables of the
// actions it records: so that an action and its entry commit in one
// transaction (AppendTx), and are lost together or not at all.
package tlogstore

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

//go:embed migrations
var migrations embed.FS

var schema = sqlstore.Schema{Name: "tlog", Files: migrations}

// Schemas are the schemas this package owns, with their migrations.
func Schemas() []sqlstore.Schema { return []sqlstore.Schema{schema} }

// Store is the audit log's storage; it implements tlog.Store and
// tlog.AuditSource.
type Store struct {
	db *sqlstore.DB
}

var (
	_ tlog.Store       = (*Store)(nil)
	_ tlog.AuditSource = (*Store)(nil)
)

// New migrates the log's tables into db and returns the store.
func New(ctx context.Context, db *sqlstore.DB) (*Store, error) {
	if err := db.Migrate(ctx, schema); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Attach returns the store over a database whose log's tables exist,
// without migrating anything: what an auditor opens (it writes nothing).
func Attach(db *sqlstore.DB) *Store { return &Store{db: db} }

// DB is the database the log lives in.
func (s *Store) DB() *sqlstore.DB { return s.db }

// rowsPerStatement bounds a multi-row statement's parameters (SQLite
// allows 32766, PostgreSQL 65535).
const rowsPerStatement = 500

// AppendTx appends entries, unsequenced, in the caller's transaction tx
// (which MUST be of this store's database): they commit or roll back with
// whatever else tx does. Each is validated and encoded first; an invalid
// one appends nothing and fails tx's work with tlog.ErrInvalidEntry.
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, entries ...*tlog.Entry) error {
	encoded := make([][]byte, len(entries))
	for i, e := range entries {
		b, err := e.Encode()
		if err != nil {
			return err
		}
		encoded[i] = b
	}
	return s.appendEncoded(ctx, tx, encoded)
}

func (s *Store) appendEncoded(ctx context.Context, tx sqlstore.Execer, encoded [][]byte) error {
	for _, st := range appendStatements(encoded) {
		if _, err := s.db.Exec(ctx, tx, st.Query, st.Args...); err != nil {
			return fmt.Errorf("tlogstore: append: %w", err)
		}
	}
	return nil
}

// AppendStatements are the statements that append entries, unsequenced,
// for a caller to run in its own transaction with its own writes — in a
// sqlstore.Pipeline, say, where AppendTx's transaction is not at hand.
// Each entry is validated and encoded first; an invalid one gives
// tlog.ErrInvalidEntry and no statement.
func (s *Store) AppendStatements(entries ...*tlog.Entry) ([]sqlstore.Statement, error) {
	encoded := make([][]byte, len(entries))
	for i, e := range entries {
		b, err := e.Encode()
		if err != nil {
			return nil, err
		}
		encoded[i] = b
	}
	return appendStatements(encoded), nil
}

func appendStatements(encoded [][]byte) []sqlstore.Statement {
	var out []sqlstore.Statement
	for len(encoded) > 0 {
		n := min(len(encoded), rowsPerStatement)
		var q strings.Builder
		q.WriteString("INSERT INTO tlog_pending (entry) VALUES ")
		args := make([]any, n)
		for i := range n {
			if i > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "($%d)", i+1)
			args[i] = encoded[i]
		}
		out = append(out, sqlstore.Statement{Query: q.String(), Args: args})
		encoded = encoded[n:]
	}
	return out
}

// Append appends entries in a transaction of its own.
func (s *Store) Append(ctx context.Context, entries ...*tlog.Entry) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error { return s.AppendTx(ctx, tx, entries...) })
}

// lockState reads the tree state, locking its row for the transaction
// (SQLite's transactions already hold the write lock: they begin
// IMMEDIATE).
func (s *Store) lockState(ctx context.Context, tx *sql.Tx) (tlog.TreeState, error) {
	q := "SELECT size, root, edge FROM tlog_state WHERE id = 1"
	if s.db.Dialect() == sqlstore.Postgres {
		q += " FOR UPDATE"
	}
	var size int64
	var root, edge []byte
	if err := tx.QueryRowContext(ctx, q).Scan(&size, &root, &edge); err != nil {
		return tlog.TreeState{}, fmt.Errorf("tlogstore: reading the tree state: %w", err)
	}
	if len(edge)%tlog.HashSize != 0 {
		return tlog.TreeState{}, fmt.Errorf("%w: tree state edge of %d bytes", tlog.ErrTree, len(edge))
	}
	st := tlog.TreeState{Size: uint64(size), Root: root}
	for i := 0; i < len(edge); i += tlog.HashSize {
		st.Edge = append(st.Edge, edge[i:i+tlog.HashSize])
	}
	return st, nil
}

// Sequence implements tlog.Store.
func (s *Store) Sequence(ctx context.Context, max int, f func(tlog.TreeState, [][]byte) (*tlog.Batch, error)) (int, error) {
	var n int
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := s.lockState(ctx, tx)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.db.Rebind("SELECT id, entry FROM tlog_pending ORDER BY id LIMIT $1"), max)
		if err != nil {
			return fmt.Errorf("tlogstore: reading pending entries: %w", err)
		}
		var ids []any
		var pending [][]byte
		for rows.Next() {
			var id int64
			var e []byte
			if err := rows.Scan(&id, &e); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
			pending = append(pending, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		b, err := f(st, pending)
		if err != nil || b == nil {
			return err
		}
		if b.First != st.Size || len(b.Entries) != len(pending) || b.State.Size != st.Size+uint64(len(pending)) {
			return errors.New("tlogstore: the batch does not follow the tree state")
		}
		if err := s.writeBatch(ctx, tx, b); err != nil {
			return err
		}
		for len(ids) > 0 {
			k := min(len(ids), rowsPerStatement)
			if _, err := s.db.Exec(ctx, tx, "DELETE FROM tlog_pending WHERE id IN ("+placeholders(1, k)+")", ids[:k]...); err != nil {
				return fmt.Errorf("tlogstore: removing sequenced entries: %w", err)
			}
			ids = ids[k:]
		}
		n = len(pending)
		return nil
	})
	return n, err
}

func (s *Store) writeBatch(ctx context.Context, tx *sql.Tx, b *tlog.Batch) error {
	for i := 0; i < len(b.Entries); i += rowsPerStatement {
		chunk := b.Entries[i:min(i+rowsPerStatement, len(b.Entries))]
		var q strings.Builder
		q.WriteString("INSERT INTO tlog_entries (idx, entry) VALUES ")
		args := make([]any, 0, 2*len(chunk))
		for j, e := range chunk {
			if j > 0 {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "($%d, $%d)", 2*j+1, 2*j+2)
			args = append(args, int64(b.First)+int64(i+j), e)
		}
		if _, err := s.db.Exec(ctx, tx, q.String(), args...); err != nil {
			return fmt.Errorf("tlogstore: writing entries: %w", err)
		}
	}
	if err := s.indexPatients(ctx, tx, b); err != nil {
		return err
	}
	ids := make([]tlog.TileID, len(b.Tiles))
	for i, t := range b.Tiles {
		ids[i] = t.ID
	}
	have, err := s.readTiles(ctx, tx, ids)
	if err != nil {
		return err
	}
	for _, t := range b.Tiles {
		old, exists := have[t.ID]
		if len(old) != t.Offset*tlog.HashSize {
			return fmt.Errorf("%w: tile %d/%d holds %d hashes, the batch appends at %d", tlog.ErrTree, t.ID.Level, t.ID.Index, len(old)/tlog.HashSize, t.Offset)
		}
		hashes := append(append([]byte(nil), old...), t.Hashes...)
		q := "INSERT INTO tlog_tiles (level, idx, hashes) VALUES ($1, $2, $3)"
		if exists {
			q = "UPDATE tlog_tiles SET hashes = $3 WHERE level = $1 AND idx = $2"
		}
		if _, err := s.db.Exec(ctx, tx, q, t.ID.Level, int64(t.ID.Index), hashes); err != nil {
			return fmt.Errorf("tlogstore: writing tile %d/%d: %w", t.ID.Level, t.ID.Index, err)
		}
	}
	var edge []byte
	for _, h := range b.State.Edge {
		edge = append(edge, h...)
	}
	if _, err := s.db.Exec(ctx, tx, "UPDATE tlog_state SET size = $1, root = $2, edge = $3 WHERE id = 1",
		int64(b.State.Size), b.State.Root, edge); err != nil {
		return fmt.Errorf("tlogstore: writing the tree state: %w", err)
	}
	return nil
}

// placeholders is "$from, …" for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

// ReadTiles implements tlog.TileReader.
func (s *Store) ReadTiles(ctx context.Context, ids []tlog.TileID) (map[tlog.TileID][]byte, error) {
	return s.readTiles(ctx, s.db.SQL(), ids)
}

func (s *Store) readTiles(ctx context.Context, q sqlstore.Execer, ids []tlog.TileID) (map[tlog.TileID][]byte, error) {
	out := make(map[tlog.TileID][]byte, len(ids))
	for len(ids) > 0 {
		k := min(len(ids), rowsPerStatement/2)
		var cond strings.Builder
		args := make([]any, 0, 2*k)
		for i, id := range ids[:k] {
			if i > 0 {
				cond.WriteString(" OR ")
			}
			fmt.Fprintf(&cond, "(level = $%d AND idx = $%d)", 2*i+1, 2*i+2)
			args = append(args, id.Level, int64(id.Index))
		}
		rows, err := q.QueryContext(ctx, s.db.Rebind("SELECT level, idx, hashes FROM tlog_tiles WHERE "+cond.String()), args...)
		if err != nil {
			return nil, fmt.Errorf("tlogstore: reading tiles: %w", err)
		}
		for rows.Next() {
			var level int
			var idx int64
			var h []byte
			if err := rows.Scan(&level, &idx, &h); err != nil {
				rows.Close()
				return nil, err
			}
			out[tlog.TileID{Level: level, Index: uint64(idx)}] = h
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		ids = ids[k:]
	}
	return out, nil
}

// txTiles reads tiles in a transaction.
type txTiles struct {
	s  *Store
	tx *sql.Tx
}

func (t txTiles) ReadTiles(ctx context.Context, ids []tlog.TileID) (map[tlog.TileID][]byte, error) {
	return t.s.readTiles(ctx, t.tx, ids)
}

// Publish implements tlog.Store.
func (s *Store) Publish(ctx context.Context, f func(tlog.TreeState, *tlog.SignedCheckpoint, tlog.TileReader) (*tlog.SignedCheckpoint, error)) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		st, err := s.lockState(ctx, tx)
		if err != nil {
			return err
		}
		last, err := s.latest(ctx, tx)
		if err != nil && !errors.Is(err, tlog.ErrNoCheckpoint) {
			return err
		}
		cp, err := f(st, last, txTiles{s, tx})
		if err != nil || cp == nil {
			return err
		}
		if last != nil && cp.Size <= last.Size {
			return fmt.Errorf("tlogstore: checkpoint of size %d after one of %d", cp.Size, last.Size)
		}
		if _, err := s.db.Exec(ctx, tx, "INSERT INTO tlog_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, $4)",
			int64(cp.Size), cp.Root, cp.Note, cp.SignedAt.UTC()); err != nil {
			return fmt.Errorf("tlogstore: storing the checkpoint: %w", err)
		}
		return nil
	})
}

const checkpointColumns = "SELECT size, root, note, signed_at FROM tlog_checkpoints"

func scanCheckpoint(sc interface{ Scan(...any) error }) (*tlog.SignedCheckpoint, error) {
	var size int64
	var c tlog.SignedCheckpoint
	if err := sc.Scan(&size, &c.Root, &c.Note, &c.SignedAt); err != nil {
		return nil, err
	}
	c.Size = uint64(size)
	parsed, err := tlog.ParseCheckpoint(noteBody(c.Note))
	if err != nil {
		return nil, fmt.Errorf("tlogstore: stored checkpoint %d: %w", size, err)
	}
	c.Origin = parsed.Origin
	return &c, nil
}

// noteBody is a signed note's text, before the blank line and signatures.
func noteBody(n []byte) []byte {
	if i := strings.Index(string(n), "\n\n"); i >= 0 {
		return n[:i+1]
	}
	return n
}

func (s *Store) latest(ctx context.Context, q sqlstore.Execer) (*tlog.SignedCheckpoint, error) {
	c, err := scanCheckpoint(q.QueryRowContext(ctx, checkpointColumns+" ORDER BY size DESC LIMIT 1"))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, tlog.ErrNoCheckpoint
	}
	if err != nil {
		return nil, fmt.Errorf("tlogstore: reading the latest checkpoint: %w", err)
	}
	if c.Cosignatures, err = s.cosignatures(ctx, q, c.Size); err != nil {
		return nil, err
	}
	return c, nil
}

// cosignatures are the witnesses' cosignatures stored for the checkpoint
// of size entries, in a fixed order (by witness name).
func (s *Store) cosignatures(ctx context.Context, q sqlstore.Execer, size uint64) ([]tlog.Cosignature, error) {
	rows, err := q.QueryContext(ctx, s.db.Rebind("SELECT witness, key_hash, line FROM tlog_cosignatures WHERE size = $1 ORDER BY witness, key_hash"), int64(size))
	if err != nil {
		return nil, fmt.Errorf("tlogstore: reading cosignatures: %w", err)
	}
	defer rows.Close()
	var out []tlog.Cosignature
	for rows.Next() {
		var c tlog.Cosignature
		var hash int64
		if err := rows.Scan(&c.Witness, &hash, &c.Line); err != nil {
			return nil, fmt.Errorf("tlogstore: reading cosignatures: %w", err)
		}
		// The line is served as it is: it must still say what was stored
		// beside it.
		parsed, err := tlog.ParseCosignatureLine(c.Line)
		if err != nil || parsed.Witness != c.Witness || parsed.KeyHash != uint32(hash) {
			return nil, fmt.Errorf("%w: the cosignature of %s stored for checkpoint %d is not its line", tlog.ErrTree, c.Witness, size)
		}
		c.KeyHash = uint32(hash)
		out = append(out, c)
	}
	return out, rows.Err()
}

// AddCosignature implements tlog.Store.
func (s *Store) AddCosignature(ctx context.Context, size uint64, c tlog.Cosignature, at time.Time) error {
	parsed, err := tlog.ParseCosignatureLine(c.Line)
	if err != nil || parsed.Witness != c.Witness || parsed.KeyHash != c.KeyHash {
		return errors.New("tlogstore: a cosignature's line does not name its witness and key")
	}
	_, err = s.db.Exec(ctx, s.db.SQL(), "INSERT INTO tlog_cosignatures (size, witness, key_hash, line, added_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
		int64(size), c.Witness, int64(c.KeyHash), c.Line, at.UTC())
	if err != nil {
		return fmt.Errorf("tlogstore: storing a cosignature: %w", err)
	}
	return nil
}

// LatestCheckpoint implements tlog.Store.
func (s *Store) LatestCheckpoint(ctx context.Context) (*tlog.SignedCheckpoint, error) {
	return s.latest(ctx, s.db.SQL())
}

// Checkpoints returns every checkpoint signed, oldest first (an auditor
// verifies each and audits against them all).
func (s *Store) Checkpoints(ctx context.Context) ([]*tlog.SignedCheckpoint, error) {
	rows, err := s.db.SQL().QueryContext(ctx, checkpointColumns+" ORDER BY size")
	if err != nil {
		return nil, fmt.Errorf("tlogstore: reading checkpoints: %w", err)
	}
	defer rows.Close()
	var out []*tlog.SignedCheckpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ReadEntries implements tlog.Store.
func (s *Store) ReadEntries(ctx context.Context, first uint64, n int) ([][]byte, error) {
	var out [][]byte
	err := s.scan(ctx, first, n, func(idx uint64, e []byte) error {
		if idx != first+uint64(len(out)) {
			return errStop // a gap: what follows is not these entries
		}
		out = append(out, e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return out, nil
}

var errStop = errors.New("stop")

// ScanEntries implements tlog.AuditSource.
func (s *Store) ScanEntries(ctx context.Context, first uint64, f func(uint64, []byte) error) error {
	return s.scan(ctx, first, -1, f)
}

// scan reads up to limit entries (all, if negative) from index first.
func (s *Store) scan(ctx context.Context, first uint64, limit int, f func(uint64, []byte) error) error {
	q := "SELECT idx, entry FROM tlog_entries WHERE idx >= $1 ORDER BY idx"
	args := []any{int64(first)}
	if limit >= 0 {
		q += " LIMIT $2"
		args = append(args, limit)
	}
	rows, err := s.db.SQL().QueryContext(ctx, s.db.Rebind(q), args...)
	if err != nil {
		return fmt.Errorf("tlogstore: reading entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var e []byte
		if err := rows.Scan(&idx, &e); err != nil {
			return err
		}
		if err := f(uint64(idx), e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Pending is how many entries wait to be sequenced.
func (s *Store) Pending(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.SQL().QueryRowContext(ctx, "SELECT COUNT(*) FROM tlog_pending").Scan(&n)
	return n, err
}

// patientLine starts the last line of an entry that names a patient
// (tlog's encoding: "patient" and 64 lowercase hex digits, then LF).
var patientLine = []byte("\npatient ")

// patientOf is the pseudonym an encoded entry names, if any. The entry
// was validated when it was appended and decoded again by the sequencer,
// so its last line is read without decoding the whole again.
func patientOf(e []byte) (tlog.Pseudonym, bool) {
	i := bytes.LastIndex(e, patientLine)
	if i < 0 {
		return tlog.Pseudonym{}, false
	}
	var p tlog.Pseudonym
	h := bytes.TrimSuffix(e[i+len(patientLine):], []byte("\n"))
	if len(h) != 2*len(p) {
		return tlog.Pseudonym{}, false
	}
	if _, err := hex.Decode(p[:], h); err != nil {
		return tlog.Pseudonym{}, false
	}
	return p, true
}

// indexPatients writes the (pseudonym, index) of each entry of the batch
// that names a patient, with the batch.
func (s *Store) indexPatients(ctx context.Context, tx *sql.Tx, b *tlog.Batch) error {
	var q strings.Builder
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := s.db.Exec(ctx, tx, q.String(), args...)
		q.Reset()
		args = args[:0]
		if err != nil {
			return fmt.Errorf("tlogstore: indexing entries by patient: %w", err)
		}
		return nil
	}
	for i, e := range b.Entries {
		p, ok := patientOf(e)
		if !ok {
			continue
		}
		if len(args) == 0 {
			q.WriteString("INSERT INTO tlog_patients (patient, idx) VALUES ")
		} else {
			q.WriteByte(',')
		}
		fmt.Fprintf(&q, "($%d, $%d)", len(args)+1, len(args)+2)
		args = append(args, p[:], int64(b.First)+int64(i))
		if len(args) >= 2*rowsPerStatement {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// MaxPatientPage is the most entries PatientEntries returns at once.
const MaxPatientPage = 1000

// PatientEntries returns the sequenced entries that name patient p,
// newest first: those with an index below before (all, if before is 0),
// at most limit (1..MaxPatientPage). Entries still pending are not
// among them until the sequencer has taken them (a second, in rxd).
func (s *Store) PatientEntries(ctx context.Context, p tlog.Pseudonym, before uint64, limit int) ([]tlog.Indexed, error) {
	if limit < 1 || limit > MaxPatientPage {
		return nil, fmt.Errorf("tlogstore: a page of %d entries (1 to %d)", limit, MaxPatientPage)
	}
	if p.IsZero() {
		return nil, errors.New("tlogstore: the zero pseudonym names no patient")
	}
	q := "SELECT e.idx, e.entry FROM tlog_patients p JOIN tlog_entries e ON e.idx = p.idx WHERE p.patient = $1"
	args := []any{p[:]}
	if before > 0 {
		q += " AND p.idx < $2"
		args = append(args, int64(before))
	}
	q += fmt.Sprintf(" ORDER BY p.idx DESC LIMIT %d", limit)
	rows, err := s.db.SQL().QueryContext(ctx, s.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("tlogstore: reading a patient's entries: %w", err)
	}
	defer rows.Close()
	var out []tlog.Indexed
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, fmt.Errorf("tlogstore: reading a patient's entries: %w", err)
		}
		e, err := tlog.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("tlogstore: entry %d: %w", idx, err)
		}
		if e.Patient != p {
			return nil, fmt.Errorf("%w: entry %d is indexed under a patient it does not name", tlog.ErrTree, idx)
		}
		out = append(out, tlog.Indexed{Index: uint64(idx), Entry: e})
	}
	return out, rows.Err()
}

// Pruned implements tlog.AuditSource: entries below it were archived and
// their bytes removed.
func (s *Store) Pruned(ctx context.Context) (uint64, error) {
	var n int64
	if err := s.db.SQL().QueryRowContext(ctx, "SELECT below FROM tlog_prune WHERE id = 1").Scan(&n); err != nil {
		return 0, fmt.Errorf("tlogstore: reading the prune watermark: %w", err)
	}
	return uint64(n), nil
}

// ErrNotCovered is returned for an export or a prune past the last
// checkpoint signed: only entries a checkpoint commits to leave.
var ErrNotCovered = errors.New("tlogstore: entries not covered by a checkpoint")

// Export archives the entries from the prune watermark up to before
// (exclusive), with their inclusion proofs in the latest checkpoint. The
// archive is verified before it is returned; nothing is removed (Prune).
func (s *Store) Export(ctx context.Context, before uint64) (*tlog.Archive, error) {
	cp, err := s.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if before > cp.Size {
		return nil, fmt.Errorf("%w: entries below %d asked, the last checkpoint has %d", ErrNotCovered, before, cp.Size)
	}
	from, err := s.Pruned(ctx)
	if err != nil {
		return nil, err
	}
	if before < from {
		return nil, fmt.Errorf("tlogstore: entries below %d were pruned already", from)
	}
	var entries [][]byte
	for next := from; next < before; {
		got, err := s.ReadEntries(ctx, next, int(min(before-next, 4096)))
		if err != nil {
			return nil, err
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("%w: entry %d is missing", tlog.ErrTree, next)
		}
		entries = append(entries, got...)
		next += uint64(len(got))
	}
	return tlog.BuildArchive(ctx, s, cp, from, entries)
}

// ExportBefore is Export of the longest run of entries, from the
// watermark, all made before cutoff, within the latest checkpoint.
func (s *Store) ExportBefore(ctx context.Context, cutoff time.Time) (*tlog.Archive, error) {
	cp, err := s.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	from, err := s.Pruned(ctx)
	if err != nil {
		return nil, err
	}
	end := from
	err = s.ScanEntries(ctx, from, func(idx uint64, b []byte) error {
		e, err := tlog.Decode(b)
		if err != nil {
			return fmt.Errorf("tlogstore: entry %d: %w", idx, err)
		}
		if idx != end || idx >= cp.Size || !e.Time.Before(cutoff) {
			return errStop
		}
		end++
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return s.Export(ctx, end)
}

// Prune removes the bytes of entries below before, which MUST have been
// archived (Export, the archive kept), and raises the watermark to it, in
// one transaction. The database itself refuses to delete an entry at or
// above the watermark, to lower it, or to raise it past the last
// checkpoint.
func (s *Store) Prune(ctx context.Context, before uint64) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.db.Exec(ctx, tx, "UPDATE tlog_prune SET below = $1 WHERE id = 1", int64(before)); err != nil {
			return fmt.Errorf("tlogstore: raising the prune watermark to %d: %w", before, err)
		}
		if _, err := s.db.Exec(ctx, tx, "DELETE FROM tlog_entries WHERE idx < $1", int64(before)); err != nil {
			return fmt.Errorf("tlogstore: pruning: %w", err)
		}
		return nil
	})
}

// ErrKeyChanged is CheckKey's answer to a key whose check value is not
// the one the log recorded.
var ErrKeyChanged = errors.New("tlogstore: the key's check value is not the one this log recorded")

// CheckKey records value as the check value of the key named name, if
// none is recorded yet, and otherwise compares it with the one recorded:
// another is ErrKeyChanged. The first instance over a database records
// it; every later one, and every instance at every start, is held to it.
func (s *Store) CheckKey(ctx context.Context, name string, value []byte, now time.Time) error {
	if _, err := s.db.Exec(ctx, s.db.SQL(), "INSERT INTO tlog_key_checks (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		name, value, now.UTC()); err != nil {
		return fmt.Errorf("tlogstore: recording the check value of key %s: %w", name, err)
	}
	var recorded []byte
	if err := s.db.SQL().QueryRowContext(ctx, s.db.Rebind("SELECT value FROM tlog_key_checks WHERE name = $1"), name).Scan(&recorded); err != nil {
		return fmt.Errorf("tlogstore: reading the check value of key %s: %w", name, err)
	}
	if !bytes.Equal(recorded, value) {
		return fmt.Errorf("%w (key %s)", ErrKeyChanged, name)
	}
	return nil
}
