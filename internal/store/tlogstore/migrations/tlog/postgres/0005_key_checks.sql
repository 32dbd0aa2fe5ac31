-- The check value of each key the log's entries depend on, kept where
-- every instance over this database reads it: the pseudonym key's (an
-- HMAC of a fixed text, in a domain no patient's pseudonym is in). An
-- instance whose key gives another value refuses to start: its patients'
-- pseudonyms would not be those in the log. Written once, never changed.

CREATE TABLE tlog_key_checks (
  name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
  value      BYTEA NOT NULL CHECK (length(value) = 32),
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TRIGGER tlog_key_checks_append_only BEFORE UPDATE OR DELETE ON tlog_key_checks
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_key_checks_no_truncate BEFORE TRUNCATE ON tlog_key_checks
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
