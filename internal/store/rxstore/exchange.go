package rxstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/store"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Exchange is the prescription exchange's store (exchange.Store).
type Exchange struct {
	*sqlstore.DB
	log   Appender
	group groupCommit
}

// Appender appends audit entries in a transaction of the database
// (tlogstore.Store): the exchange's writes append their entry with
// themselves.
type Appender interface {
	AppendTx(ctx context.Context, tx *sql.Tx, entries ...*tlog.Entry) error
}

var _ exchange.Store = (*Exchange)(nil)

// exchangeFields names, for PostgreSQL, the unique constraints a caller
// acts on (SQLite names the column itself).
var exchangeFields = map[string]string{
	"prescriptions_tracking_code": "tracking_code",
	"prescriptions_pkey":          "id",
	"dispenses_pkey":              "id",
	"settlements_pkey":            "dispense_id",
	"cancellations_pkey":          "id",
	"cancellations_prescription":  "prescription_id",
	"receipts_claim":              "claim_id",
	"session_documents_pkey":      "id",
}

// NewExchange migrates the exchange's schema on db. log is the audit
// log, in the same database (every write appends its entry to it in its
// own transaction).
func NewExchange(ctx context.Context, db *sqlstore.DB, log Appender) (*Exchange, error) {
	if log == nil {
		return nil, errors.New("rxstore: the exchange's store needs the audit log: every write appends its entry")
	}
	if err := db.Migrate(ctx, exchangeSchema); err != nil {
		return nil, err
	}
	return &Exchange{DB: db.WithConstraintFields(exchangeFields), log: log}, nil
}

// errNoEntry refuses a write without its audit entry.
var errNoEntry = errors.New("rxstore: a write needs its audit entry")

// auditedTx runs f in a transaction and, if f succeeds, appends e to the
// audit log in that same transaction: the write and its entry commit
// together, or neither does.
func (s *Exchange) auditedTx(ctx context.Context, e *tlog.Entry, f func(tx *sql.Tx) error) error {
	if e == nil {
		return errNoEntry
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		if err := f(tx); err != nil {
			return err
		}
		return s.log.AppendTx(ctx, tx, e)
	})
}

// utc is how instants are stored: UTC, to the microsecond (PostgreSQL's
// precision), so that what is read back equals what was written.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func fromNull(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

const prescriptionColumns = "p.id, p.tracking_code, p.kind, p.jws, p.jws_sha256, p.patient_national_id, p.prescriber_council, p.prescriber_serial, p.issued_at, p.accepted_at, p.expires_at, p.state, p.answer"
const lineColumns = "l.fill, l.item, l.code, l.kind, l.quantity, l.dispensed, l.valid_from, l.valid_until"

// effective is a stored state as at now: expired is derived.
func effective(p *exchange.Prescription, now time.Time) exchange.State {
	if p.State.Dispensable() && !now.Before(p.ExpiresAt) {
		return exchange.Expired
	}
	return p.State
}

// readPrescriptions reads prescriptions with their lines in one statement
// (so the two are from one snapshot), in the order of the query's ORDER BY
// over the prescription's columns, then fill and item. from names the
// prescriptions as p; where (if any) selects among them.
func (s *Exchange) readPrescriptions(ctx context.Context, q sqlstore.Execer, from, where, order string, now time.Time, args ...any) ([]*exchange.Prescription, error) {
	if where != "" {
		where = " WHERE " + where
	}
	rows, err := q.QueryContext(ctx, s.Rebind("SELECT "+prescriptionColumns+", "+lineColumns+" FROM "+from+
		" JOIN prescription_lines l ON l.prescription_id = p.id"+where+" ORDER BY "+order+"l.fill, l.item"), args...)
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading prescriptions: %w", err)
	}
	defer rows.Close()
	var out []*exchange.Prescription
	for rows.Next() {
		var p exchange.Prescription
		var l exchange.Line
		var kind, state string
		if err := rows.Scan(&p.ID, &p.TrackingCode, &kind, &p.JWS, &p.JWSSHA256, &p.PatientNationalID, &p.PrescriberCouncil, &p.PrescriberSerial,
			&p.IssuedAt, &p.AcceptedAt, &p.ExpiresAt, &state, &p.Answer,
			&l.Fill, &l.Item, &l.Code, &l.Kind, &l.Quantity, &l.Dispensed, &l.From, &l.Until); err != nil {
			return nil, fmt.Errorf("rxstore: reading prescriptions: %w", err)
		}
		l.From, l.Until = l.From.UTC(), l.Until.UTC()
		if n := len(out); n > 0 && out[n-1].ID == p.ID {
			out[n-1].Lines = append(out[n-1].Lines, l)
			continue
		}
		p.Kind, p.State = exchange.Kind(kind), exchange.State(state)
		p.IssuedAt, p.AcceptedAt, p.ExpiresAt = p.IssuedAt.UTC(), p.AcceptedAt.UTC(), p.ExpiresAt.UTC()
		p.State = effective(&p, now)
		p.Lines = []exchange.Line{l}
		out = append(out, &p)
	}
	return out, rows.Err()
}

// prescription reads one prescription with its lines and (withClaim) the
// claim holding it at now; lock takes its row lock (in a transaction) on
// PostgreSQL. SQLite needs none: every transaction here begins IMMEDIATE
// (sqlstore.Open), holding the database's one write lock from its first
// statement.
func (s *Exchange) prescription(ctx context.Context, q sqlstore.Execer, lock, withClaim bool, now time.Time, where string, args ...any) (*exchange.Prescription, error) {
	if lock && s.Dialect() == sqlstore.Postgres {
		// The lock first, in a statement of its own, and the read after
		// it: READ COMMITTED gives each statement a new snapshot, so the
		// read sees what the transaction that held the lock committed.
		// Reading the lines in the locking statement would not: when a
		// FOR UPDATE waits, PostgreSQL re-reads only the locked row
		// (EvalPlanQual), and the joined lines would be the ones from
		// before the wait — the concurrent dispense test caught it, as
		// dispenses counted against stale lines, stopped by the CHECK.
		var id string
		err := q.QueryRowContext(ctx, s.Rebind("SELECT p.id FROM prescriptions p WHERE "+where+" FOR UPDATE"), args...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, exchange.NotFound("prescription")
		}
		if err != nil {
			return nil, fmt.Errorf("rxstore: locking a prescription: %w", err)
		}
	}
	ps, err := s.readPrescriptions(ctx, q, "prescriptions p", where, "", now, args...)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, exchange.NotFound("prescription")
	}
	p := ps[0]
	if !withClaim {
		return p, nil
	}
	claims, err := s.claims(ctx, q, "prescription_id = $1 AND released_at IS NULL AND closed_at IS NULL AND expires_at > $2 ORDER BY created_at DESC", p.ID, utc(now))
	if err != nil {
		return nil, err
	}
	if len(claims) > 0 {
		p.Claim = claims[0]
		p.Claim.SecretSHA256 = nil
	}
	return p, nil
}

