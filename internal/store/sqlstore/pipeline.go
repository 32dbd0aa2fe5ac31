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
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: pipeline: %w", err)
	}
	defer conn.Close()
	start := time.Now()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("a %T is not pgx's connection", dc)
		}
		var b pgx.Batch
		for _, st := range stmts {
			b.Queue(st.Query, st.Args...)
		}
		br := c.Conn().SendBatch(ctx, &b)
		for range stmts {
			if _, err := br.Exec(); err != nil {
				_ = br.Close()
				return err
			}
		}
		// Close reads to the end, ReadyForQuery: past the commit.
		return br.Close()
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
