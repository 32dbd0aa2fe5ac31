-- Witnesses' cosignatures (C2SP tlog-cosignature, cosignature/v1) of the
-- checkpoints in tlog_checkpoints: each the signature line a configured
-- witness returned (tlog-witness add-checkpoint), verified under its key
-- before it is stored. The log serves a checkpoint with the lines stored
-- for it appended. A witness cosigns a checkpoint once as far as the log
-- keeps it (a second answer for the same one is dropped); the rows are
-- only ever appended to.

CREATE TABLE tlog_cosignatures (
  size       INTEGER NOT NULL REFERENCES tlog_checkpoints (size),
  witness    TEXT NOT NULL CHECK (length(witness) BETWEEN 1 AND 255),
  key_hash   INTEGER NOT NULL CHECK (key_hash BETWEEN 0 AND 4294967295),
  line       BLOB NOT NULL CHECK (length(line) BETWEEN 1 AND 4096),
  added_at   TIMESTAMP NOT NULL,
  PRIMARY KEY (size, witness, key_hash)
);

CREATE TRIGGER tlog_cosignatures_no_update BEFORE UPDATE ON tlog_cosignatures
  BEGIN SELECT RAISE(ABORT, 'table tlog_cosignatures is append-only'); END;
CREATE TRIGGER tlog_cosignatures_no_delete BEFORE DELETE ON tlog_cosignatures
  BEGIN SELECT RAISE(ABORT, 'table tlog_cosignatures is append-only'); END;