const claimColumns = "id, prescription_id, organisation, cert_serial, secret_sha256, created_at, expires_at, released_at, closed_at"

func (s *Exchange) claims(ctx context.Context, q sqlstore.Execer, where string, args ...any) ([]*exchange.Claim, error) {
	rows, err := q.QueryContext(ctx, s.Rebind("SELECT "+claimColumns+" FROM claims WHERE "+where), args...)
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading claims: %w", err)
	}
	defer rows.Close()
	var out []*exchange.Claim
	for rows.Next() {
		var c exchange.Claim
		var released, closed sql.NullTime
		if err := rows.Scan(&c.ID, &c.PrescriptionID, &c.Organisation, &c.CertSerial, &c.SecretSHA256, &c.CreatedAt, &c.ExpiresAt, &released, &closed); err != nil {
			return nil, fmt.Errorf("rxstore: reading claims: %w", err)
		}
		c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
		c.ReleasedAt, c.ClosedAt = fromNull(released), fromNull(closed)
		out = append(out, &c)
	}
	return out, rows.Err()
}

// PrescriptionByCode implements exchange.Store.
func (s *Exchange) PrescriptionByCode(ctx context.Context, code, nationalID string, now time.Time) (*exchange.Prescription, error) {
	return s.prescription(ctx, s.SQL(), false, true, now, "p.tracking_code = $1 AND p.patient_national_id = $2", code, nationalID)
}

// PrescriptionByID implements exchange.Store.
func (s *Exchange) PrescriptionByID(ctx context.Context, id string, now time.Time) (*exchange.Prescription, error) {
	return s.prescription(ctx, s.SQL(), false, true, now, "p.id = $1", id)
}

// replayed is what a write's transaction returns when it finds its
// document stored: nil for a replay (the transaction commits, with the
// replay's audit entry), the conflict itself otherwise (it rolls back:
// a refusal's entry is the caller's to write).
func replayed(err error) error {
	if errors.Is(err, exchange.ErrReplay) {
		return nil
	}
	return err
}

// replay is the answer to a document whose id is stored: a replay if the
// signing input is the same, else a conflict.
func replay(kind, id, stored, given string) error {
	if stored == given {
		return exchange.ErrReplay
	}
	return exchange.Conflict(kind, id)
}

func checkPrescription(p *exchange.Prescription) error {
	if p.ID == "" || p.TrackingCode == "" || p.JWS == "" || p.JWSSHA256 == "" || p.PatientNationalID == "" || len(p.Lines) == 0 ||
		(p.Kind != exchange.Electronic && p.Kind != exchange.Paper) || p.Answer == nil {
		return errors.New("rxstore: a prescription needs an id, a tracking code, its kind, JWS, hash, patient, answer and lines")
	}
	for _, l := range p.Lines {
		if l.Quantity <= 0 || l.Dispensed != 0 || !l.Until.After(l.From) {
			return fmt.Errorf("rxstore: line %d/%d: quantity %d, dispensed %d, window %s–%s", l.Fill, l.Item, l.Quantity, l.Dispensed, l.From, l.Until)
		}
	}
	return nil
}

// InsertPrescription implements exchange.Store. A prescription alone
// shares a transaction with concurrent ones (groupcommit.go); a paper
// prescription and its dispense have one of their own.
func (s *Exchange) InsertPrescription(ctx context.Context, e *tlog.Entry, p *exchange.Prescription, d *exchange.Dispense) (*exchange.Prescription, error) {
	if e == nil {
		return nil, errNoEntry
	}
	if err := checkPrescription(p); err != nil {
		return nil, err
	}
	if d != nil && (p.Kind != exchange.Paper || d.ClaimID != "" || d.PrescriptionID != p.ID) {
		return nil, errors.New("rxstore: only a paper prescription is dispensed as it is stored, by a dispense naming it and no claim")
	}
	if d == nil {
		return s.groupInsert(ctx, e, prepared(p))
	}
	return s.insertOne(ctx, e, prepared(p), d)
}

// prepared is p as it is stored: times in UTC to the microsecond, its
// expiry that of its last line, active and unclaimed.
func prepared(p *exchange.Prescription) *exchange.Prescription {
	out := *p
	out.Lines = slices.Clone(p.Lines)
	for i := range out.Lines {
		out.Lines[i].From, out.Lines[i].Until = utc(out.Lines[i].From), utc(out.Lines[i].Until)
	}
	out.IssuedAt, out.AcceptedAt = utc(p.IssuedAt), utc(p.AcceptedAt)
	out.ExpiresAt = exchange.LastUntil(out.Lines)
	out.State, out.Claim = exchange.Active, nil
	return &out
}

// insertOne stores out (prepared by InsertPrescription), and d with it,
// in a transaction of its own.
func (s *Exchange) insertOne(ctx context.Context, e *tlog.Entry, p *exchange.Prescription, d *exchange.Dispense) (*exchange.Prescription, error) {
	out := *p
	out.Lines = slices.Clone(p.Lines)
	var stored *exchange.Prescription
	var storedErr error
	err := s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		if d != nil && d.Seen != nil {
			if err := s.lockPatient(ctx, tx, out.PatientNationalID); err != nil {
				return err
			}
		}
		res, err := s.Exec(ctx, tx, "INSERT INTO prescriptions (id, tracking_code, kind, jws, jws_sha256, patient_national_id, prescriber_council, prescriber_serial, issued_at, accepted_at, expires_at, state, answer)"+
			" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
			out.ID, out.TrackingCode, string(out.Kind), out.JWS, out.JWSSHA256, out.PatientNationalID, out.PrescriberCouncil, out.PrescriberSerial,
			out.IssuedAt, out.AcceptedAt, out.ExpiresAt, string(out.State), out.Answer)
		if f, dup := store.IsDuplicate(err); dup && f == "tracking_code" {
			return exchange.ErrTrackingCodeTaken
		}
		if err != nil {
			return fmt.Errorf("rxstore: storing a prescription: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			// Stored before (or by a concurrent call that committed
			// first: ON CONFLICT waited for it).
			if stored, err = s.prescription(ctx, tx, false, true, out.AcceptedAt, "p.id = $1", out.ID); err != nil {
				return err
			}
			storedErr = replay("prescription", out.ID, stored.JWSSHA256, out.JWSSHA256)
			return replayed(storedErr)
		}
		if err := s.insertLines(ctx, tx, &out); err != nil {
			return err
		}
		if d != nil {
			return s.dispense(ctx, tx, &out, d, nil)
		}
		return nil
	})
	if stored != nil && err == storedErr {
		return stored, err // a conflict
	}
	if errors.Is(err, exchange.ErrTrackingCodeTaken) {
		if stored, found, err := s.storedMeanwhile(ctx, e, &out); found {
			return stored, err
		}
	}
	if err != nil {
		return nil, err
	}
	if stored != nil {
		return stored, storedErr
	}
	out.State = effective(&out, out.AcceptedAt)
	return &out, nil
}

