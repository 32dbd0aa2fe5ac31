package rxstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nuskha/nuskha/internal/errs"
	"github.com/nuskha/nuskha/internal/exchange"
	"github.com/nuskha/nuskha/internal/store/sqlstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// Group commit. Accepting a prescription is one INSERT of its row and one
// of its lines; what costs is everything around them — a transaction's
// BEGIN and COMMIT, a WAL flush, four round trips — and on two cores that,
// not the disk, is what limits the exchange. So concurrent inserts share a
// transaction: each caller queues its prescription; at most maxLeaders
// callers at a time lead a batch — their own prescription and up to
// maxBatch−1 queued ones, written by multi-row statements and committed
// together (on PostgreSQL sent in one round trip: pipelineBatch) — and a
// leader hands leadership to the first caller
// still queued when it is done, so a queue never waits without a leader
// and callers are served in order.
//
// Each prescription's audit entry is appended in the transaction that
// stores it: a batch's entries in the batch's transaction, in one
// multi-row insert, and a prescription inserted on its own with its own.
//
// What each caller is told is what is durable: every caller of a batch
// learns its outcome only after the batch's COMMIT returns. A batch that
// fails for any reason (a tracking code drawn twice, a CHECK, a lost
// connection) is not retried as a batch: each of its prescriptions is
// inserted again in a transaction of its own, so one document's refusal
// is never another's, and each document is still all or nothing.
const (
	maxBatch   = 64
	maxLeaders = 4
	// maxQueued bounds the prescriptions waiting for a leader (each holds
	// its document, a few KiB): past it, while the database stalls (a
	// failover), a new one is refused as unavailable — to be sent again —
	// rather than held without end.
	maxQueued = 4096
	// batchTimeout bounds a batch, which runs on behalf of many callers
	// and so not under any one caller's context.
	batchTimeout = 30 * time.Second
)

type queued struct {
	e      *tlog.Entry            // its audit entry
	p      *exchange.Prescription // prepared by InsertPrescription
	stored *exchange.Prescription
	err    error
	// wake receives true when the outcome is set, false when this caller
	// is to lead the next batch.
	wake chan bool
}

type groupCommit struct {
	mu      sync.Mutex
	queue   []*queued
	leaders int
}

// groupInsert stores p (prepared) through a batch.
func (s *Exchange) groupInsert(ctx context.Context, e *tlog.Entry, p *exchange.Prescription) (*exchange.Prescription, error) {
	q := &queued{e: e, p: p, wake: make(chan bool, 1)}
	g := &s.group
	g.mu.Lock()
	if g.leaders >= maxLeaders {
		if len(g.queue) >= maxQueued {
			g.mu.Unlock()
			return nil, errs.New(errs.Unavailable, "%d prescriptions already wait for the database to take them; nothing was stored: send the same request again", maxQueued)
		}
		g.queue = append(g.queue, q)
		g.mu.Unlock()
		select {
		case done := <-q.wake:
			if done {
				return q.stored, q.err
			}
		case <-ctx.Done():
			// Gone before a leader took it: never written. Taken
			// already (into a batch, or to lead one): its turn comes.
			g.mu.Lock()
			if i := slices.Index(g.queue, q); i >= 0 {
				g.queue = slices.Delete(g.queue, i, i+1)
				g.mu.Unlock()
				return nil, ctx.Err()
			}
			g.mu.Unlock()
			if done := <-q.wake; done {
				return q.stored, q.err
			}
		}
	} else {
		g.leaders++
		g.mu.Unlock()
	}
	// Leading: this caller's prescription and those queued before it.
	g.mu.Lock()
	n := min(len(g.queue), maxBatch-1)
	batch := append([]*queued{q}, g.queue[:n]...)
	g.queue = g.queue[n:]
	g.mu.Unlock()

	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	s.runBatch(bctx, batch)
	cancel()

	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		g.queue = g.queue[1:]
		next.wake <- false
	} else {
		g.leaders--
	}
	g.mu.Unlock()
	for _, b := range batch {
		if b != q {
			b.wake <- true
		}
	}
	return q.stored, q.err
}

// runBatch sets every batch member's outcome, and reports whether the
// batch was written in one transaction.
func (s *Exchange) runBatch(ctx context.Context, batch []*queued) (together bool) {
	// A second submission of an id already in the batch waits for the
	// batch to commit, and is then a replay or a conflict like any other.
	var first, again []*queued
	seen := make(map[string]bool, len(batch))
	for _, b := range batch {
		if seen[b.p.ID] {
			again = append(again, b)
			continue
		}
		seen[b.p.ID] = true
		first = append(first, b)
	}
	// On PostgreSQL a batch of one goes as a pipeline too: one round trip
	// where insertOne's transaction takes five, each a wake-up of the
	// backend that a busy machine can keep waiting for milliseconds.
	together = (len(first) > 1 || s.pipelines()) && s.insertBatch(ctx, first) == nil
	if !together {
		for _, b := range first {
			b.stored, b.err = s.insertOne(ctx, b.e, b.p, nil)
		}
	}
	for _, b := range again {
		b.stored, b.err = s.insertOne(ctx, b.e, b.p, nil)
	}
	return together
}

