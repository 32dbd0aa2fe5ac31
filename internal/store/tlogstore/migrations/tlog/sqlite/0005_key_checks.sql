-- The check value of each key the log's entries depend on, kept where
-- every instance over this database reads it: the pseudonym key's (an
-- HMAC of a fixed text, in a domain no patient's pseudonym is in). An
-- instance whose key gives another value refuses to start: its patients'
-- pseudonyms would not be those in the log. Written once, never changed.

CREATE TABLE tlog_key_checks (
  name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
  value      BLOB NOT NULL CHECK (length(value) = 32),
  created_at TIMESTAMP NOT NULL
);

CREATE TRIGGER tlog_key_checks_no_update BEFORE UPDATE ON tlog_key_checks
  BEGIN SELECT RAISE(ABORT, 'table tlog_key_checks is append-only'); END;
CREATE TRIGGER tlog_key_checks_no_delete BEFORE DELETE ON tlog_key_checks
  BEGIN SELECT RAISE(ABORT, 'table tlog_key_checks is append-only'); END;