// storedMeanwhile answers an insert refused for its tracking code, which
// may be taken by this very prescription stored by a concurrent call:
// PostgreSQL can report the tracking code's unique index rather than ON
// CONFLICT (id) when both collide with a row not yet committed. found is
// whether the prescription's id is stored. If it is, with the same
// signing input, this is a replay after all, whose entry went with the
// rolled-back insert and is appended on its own, as a replay's is; with
// another signing input it is a conflict, refused like one, with no entry
// of the store's (the caller writes the refusal's).
func (s *Exchange) storedMeanwhile(ctx context.Context, e *tlog.Entry, p *exchange.Prescription) (*exchange.Prescription, bool, error) {
	stored, err := s.PrescriptionByID(ctx, p.ID, p.AcceptedAt)
	if err != nil {
		return nil, false, nil
	}
	if err := replay("prescription", p.ID, stored.JWSSHA256, p.JWSSHA256); !errors.Is(err, exchange.ErrReplay) {
		return stored, true, err
	}
	if err := s.auditedTx(ctx, e, func(*sql.Tx) error { return nil }); err != nil {
		return nil, true, err
	}
	return stored, true, exchange.ErrReplay
}

// maxParams bounds one statement's parameters: SQLite allows 32,766,
// PostgreSQL 65,535.
const maxParams = 30000

// insertLines stores the lines of ps, in as few statements as the
// parameter limit allows.
func (s *Exchange) insertLines(ctx context.Context, tx *sql.Tx, ps ...*exchange.Prescription) error {
	for _, st := range lineStatements(ps) {
		if _, err := s.Exec(ctx, tx, st.Query, st.Args...); err != nil {
			return fmt.Errorf("rxstore: storing prescriptions' lines: %w", err)
		}
	}
	return nil
}

// lineStatements are the statements inserting the lines of ps.
func lineStatements(ps []*exchange.Prescription) []sqlstore.Statement {
	const head = "INSERT INTO prescription_lines (prescription_id, fill, item, code, kind, quantity, dispensed, valid_from, valid_until) VALUES "
	var out []sqlstore.Statement
	var q strings.Builder
	var args []any
	flush := func() {
		if len(args) > 0 {
			out = append(out, sqlstore.Statement{Query: q.String(), Args: args})
			q.Reset()
			args = nil
		}
	}
	for _, p := range ps {
		for _, l := range p.Lines {
			if len(args)+9 > maxParams {
				flush()
			}
			if len(args) == 0 {
				q.WriteString(head)
			} else {
				q.WriteString(", ")
			}
			placeholders(&q, len(args), 9)
			args = append(args, p.ID, l.Fill, l.Item, l.Code, l.Kind, l.Quantity, 0, l.From, l.Until)
		}
	}
	flush()
	return out
}

// dispense checks d against p (read under its lock, judged at d.At), sets
// each line's fill, and records it: the dispense and its lines, the
// prescription's lines and state (in p too), and the answer.
func (s *Exchange) dispense(ctx context.Context, tx *sql.Tx, p *exchange.Prescription, d *exchange.Dispense, answer func(*exchange.Prescription, *exchange.Dispense) ([]byte, error)) error {
	if d.ID == "" || d.JWS == "" || d.JWSSHA256 == "" || len(d.Lines) == 0 {
		return errors.New("rxstore: a dispense needs an id, its JWS and hash, and lines")
	}
	if st := effective(p, d.At); !st.Dispensable() {
		return &exchange.NotDispensableError{State: st, Item: -1}
	}
	if d.Seen != nil {
		// Under the patient's lock (lockPatient, taken by the caller):
		// no other dispense of the patient is recorded meanwhile.
		n, err := s.countPatientDispenses(ctx, tx, p.PatientNationalID)
		if err != nil {
			return err
		}
		if n != *d.Seen {
			return exchange.ErrJudgedStale
		}
	}
	seen := map[int]bool{}
	chosen := make([]int, len(d.Lines)) // index into p.Lines
	for i, dl := range d.Lines {
		if dl.Quantity <= 0 || seen[dl.Item] {
			return errs.FieldError(errs.Invalid, fmt.Sprintf("items[%d]", i), "each item once, with a positive quantity")
		}
		seen[dl.Item] = true
		if !slices.ContainsFunc(p.Lines, func(l exchange.Line) bool { return l.Item == dl.Item }) {
			return errs.FieldError(errs.Invalid, fmt.Sprintf("items[%d]", i), "the prescription has no item %d", dl.Item)
		}
		at := exchange.Counted(p.Lines, dl.Item, d.At)
		if at < 0 {
			return &exchange.NotDispensableError{State: p.State, Item: dl.Item}
		}
		if l := p.Lines[at]; dl.Quantity > l.Remaining() {
			return &exchange.OverDispenseError{Item: dl.Item, Fill: l.Fill, Asked: dl.Quantity, Remaining: l.Remaining()}
		}
		chosen[i] = at
	}
	all := true
	for i := range d.Lines {
		l := &p.Lines[chosen[i]]
		d.Lines[i].Fill = l.Fill
		l.Dispensed += d.Lines[i].Quantity
		if _, err := s.Exec(ctx, tx, "UPDATE prescription_lines SET dispensed = dispensed + $1 WHERE prescription_id = $2 AND fill = $3 AND item = $4",
			d.Lines[i].Quantity, p.ID, l.Fill, l.Item); err != nil {
			return fmt.Errorf("rxstore: counting a dispense: %w", err)
		}
	}
	for _, l := range p.Lines {
		all = all && l.Remaining() == 0
	}
	state := exchange.PartlyDispensed
	if all {
		state = exchange.Dispensed
	}
	if state != p.State {
		p.State = state
		if _, err := s.Exec(ctx, tx, "UPDATE prescriptions SET state = $1 WHERE id = $2", string(p.State), p.ID); err != nil {
			return fmt.Errorf("rxstore: counting a dispense: %w", err)
		}
	}
	if answer != nil {
		a, err := answer(p, d)
		if err != nil {
			return err
		}
		d.Answer = a
	}
	if d.Answer == nil {
		d.Answer = []byte{}
	}
	d.At = utc(d.At)
	if _, err := s.Exec(ctx, tx, "INSERT INTO dispenses (id, prescription_id, claim_id, jws, jws_sha256, at, answer) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		d.ID, p.ID, sqlstore.Nullable(d.ClaimID), d.JWS, d.JWSSHA256, d.At, d.Answer); err != nil {
		if _, dup := store.IsDuplicate(err); dup {
			// Stored against another prescription (one of this
			// prescription's would have been found under its lock).
			return exchange.Conflict("dispense", d.ID)
		}
		return fmt.Errorf("rxstore: storing a dispense: %w", err)
	}
	q := "INSERT INTO dispense_lines (dispense_id, item, fill, quantity) VALUES "
	args := []any{d.ID}
	for i, dl := range d.Lines {
		if i > 0 {
			q += ", "
		}
		n := len(args)
		q += fmt.Sprintf("($1, $%d, $%d, $%d)", n+1, n+2, n+3)
		args = append(args, dl.Item, dl.Fill, dl.Quantity)
	}
	if _, err := s.Exec(ctx, tx, q, args...); err != nil {
		return fmt.Errorf("rxstore: storing a dispense: %w", err)
	}
	return nil
}

