package truststore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nuskha/nuskha/internal/audit"
	"github.com/nuskha/nuskha/internal/enrol"
	"github.com/nuskha/nuskha/internal/revoke"
	"github.com/nuskha/nuskha/internal/store/tlogstore"
	"github.com/nuskha/nuskha/internal/tlog"
)

// trustd's audit trail is written twice, in one transaction: to
// audit_events, each event with its detail (what officers list, and what
// the ARL check reads), and to the tamper-evident log (internal/tlog, in
// this same database), each event as an entry of who, what, which object
// and how it ended. A store method that changes the database takes the
// events that record the change and appends them in its own transaction:
// the change and its record commit together or not at all.

// AuditLog is trustd's tamper-evident log, in this database.
func (t *Store) AuditLog() *tlogstore.Store { return t.log }

// AppendAudit appends an event, in a transaction of its own, and returns
// its sequence number in audit_events.
func (t *Store) AppendAudit(ctx context.Context, e audit.Event) (int64, error) {
	var seq int64
	err := t.Tx(ctx, func(tx *sql.Tx) error {
		seqs, err := t.appendAudit(ctx, tx, []audit.Event{e})
		if err == nil {
			seq = seqs[0]
		}
		return err
	})
	return seq, t.Classify(err)
}

// record appends the events of a change in its transaction tx.
func (t *Store) record(ctx context.Context, tx *sql.Tx, events []audit.Event) error {
	_, err := t.appendAudit(ctx, tx, events)
	return err
}

// appendAudit appends events in tx, to both trails. An event that either
// refuses (no time, a national id, a value the log's entry cannot hold)
// fails tx.
func (t *Store) appendAudit(ctx context.Context, tx *sql.Tx, events []audit.Event) ([]int64, error) {
	if len(events) == 0 {
		return nil, nil
	}
	entries := make([]*tlog.Entry, len(events))
	for i := range events {
		if err := events[i].Check(); err != nil {
			return nil, err
		}
		en, err := EntryOf(events[i])
		if err != nil {
			return nil, err
		}
		entries[i] = en
	}
	seqs := make([]int64, len(events))
	for i, e := range events {
		detail := e.Detail
		if detail == nil {
			detail = map[string]string{}
		}
		d, err := json.Marshal(detail)
		if err != nil {
			return nil, err
		}
		if err := tx.QueryRowContext(ctx, t.Rebind(`INSERT INTO audit_events (at, actor, action, object, outcome, code, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`),
			e.Time.UTC(), e.Actor, e.Action, e.Object, string(e.Outcome), string(e.Code), string(d)).Scan(&seqs[i]); err != nil {
			return nil, err
		}
	}
	if err := t.log.AppendTx(ctx, tx, entries...); err != nil {
		return nil, err
	}
	return seqs, nil
}

// System actors of trustd's events, as the log names them.
const (
	// LogCeremony is the ceremony (trustd init, add-officer, sign-arl).
	LogCeremony = "ceremony"
	// LogSystem is trustd itself (its own credentials, CRLs, a
	// certificate recorded late).
	LogSystem = "trustd"
	// LogAnonymous sums up requests that proved nothing (audit.Tally).
	LogAnonymous = "anonymous"
)

// EntryOf is the tamper-evident log's entry for one of trustd's audit
// events: the actor is an officer (by subject id), a certificate's holder
// (cert:<fingerprint>, a request signed with the certificate's key) or
// trustd itself (system:ceremony, system:trustd, and system:anonymous for
// summaries of requests that proved nothing); action, object, outcome and
// code are the event's. The event's detail stays in audit_events: an entry
// names, it does not describe.
func EntryOf(e audit.Event) (*tlog.Entry, error) {
	en := &tlog.Entry{Time: e.Time, Action: e.Action, Object: e.Object, Outcome: e.Outcome, Code: string(e.Code)}
	switch fp, isCert := strings.CutPrefix(e.Actor, "cert:"); {
	case isCert:
		en.Actor = tlog.Actor{Kind: tlog.ActorCert, ID: fp}
	case e.Actor == enrol.Ceremony:
		en.Actor = tlog.Actor{Kind: tlog.ActorSystem, ID: LogCeremony}
	case e.Actor == enrol.System:
		en.Actor = tlog.Actor{Kind: tlog.ActorSystem, ID: LogSystem}
	case e.Actor == revoke.Holder:
		en.Actor = tlog.Actor{Kind: tlog.ActorSystem, ID: LogAnonymous}
	default:
		en.Actor = tlog.Actor{Kind: tlog.ActorOfficer, ID: e.Actor}
	}
	if err := en.Validate(); err != nil {
		// The object of a refusal may come from a request (an id in a
		// URL): one the entry cannot hold is named by its digest, so that
		// the refusal is recorded rather than the request failing.
		en.Object = "unreadable:" + digest(e.Object)
		if en.Validate() != nil {
			return nil, fmt.Errorf("truststore: audit event %s: %w", e.Action, err)
		}
	}
	return en, nil
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}
