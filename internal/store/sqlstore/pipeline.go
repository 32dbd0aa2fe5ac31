package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Statement is a query, with $n placeholders, and its arguments.
type Statement struct {
	Query string
	Args  []any
}

// ErrNoPipeline is Pipeline's refusal on a database that has none
// (SQLite): the caller writes statement by statement instead.
var ErrNoPipeline = errors.New("sqlstore: pipelining needs PostgreSQL")

// Pipeline runs stmts on PostgreSQL as one transaction in one round trip,
// and reports whether they were committed. PostgreSQL runs the statements
// sent before one Sync message in one implicit transaction: they commit
// together, as durably as any commit and before Pipeline returns nil, or
// when one fails none of them does. What the statements return is
// discarded.
//
// The same writes through Tx take a round trip each, and BEGIN and COMMIT
// one more each; on this machine every round trip costs both processes
// several system calls, each dear under its virtualisation
// (docs/BENCHMARKS.md, session 11).
func (s *DB) Pipeline(ctx context.Context, stmts ...Statement) error {
	if s.d.name != Postgres {
		return ErrNoPipeline
	}
	start := time.Now()
	err := s.batch(ctx, stmts, func(br pgx.BatchResults) error {
		for range stmts {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.Classify(fmt.Errorf("sqlstore: pipeline: %w", err))
	}
	// The commit is not timed apart from the statements here: the whole
	// round trip is what the caller waited for its durable write.
	if f := s.commits.Load(); f != nil {
		(*f)(time.Since(start))
	}
	return nil
}

// Rows are a query's rows, as Read gives them to a Query's Rows function:
// database/sql's and pgx's alike.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Query is a statement that reads, and what reads its rows.
type Query struct {
	Statement
	Rows func(Rows) error
}

// Read runs queries and gives each one's rows to its Rows function, in
// order. On PostgreSQL they go in one round trip and run in one implicit
// transaction; elsewhere one after the other. Either way each query reads
// a snapshot of its own (READ COMMITTED): a write committed while the read
// runs is seen by the queries after it only. What must agree is read by
// one query.
// A read that costs a round trip of its own costs both processes several
// system calls, dear on this machine (docs/BENCHMARKS.md, session 11).
func (s *DB) Read(ctx context.Context, qs ...Query) error {
	if s.d.name != Postgres {
		for _, q := range qs {
			if err := s.readOne(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	stmts := make([]Statement, len(qs))
	for i, q := range qs {
		stmts[i] = q.Statement
	}
	err := s.batch(ctx, stmts, func(br pgx.BatchResults) error {
		for _, q := range qs {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			err = q.Rows(rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: read: %w", err)
	}
	return nil
}

// batch sends stmts to PostgreSQL together, on one connection of the
// pool, and has results read their results in order. Its error, or else
// the one closing the batch gives — reading on to ReadyForQuery, past the
// implicit transaction's commit — is returned.
func (s *DB) batch(ctx context.Context, stmts []Statement, results func(pgx.BatchResults) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("a %T is not pgx's connection", dc)
		}
		var b pgx.Batch
		for _, st := range stmts {
			b.Queue(st.Query, st.Args...)
		}
		br := c.Conn().SendBatch(ctx, &b)
		if err := results(br); err != nil {
			_ = br.Close()
			return err
		}
		return br.Close()
	})
}

func (s *DB) readOne(ctx context.Context, q Query) error {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q.Query), q.Args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := q.Rows(rows); err != nil {
		return err
	}
	return rows.Err()
}