const dispenseColumns = "d.id, d.prescription_id, d.claim_id, d.jws, d.jws_sha256, d.at, d.answer, st.answer, dl.item, dl.fill, dl.quantity"

// dispenses reads dispenses with their lines, oldest first.
func (s *Exchange) dispenses(ctx context.Context, q sqlstore.Execer, where string, args ...any) ([]*exchange.Dispense, error) {
	rows, err := q.QueryContext(ctx, s.Rebind("SELECT "+dispenseColumns+" FROM dispenses d JOIN dispense_lines dl ON dl.dispense_id = d.id LEFT JOIN settlements st ON st.dispense_id = d.id WHERE "+where+" ORDER BY d.at, d.id, dl.item"), args...)
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading dispenses: %w", err)
	}
	defer rows.Close()
	var out []*exchange.Dispense
	for rows.Next() {
		var d exchange.Dispense
		var claim sql.NullString
		var l exchange.DispensedLine
		if err := rows.Scan(&d.ID, &d.PrescriptionID, &claim, &d.JWS, &d.JWSSHA256, &d.At, &d.Answer, &d.Settled, &l.Item, &l.Fill, &l.Quantity); err != nil {
			return nil, fmt.Errorf("rxstore: reading dispenses: %w", err)
		}
		if n := len(out); n > 0 && out[n-1].ID == d.ID {
			out[n-1].Lines = append(out[n-1].Lines, l)
			continue
		}
		d.ClaimID, d.At = claim.String, d.At.UTC()
		d.Lines = []exchange.DispensedLine{l}
		out = append(out, &d)
	}
	return out, rows.Err()
}

// Settle implements exchange.Store.
func (s *Exchange) Settle(ctx context.Context, e *tlog.Entry, dispenseID string, answer []byte, at time.Time) ([]byte, error) {
	if e == nil {
		return nil, errNoEntry
	}
	if dispenseID == "" || len(answer) == 0 {
		return nil, errors.New("rxstore: a settlement needs a dispense id and its answer")
	}
	var kept []byte
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, s.Rebind("SELECT 1 FROM dispenses WHERE id = $1"), dispenseID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return exchange.NotFound("dispense")
		}
		if err != nil {
			return fmt.Errorf("rxstore: reading a dispense: %w", err)
		}
		res, err := s.Exec(ctx, tx, "INSERT INTO settlements (dispense_id, answer, at) VALUES ($1, $2, $3) ON CONFLICT (dispense_id) DO NOTHING", dispenseID, answer, utc(at))
		if err != nil {
			return fmt.Errorf("rxstore: settling a dispense: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			kept = answer
			return s.log.AppendTx(ctx, tx, e)
		}
		// Settled first by another call (ON CONFLICT waited for it to
		// commit; this statement's snapshot sees it).
		return tx.QueryRowContext(ctx, s.Rebind("SELECT answer FROM settlements WHERE dispense_id = $1"), dispenseID).Scan(&kept)
	})
	if err != nil {
		return nil, err
	}
	return kept, nil
}

// DispenseByID implements exchange.Store.
func (s *Exchange) DispenseByID(ctx context.Context, id string) (*exchange.Dispense, error) {
	ds, err := s.dispenses(ctx, s.SQL(), "d.id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, exchange.NotFound("dispense")
	}
	return ds[0], nil
}

// lockPatient takes, for the rest of tx, the lock every dispense of the
// patient takes (exchange.Dispense.Seen): on PostgreSQL an advisory lock
// on the patient, taken before any row lock; SQLite needs none, every
// transaction here holding the database's one write lock (prescription).
func (s *Exchange) lockPatient(ctx context.Context, tx *sql.Tx, nationalID string) error {
	if s.Dialect() != sqlstore.Postgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "rx-patient:"+nationalID); err != nil {
		return fmt.Errorf("rxstore: locking a patient's dispenses: %w", err)
	}
	return nil
}

// countPatientDispenses counts the dispenses of the patient's
// prescriptions.
func (s *Exchange) countPatientDispenses(ctx context.Context, q sqlstore.Execer, nationalID string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, s.Rebind("SELECT COUNT(*) FROM dispenses d JOIN prescriptions p ON p.id = d.prescription_id WHERE p.patient_national_id = $1"), nationalID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("rxstore: counting a patient's dispenses: %w", err)
	}
	return n, nil
}

// PatientDispenses implements exchange.Store. The count is read first:
// a dispense counted and settled since is not among the unsettled, and it
// is settled — which is what the caller needs of every one counted.
func (s *Exchange) PatientDispenses(ctx context.Context, nationalID string) (int, []*exchange.Dispense, error) {
	n, err := s.countPatientDispenses(ctx, s.SQL(), nationalID)
	if err != nil {
		return 0, nil, err
	}
	unsettled, err := s.dispenses(ctx, s.SQL(), "st.dispense_id IS NULL AND d.prescription_id IN (SELECT id FROM prescriptions WHERE patient_national_id = $1)", nationalID)
	if err != nil {
		return 0, nil, err
	}
	return n, unsettled, nil
}

// ClaimByID implements exchange.Store.
func (s *Exchange) ClaimByID(ctx context.Context, id string) (*exchange.Claim, error) {
	cs, err := s.claims(ctx, s.SQL(), "id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, exchange.NotFound("claim")
	}
	return cs[0], nil
}

// lockedClaim reads a claim and locks its prescription (the lock every
// write about a prescription takes first), reading both under the lock.
func (s *Exchange) lockedClaim(ctx context.Context, tx *sql.Tx, claimID string, secretSHA256 []byte, now time.Time) (*exchange.Claim, *exchange.Prescription, error) {
	cs, err := s.claims(ctx, tx, "id = $1", claimID)
	if err != nil {
		return nil, nil, err
	}
	if len(cs) == 0 {
		return nil, nil, exchange.NotFound("claim")
	}
	p, err := s.prescription(ctx, tx, true, true, now, "p.id = $1", cs[0].PrescriptionID)
	if err != nil {
		return nil, nil, err
	}
	if cs, err = s.claims(ctx, tx, "id = $1", claimID); err != nil {
		return nil, nil, err
	}
	c := cs[0]
	if subtle.ConstantTimeCompare(c.SecretSHA256, secretSHA256) != 1 {
		return nil, nil, exchange.ErrSecretWrong
	}
	return c, p, nil
}

