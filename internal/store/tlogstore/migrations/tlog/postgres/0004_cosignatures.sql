-- Witnesses' cosignatures (C2SP tlog-cosignature, cosignature/v1) of the
-- checkpoints in tlog_checkpoints: each the signature line a configured
-- witness returned (tlog-witness add-checkpoint), verified under its key
-- before it is stored. The log serves a checkpoint with the lines stored
-- for it appended. A witness cosigns a checkpoint once as far as the log
-- keeps it (a second answer for the same one is dropped); the rows are
-- only ever appended to.

CREATE TABLE tlog_cosignatures (
  size       BIGINT NOT NULL REFERENCES tlog_checkpoints (size),
  witness    TEXT NOT NULL CHECK (length(witness) BETWEEN 1 AND 255),
  key_hash   BIGINT NOT NULL CHECK (key_hash BETWEEN 0 AND 4294967295),
  line       BYTEA NOT NULL CHECK (length(line) BETWEEN 1 AND 4096),
  added_at   TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (size, witness, key_hash)
);

CREATE TRIGGER tlog_cosignatures_append_only BEFORE UPDATE OR DELETE ON tlog_cosignatures
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_cosignatures_no_truncate BEFORE TRUNCATE ON tlog_cosignatures
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