// statementLog is an audit log that gives the statements appending its
// entries (tlogstore.Store does), so that a batch can send them with its
// own.
type statementLog interface {
	AppendStatements(entries ...*tlog.Entry) ([]sqlstore.Statement, error)
}

// pipelines reports whether insertBatch sends a batch in one round trip.
func (s *Exchange) pipelines() bool {
	_, ok := s.log.(statementLog)
	return ok && s.Dialect() == sqlstore.Postgres
}

// insertBatch writes the batch in one transaction and sets each outcome,
// or changes nothing and returns an error.
func (s *Exchange) insertBatch(ctx context.Context, batch []*queued) error {
	if s.pipelines() {
		return s.pipelineBatch(ctx, batch, s.log.(statementLog))
	}
	type outcome struct {
		stored *exchange.Prescription
		err    error
	}
	outcomes := make([]outcome, len(batch))
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		ins := insertPrescriptions(batch)
		rows, err := tx.QueryContext(ctx, s.Rebind(ins.Query+" ON CONFLICT (id) DO NOTHING RETURNING id"), ins.Args...)
		if err != nil {
			return err
		}
		inserted := make(map[string]bool, len(batch))
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			inserted[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var lines []*exchange.Prescription
		for i, b := range batch {
			if inserted[b.p.ID] {
				lines = append(lines, b.p)
				continue
			}
			// Stored before (or by a concurrent transaction that
			// committed first: ON CONFLICT waited for it).
			stored, err := s.prescription(ctx, tx, false, true, b.p.AcceptedAt, "p.id = $1", b.p.ID)
			if err != nil {
				return err
			}
			outcomes[i] = outcome{stored, replay("prescription", b.p.ID, stored.JWSSHA256, b.p.JWSSHA256)}
		}
		if err := s.insertLines(ctx, tx, lines...); err != nil {
			return err
		}
		// Every stored member's entry, a replay's too (not a conflict's: a
		// refusal's entry is the caller's to write), in the batch's one
		// transaction, one multi-row insert.
		entries := make([]*tlog.Entry, 0, len(batch))
		for i, b := range batch {
			if outcomes[i].err == nil || errors.Is(outcomes[i].err, exchange.ErrReplay) {
				entries = append(entries, b.e)
			}
		}
		return s.log.AppendTx(ctx, tx, entries...)
	})
	if err != nil {
		return fmt.Errorf("rxstore: a batch of %d prescriptions: %w", len(batch), err)
	}
	for i, b := range batch {
		if outcomes[i].stored == nil && outcomes[i].err == nil {
			out := *b.p
			out.State = effective(&out, out.AcceptedAt)
			outcomes[i].stored = &out
		}
		b.stored, b.err = outcomes[i].stored, outcomes[i].err
	}
	return nil
}

// pipelineBatch is insertBatch on PostgreSQL: the batch's prescriptions,
// their lines and their audit entries sent together, one transaction in
// one round trip (sqlstore.Pipeline) where BEGIN, three writes and COMMIT
// took five. It has no ON CONFLICT, whose outcome a pipeline could not
// act on: a member stored before (a replay, or the same document sent
// twice at once) fails the batch, and runBatch then inserts each member
// on its own, as after any failed batch — rare, and answered alike.
func (s *Exchange) pipelineBatch(ctx context.Context, batch []*queued, log statementLog) error {
	ps := make([]*exchange.Prescription, len(batch))
	entries := make([]*tlog.Entry, len(batch))
	for i, b := range batch {
		ps[i], entries[i] = b.p, b.e
	}
	stmts := append([]sqlstore.Statement{insertPrescriptions(batch)}, lineStatements(ps)...)
	appends, err := log.AppendStatements(entries...)
	if err != nil {
		return err
	}
	if err := s.Pipeline(ctx, append(stmts, appends...)...); err != nil {
		return fmt.Errorf("rxstore: a batch of %d prescriptions: %w", len(batch), err)
	}
	for _, b := range batch {
		out := *b.p
		out.State = effective(&out, out.AcceptedAt)
		b.stored, b.err = &out, nil
	}
	return nil
}

// insertPrescriptions is the statement inserting the batch's rows.
func insertPrescriptions(batch []*queued) sqlstore.Statement {
	var q strings.Builder
	q.WriteString("INSERT INTO prescriptions (id, tracking_code, kind, jws, jws_sha256, patient_national_id, prescriber_council, prescriber_serial, issued_at, accepted_at, expires_at, state, answer) VALUES ")
	args := make([]any, 0, 13*len(batch))
	for i, b := range batch {
		p := b.p
		if i > 0 {
			q.WriteString(", ")
		}
		placeholders(&q, len(args), 13)
		args = append(args, p.ID, p.TrackingCode, string(p.Kind), p.JWS, p.JWSSHA256, p.PatientNationalID, p.PrescriberCouncil, p.PrescriberSerial,
			p.IssuedAt, p.AcceptedAt, p.ExpiresAt, string(p.State), p.Answer)
	}
	return sqlstore.Statement{Query: q.String(), Args: args}
}

// placeholders writes "($from+1, …, $from+n)".
func placeholders(q *strings.Builder, from, n int) {
	q.WriteString("(")
	for k := 1; k <= n; k++ {
		if k > 1 {
			q.WriteString(", ")
		}
		q.WriteString("$" + strconv.Itoa(from+k))
	}
	q.WriteString(")")
}