// Claim implements exchange.Store.
func (s *Exchange) Claim(ctx context.Context, e *tlog.Entry, c *exchange.Claim) (*exchange.Claim, error) {
	if c.ID == "" || c.PrescriptionID == "" || c.Organisation == "" || len(c.SecretSHA256) != 32 || !c.ExpiresAt.After(c.CreatedAt) {
		return nil, errors.New("rxstore: a claim needs an id, a prescription, an organisation, a secret hash and an expiry after its creation")
	}
	out := *c
	out.CreatedAt, out.ExpiresAt, out.ReleasedAt, out.ClosedAt = utc(c.CreatedAt), utc(c.ExpiresAt), time.Time{}, time.Time{}
	err := s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		p, err := s.prescription(ctx, tx, true, true, out.CreatedAt, "p.id = $1", out.PrescriptionID)
		if err != nil {
			return err
		}
		// The holder claiming again is recovering its secret, whatever
		// the state: it needs the secret to close a prescription it has
		// fully dispensed, or one that expired while it held it.
		held, lapsed := p.Claim, false
		if held == nil || held.Organisation != out.Organisation {
			// A claim of the organisation's that lapsed with dispenses
			// under it, never closed: claiming again is how its lost
			// secret is recovered, and the visit's receipt needs it.
			cs, err := s.claims(ctx, tx, "prescription_id = $1 AND organisation = $2 AND released_at IS NULL AND closed_at IS NULL AND expires_at <= $3"+
				" AND EXISTS (SELECT 1 FROM dispenses d WHERE d.claim_id = claims.id) ORDER BY expires_at DESC, id", out.PrescriptionID, out.Organisation, out.CreatedAt)
			if err != nil {
				return err
			}
			switch {
			case len(cs) == 0:
			case held == nil:
				held, lapsed = cs[0], true
			default:
				// Another organisation holds the prescription now: the
				// lapsed claim is given back with its secret only, its
				// expiry as it was — enough to close the visit and have
				// its receipt, not to dispense or to take the hold.
				return s.secretBack(ctx, tx, &out, cs[0])
			}
		}
		renewal := held != nil && held.Organisation == out.Organisation
		if st := p.State; !st.Dispensable() && !renewal {
			return &exchange.NotDispensableError{State: st, Item: -1}
		}
		if held != nil && !renewal {
			return &exchange.ClaimedError{Until: held.ExpiresAt}
		}
		// A claim with nothing of its kind left to do (a pharmacy once
		// every drug is dispensed, the lab test still to do) would only
		// keep the centre, and a cancellation, out: a new one is refused,
		// and one given back to recover its secret gets the secret only,
		// its expiry as it was — Close needs the secret, not a hold.
		left := exchange.LeftFor(p.Lines, out.Role(), out.CreatedAt)
		if !renewal && !left {
			return &exchange.NotDispensableError{State: p.State, Item: -1, For: out.Role()}
		}
		if renewal && !left {
			return s.secretBack(ctx, tx, &out, held)
		}
		// Never held past twice its time to live from the start of the
		// organisation's hold (exchange.Store), however it claims again.
		start, end, err := s.holdOf(ctx, tx, out)
		if err != nil {
			return err
		}
		ttl := out.ExpiresAt.Sub(out.CreatedAt)
		if limit := utc(start.Add(2 * ttl)); out.ExpiresAt.After(limit) {
			out.ExpiresAt = limit
		}
		if !out.ExpiresAt.After(out.CreatedAt) {
			return &exchange.ClaimedError{Until: end.Add(ttl), Own: true}
		}
		if renewal {
			// The same organisation again: its claim, with the new
			// secret (a lost secret recovered; the old one stops
			// working). A lapsed claim given back starts when its hold
			// does — now, or where the hold it continues began — so
			// that holdOf bounds it from there, not from when it was
			// first made.
			created := held.CreatedAt
			if lapsed {
				created = utc(start)
			}
			if _, err := s.Exec(ctx, tx, "UPDATE claims SET secret_sha256 = $1, cert_serial = $2, expires_at = $3, created_at = $4 WHERE id = $5",
				out.SecretSHA256, out.CertSerial, out.ExpiresAt, created, held.ID); err != nil {
				return fmt.Errorf("rxstore: renewing a claim: %w", err)
			}
			out.ID, out.CreatedAt = held.ID, created
			return nil
		}
		if _, err := s.Exec(ctx, tx, "INSERT INTO claims (id, prescription_id, organisation, cert_serial, secret_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
			out.ID, out.PrescriptionID, out.Organisation, out.CertSerial, out.SecretSHA256, out.CreatedAt, out.ExpiresAt); err != nil {
			return fmt.Errorf("rxstore: storing a claim: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// secretBack gives claim held back to out's organisation with out's
// secret hash and acting certificate only, its start and expiry as they
// were, and makes out that claim: enough to close it, no hold.
func (s *Exchange) secretBack(ctx context.Context, tx *sql.Tx, out, held *exchange.Claim) error {
	if _, err := s.Exec(ctx, tx, "UPDATE claims SET secret_sha256 = $1, cert_serial = $2 WHERE id = $3",
		out.SecretSHA256, out.CertSerial, held.ID); err != nil {
		return fmt.Errorf("rxstore: giving a claim's secret back: %w", err)
	}
	out.ID, out.CreatedAt, out.ExpiresAt = held.ID, held.CreatedAt, held.ExpiresAt
	return nil
}

// holdOf is when the hold that a claim c continues began, and when its
// last claim ended (or ends): the organisation's claims of the
// prescription back from c, each ending (released or expired) less than
// a time to live before the next began, and none closed — a closed claim
// is a visit done. Releasing and claiming again at once, or letting a
// claim expire and claiming at once, continues the hold: only a time to
// live without a claim lets others (and the prescriber's cancellation) in.
//
// Only claims expiring after c.CreatedAt less three times to live are
// read: a hold reaching further back began two times to live or more
// before c, which is all c needs to know.
func (s *Exchange) holdOf(ctx context.Context, tx *sql.Tx, c exchange.Claim) (start, end time.Time, err error) {
	ttl := c.ExpiresAt.Sub(c.CreatedAt)
	mine, err := s.claims(ctx, tx, "prescription_id = $1 AND organisation = $2 AND expires_at > $3 ORDER BY created_at DESC",
		c.PrescriptionID, c.Organisation, utc(c.CreatedAt.Add(-3*ttl)))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	// Latest ended first, then latest made: the walk stops at the first
	// claim that ended a time to live or more before the hold's start so
	// far, and every claim after it in this order ended no later, so none
	// could continue the hold either. Ordered by when they were made
	// instead, a lapsed claim given back — its created_at set back to
	// where its hold began, before claims of that hold made after it —
	// came after those claims, and the walk stopped at one of them, long
	// ended, though the claim given back had just ended: the hold began
	// again at once, past its bound. Claims made at the same instant (an
	// injected clock that stands still, or a coarse one) are ordered the
	// same way: an organisation holds one claim at a time, so of two the
	// later made is the one that ended later.
	slices.SortStableFunc(mine, func(a, b *exchange.Claim) int {
		if c := claimEnded(b).Compare(claimEnded(a)); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	start = c.CreatedAt
	for _, m := range mine {
		ended := claimEnded(m)
		if !m.ClosedAt.IsZero() || !ended.After(start.Add(-ttl)) {
			break
		}
		if m.CreatedAt.Before(start) {
			start = m.CreatedAt
		}
		if ended.After(end) {
			end = ended
		}
	}
	return start, end, nil
}

// claimEnded is when a claim ended, or ends: its release or close, or
// else its expiry.
func claimEnded(c *exchange.Claim) time.Time {
	ended := c.ExpiresAt
	for _, t := range []time.Time{c.ReleasedAt, c.ClosedAt} {
		if !t.IsZero() && t.Before(ended) {
			ended = t
		}
	}
	return ended
}

// Release implements exchange.Store.
func (s *Exchange) Release(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, now time.Time) error {
	return s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		c, _, err := s.lockedClaim(ctx, tx, claimID, secretSHA256, now)
		if err != nil {
			return err
		}
		if !c.ClosedAt.IsZero() {
			return exchange.ErrClaimEnded
		}
		if !c.ReleasedAt.IsZero() || !now.Before(c.ExpiresAt) {
			return nil
		}
		_, err = s.Exec(ctx, tx, "UPDATE claims SET released_at = $1 WHERE id = $2", utc(now), c.ID)
		return err
	})
}

// Dispense implements exchange.Store.
func (s *Exchange) Dispense(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, d *exchange.Dispense, answer func(*exchange.Prescription, *exchange.Dispense) ([]byte, error)) (*exchange.Dispense, *exchange.Prescription, error) {
	out := *d
	out.ClaimID = claimID
	out.Lines = append([]exchange.DispensedLine(nil), d.Lines...)
	var p *exchange.Prescription
	var stored *exchange.Dispense
	var storedErr error
	err := s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		var err error
		if out.Seen != nil {
			// The patient's lock before the prescription's: every
			// transaction that takes both takes them in this order.
			var nid string
			err := tx.QueryRowContext(ctx, s.Rebind("SELECT patient_national_id FROM prescriptions WHERE id = $1"), out.PrescriptionID).Scan(&nid)
			if errors.Is(err, sql.ErrNoRows) {
				return exchange.NotFound("prescription")
			}
			if err != nil {
				return fmt.Errorf("rxstore: reading a prescription: %w", err)
			}
			if err := s.lockPatient(ctx, tx, nid); err != nil {
				return err
			}
		}
		// The claim is read below by its id: the one holding the
		// prescription is not needed.
		if p, err = s.prescription(ctx, tx, true, false, out.At, "p.id = $1", out.PrescriptionID); err != nil {
			return err
		}
		// The claim and its secret first: a replay is answered to the
		// claim's holder only.
		cs, err := s.claims(ctx, tx, "id = $1", claimID)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			return exchange.NotFound("claim")
		}
		c := cs[0]
		if subtle.ConstantTimeCompare(c.SecretSHA256, secretSHA256) != 1 {
			return exchange.ErrSecretWrong
		}
		ds, err := s.dispenses(ctx, tx, "d.id = $1", out.ID)
		if err != nil {
			return err
		}
		if len(ds) > 0 {
			if ds[0].ClaimID != claimID {
				return errs.New(errs.DocumentIDConflict, "dispense %s was recorded under another claim", out.ID)
			}
			stored, storedErr = ds[0], replay("dispense", out.ID, ds[0].JWSSHA256, out.JWSSHA256)
			return replayed(storedErr)
		}
		if c.PrescriptionID != out.PrescriptionID {
			return errs.New(errs.Invalid, "the dispense is for a prescription the claim does not hold")
		}
		if !c.Holds(out.At) {
			return exchange.ErrClaimEnded
		}
		// The dispense began (out.At) while c held the prescription, but
		// the claim may have lapsed while it was judged, and a new one
		// been made since — the organisation's own, or another's. Only
		// one claim holds a prescription at a time, so any other that
		// held it at some instant after out.At was made after c lapsed:
		// one still holding it, and one ended since too — closed, its
		// visit done and its receipt signed without this dispense, or
		// released. A claim that ended before out.At (a rival's lapsed
		// claim closed late included: it expired before c was made) is
		// not one of them.
		later, err := s.claims(ctx, tx, "prescription_id = $1 AND id <> $2 AND expires_at > $3"+
			" AND (released_at IS NULL OR released_at > $3) AND (closed_at IS NULL OR closed_at > $3)",
			p.ID, c.ID, utc(out.At))
		if err != nil {
			return err
		}
		if len(later) > 0 {
			return exchange.ErrClaimEnded
		}
		return s.dispense(ctx, tx, p, &out, answer)
	})
	if stored != nil && err == storedErr {
		return stored, p, err // a conflict
	}
	if err != nil {
		return nil, nil, err
	}
	if stored != nil {
		return stored, p, storedErr
	}
	return &out, p, nil
}

// Close implements exchange.Store.
func (s *Exchange) Close(ctx context.Context, e *tlog.Entry, claimID string, secretSHA256 []byte, now time.Time, sign func(*exchange.Claim, *exchange.Prescription, []*exchange.Dispense) (*exchange.Receipt, error)) (*exchange.Receipt, error) {
	var r *exchange.Receipt
	err := s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		c, p, err := s.lockedClaim(ctx, tx, claimID, secretSHA256, now)
		if err != nil {
			return err
		}
		if !c.ClosedAt.IsZero() {
			r = &exchange.Receipt{ClaimID: c.ID}
			err := tx.QueryRowContext(ctx, s.Rebind("SELECT id, jws, at FROM receipts WHERE claim_id = $1"), c.ID).Scan(&r.ID, &r.JWS, &r.At)
			r.At = r.At.UTC()
			return err
		}
		if !c.ReleasedAt.IsZero() {
			return exchange.ErrClaimEnded
		}
		ds, err := s.dispenses(ctx, tx, "d.claim_id = $1", c.ID)
		if err != nil {
			return err
		}
		if r, err = sign(c, p, ds); err != nil {
			return err
		}
		if r == nil || r.ID == "" || r.JWS == "" {
			return errors.New("rxstore: a receipt needs an id and its JWS")
		}
		r.ClaimID = c.ID
		if r.At.IsZero() {
			r.At = now
		}
		r.At = utc(r.At)
		if _, err := s.Exec(ctx, tx, "INSERT INTO receipts (id, claim_id, jws, at) VALUES ($1, $2, $3, $4)", r.ID, r.ClaimID, r.JWS, r.At); err != nil {
			return fmt.Errorf("rxstore: storing a receipt: %w", err)
		}
		_, err = s.Exec(ctx, tx, "UPDATE claims SET closed_at = $1 WHERE id = $2", utc(now), c.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

const cancellationColumns = "id, prescription_id, jws, jws_sha256, at, remainder_only"

func (s *Exchange) cancellations(ctx context.Context, q sqlstore.Execer, where string, args ...any) ([]*exchange.Cancellation, error) {
	rows, err := q.QueryContext(ctx, s.Rebind("SELECT "+cancellationColumns+" FROM cancellations WHERE "+where+" ORDER BY at, id"), args...)
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading cancellations: %w", err)
	}
	defer rows.Close()
	var out []*exchange.Cancellation
	for rows.Next() {
		var c exchange.Cancellation
		if err := rows.Scan(&c.ID, &c.PrescriptionID, &c.JWS, &c.JWSSHA256, &c.At, &c.RemainderOnly); err != nil {
			return nil, fmt.Errorf("rxstore: reading cancellations: %w", err)
		}
		c.At = c.At.UTC()
		out = append(out, &c)
	}
	return out, rows.Err()
}

// CancellationByID implements exchange.Store.
func (s *Exchange) CancellationByID(ctx context.Context, id string) (*exchange.Cancellation, error) {
	cs, err := s.cancellations(ctx, s.SQL(), "id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, exchange.NotFound("cancellation")
	}
	return cs[0], nil
}

// Cancel implements exchange.Store.
func (s *Exchange) Cancel(ctx context.Context, e *tlog.Entry, c *exchange.Cancellation) (*exchange.Cancellation, *exchange.Prescription, error) {
	if c.ID == "" || c.PrescriptionID == "" || c.JWS == "" || c.JWSSHA256 == "" {
		return nil, nil, errors.New("rxstore: a cancellation needs an id, a prescription, its JWS and hash")
	}
	out := *c
	out.At = utc(c.At)
	var p *exchange.Prescription
	var stored *exchange.Cancellation
	var storedErr error
	err := s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		var err error
		if p, err = s.prescription(ctx, tx, true, true, out.At, "p.id = $1", out.PrescriptionID); err != nil {
			return err
		}
		cs, err := s.cancellations(ctx, tx, "id = $1", out.ID)
		if err != nil {
			return err
		}
		if len(cs) > 0 {
			stored, storedErr = cs[0], replay("cancellation", out.ID, cs[0].JWSSHA256, out.JWSSHA256)
			return replayed(storedErr)
		}
		if !p.State.Dispensable() {
			return &exchange.NotDispensableError{State: p.State, Item: -1}
		}
		if p.Claim != nil {
			return &exchange.ClaimedError{Until: p.Claim.ExpiresAt}
		}
		p.State = exchange.Cancelled
		for _, l := range p.Lines {
			if l.Dispensed > 0 {
				p.State, out.RemainderOnly = exchange.RemainderCancelled, true
			}
		}
		if _, err := s.Exec(ctx, tx, "INSERT INTO cancellations (id, prescription_id, jws, jws_sha256, at, remainder_only) VALUES ($1, $2, $3, $4, $5, $6)",
			out.ID, out.PrescriptionID, out.JWS, out.JWSSHA256, out.At, out.RemainderOnly); err != nil {
			if _, dup := store.IsDuplicate(err); dup {
				return exchange.Conflict("cancellation", out.ID)
			}
			return fmt.Errorf("rxstore: storing a cancellation: %w", err)
		}
		_, err = s.Exec(ctx, tx, "UPDATE prescriptions SET state = $1 WHERE id = $2", string(p.State), p.ID)
		return err
	})
	if stored != nil && err == storedErr {
		return stored, p, err // a conflict
	}
	if err != nil {
		return nil, nil, err
	}
	if stored != nil {
		return stored, p, storedErr
	}
	return &out, p, nil
}

// History implements exchange.Store.
func (s *Exchange) History(ctx context.Context, nationalID string, after *exchange.Cursor, limit int, now time.Time) ([]exchange.HistoryEntry, *exchange.Cursor, error) {
	if limit < 1 || limit > exchange.MaxHistoryPage {
		return nil, nil, exchange.ErrHistoryLimit
	}
	where, args := "patient_national_id = $1", []any{nationalID}
	if after != nil {
		where += " AND (issued_at < $2 OR (issued_at = $2 AND id < $3))"
		args = append(args, utc(after.IssuedAt), after.ID)
	}
	// One more than the page, to know whether another follows.
	page := "(SELECT * FROM prescriptions WHERE " + where + " ORDER BY issued_at DESC, id DESC LIMIT " + strconv.Itoa(limit+1) + ") p"
	ps, err := s.readPrescriptions(ctx, s.SQL(), page, "", "p.issued_at DESC, p.id DESC, ", now, args...)
	if err != nil {
		return nil, nil, err
	}
	var next *exchange.Cursor
	if len(ps) > limit {
		ps = ps[:limit]
		last := ps[limit-1]
		next = &exchange.Cursor{IssuedAt: last.IssuedAt, ID: last.ID}
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	in := make([]string, len(ps))
	ids := make([]any, len(ps))
	byID := make(map[string]int, len(ps))
	out := make([]exchange.HistoryEntry, len(ps))
	for i, p := range ps {
		in[i], ids[i], byID[p.ID] = "$"+strconv.Itoa(i+1), p.ID, i
		out[i].Prescription = p
	}
	ds, err := s.dispenses(ctx, s.SQL(), "d.prescription_id IN ("+strings.Join(in, ", ")+")", ids...)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range ds {
		out[byID[d.PrescriptionID]].Dispenses = append(out[byID[d.PrescriptionID]].Dispenses, d)
	}
	cs, err := s.cancellations(ctx, s.SQL(), "prescription_id IN ("+strings.Join(in, ", ")+")", ids...)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cs {
		out[byID[c.PrescriptionID]].Cancellations = append(out[byID[c.PrescriptionID]].Cancellations, c)
	}
	return out, next, nil
}

// CreateSession implements exchange.Store.
func (s *Exchange) CreateSession(ctx context.Context, e *tlog.Entry, se *exchange.Session) error {
	if len(se.TokenSHA256) != 32 || se.DocumentID == "" || se.VendorThumbprint == "" || !se.ExpiresAt.After(se.CreatedAt) {
		return errors.New("rxstore: a session needs a token hash, its document id, the vendor thumbprint and an expiry after its creation")
	}
	chain, err := joinDER(se.CardChain)
	if err != nil {
		return err
	}
	return s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		if _, err := s.Exec(ctx, tx, "INSERT INTO session_documents (id, used_at) VALUES ($1, $2)", se.DocumentID, utc(se.CreatedAt)); err != nil {
			if _, dup := store.IsDuplicate(err); dup {
				return exchange.ErrSessionUsed
			}
			return fmt.Errorf("rxstore: storing a session: %w", err)
		}
		a := se.Actor
		if _, err := s.Exec(ctx, tx, "INSERT INTO sessions (token_sha256, document_id, cert_serial, role, organisation, council_number, vendor_thumbprint, card_chain, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
			se.TokenSHA256, se.DocumentID, a.CertSerial, a.Role, a.Organisation, a.CouncilNumber, se.VendorThumbprint, chain, utc(se.CreatedAt), utc(se.ExpiresAt)); err != nil {
			return fmt.Errorf("rxstore: storing a session: %w", err)
		}
		return nil
	})
}

// Session implements exchange.Store.
func (s *Exchange) Session(ctx context.Context, tokenSHA256 []byte, now time.Time) (*exchange.Session, error) {
	var se exchange.Session
	var chain []byte
	a := &se.Actor
	err := s.SQL().QueryRowContext(ctx, s.Rebind("SELECT token_sha256, document_id, cert_serial, role, organisation, council_number, vendor_thumbprint, card_chain, created_at, expires_at FROM sessions WHERE token_sha256 = $1 AND expires_at > $2"),
		tokenSHA256, utc(now)).Scan(&se.TokenSHA256, &se.DocumentID, &a.CertSerial, &a.Role, &a.Organisation, &a.CouncilNumber, &se.VendorThumbprint, &chain, &se.CreatedAt, &se.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, exchange.ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading a session: %w", err)
	}
	if se.CardChain, err = splitDER(chain); err != nil {
		return nil, fmt.Errorf("rxstore: reading a session's card chain: %w", err)
	}
	se.CreatedAt, se.ExpiresAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC()
	return &se, nil
}

// joinDER is how a chain of DER certificates is stored: concatenated, as
// x509.ParseCertificates reads them. Each MUST be one DER value, so that
// splitDER gives them back as they were.
func joinDER(certs [][]byte) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("rxstore: a session needs its card's certificate chain")
	}
	var out []byte
	for i, c := range certs {
		var v asn1.RawValue
		if rest, err := asn1.Unmarshal(c, &v); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("rxstore: certificate %d of a card chain is not one DER value", i)
		}
		out = append(out, c...)
	}
	return out, nil
}

// splitDER splits what joinDER stored (nothing for a session stored before
// chains were kept).
func splitDER(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			return nil, err
		}
		out = append(out, v.FullBytes)
		b = rest
	}
	return out, nil
}

// EndSession implements exchange.Store.
func (s *Exchange) EndSession(ctx context.Context, e *tlog.Entry, tokenSHA256 []byte) error {
	return s.auditedTx(ctx, e, func(tx *sql.Tx) error {
		_, err := s.Exec(ctx, tx, "DELETE FROM sessions WHERE token_sha256 = $1", tokenSHA256)
		return err
	})
}

func (s *Exchange) idempotency(ctx context.Context, q sqlstore.Execer, key, caller string, now time.Time) (*exchange.IdempotencyRecord, error) {
	r := exchange.IdempotencyRecord{Key: key, Caller: caller}
	err := q.QueryRowContext(ctx, s.Rebind("SELECT request_sha256, status, body, created_at, expires_at FROM idempotency_keys WHERE key = $1 AND caller = $2 AND expires_at > $3"),
		key, caller, utc(now)).Scan(&r.RequestSHA256, &r.Status, &r.Body, &r.CreatedAt, &r.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rxstore: reading an idempotency key: %w", err)
	}
	r.CreatedAt, r.ExpiresAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC()
	return &r, nil
}

// Idempotent implements exchange.Store.
func (s *Exchange) Idempotent(ctx context.Context, key, caller string, requestSHA256 []byte, now time.Time) (*exchange.IdempotencyRecord, error) {
	r, err := s.idempotency(ctx, s.SQL(), key, caller, now)
	if err != nil || r == nil {
		return nil, err
	}
	if !bytes.Equal(r.RequestSHA256, requestSHA256) {
		return nil, exchange.ErrKeyReused
	}
	return r, nil
}

// Remember implements exchange.Store.
func (s *Exchange) Remember(ctx context.Context, r *exchange.IdempotencyRecord) (*exchange.IdempotencyRecord, error) {
	if r.Key == "" || r.Caller == "" || len(r.RequestSHA256) == 0 || !r.ExpiresAt.After(r.CreatedAt) {
		return nil, errors.New("rxstore: an idempotency record needs a key, a caller, a request hash and an expiry after its creation")
	}
	out := *r
	out.CreatedAt, out.ExpiresAt = utc(r.CreatedAt), utc(r.ExpiresAt)
	if out.Body == nil {
		out.Body = []byte{}
	}
	var kept *exchange.IdempotencyRecord
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.Exec(ctx, tx, "DELETE FROM idempotency_keys WHERE key = $1 AND caller = $2 AND expires_at <= $3", out.Key, out.Caller, out.CreatedAt); err != nil {
			return err
		}
		res, err := s.Exec(ctx, tx, "INSERT INTO idempotency_keys (key, caller, request_sha256, status, body, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key, caller) DO NOTHING",
			out.Key, out.Caller, out.RequestSHA256, out.Status, out.Body, out.CreatedAt, out.ExpiresAt)
		if err != nil {
			return fmt.Errorf("rxstore: keeping an idempotency key: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			kept = &out
			return err
		}
		// Kept first by another call (that committed first).
		if kept, err = s.idempotency(ctx, tx, out.Key, out.Caller, out.CreatedAt); err != nil {
			return err
		}
		if kept == nil {
			return errors.New("rxstore: an idempotency key neither kept nor found")
		}
		if !bytes.Equal(kept.RequestSHA256, out.RequestSHA256) {
			return exchange.ErrKeyReused
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return kept, nil
}

// Purge implements exchange.Store.
func (s *Exchange) Purge(ctx context.Context, now time.Time) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.Exec(ctx, tx, "DELETE FROM sessions WHERE expires_at <= $1", utc(now)); err != nil {
			return err
		}
		_, err := s.Exec(ctx, tx, "DELETE FROM idempotency_keys WHERE expires_at <= $1", utc(now))
		return err
	})
}
