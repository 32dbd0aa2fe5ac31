-- The audit log (internal/tlog): entries appended unsequenced, in the
-- transaction of the action they record, to tlog_pending; the sequencer
-- moves them, in batches and under the write lock, into tlog_entries and
-- the Merkle tree's tiles; every checkpoint signed is kept in
-- tlog_checkpoints. Entries and checkpoints are append-only; a tile only
-- grows, and not at all once full (256 hashes); pending rows are a queue
-- the sequencer empties.

CREATE TABLE tlog_pending (
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  entry  BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 2048)
);

CREATE TABLE tlog_entries (
  idx    INTEGER PRIMARY KEY CHECK (idx >= 0),
  entry  BLOB NOT NULL
);

CREATE TABLE tlog_tiles (
  level   INTEGER NOT NULL CHECK (level BETWEEN 0 AND 7),
  idx     INTEGER NOT NULL CHECK (idx >= 0),
  hashes  BLOB NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
  PRIMARY KEY (level, idx)
);

CREATE TABLE tlog_state (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  size  INTEGER NOT NULL CHECK (size >= 0),
  root  BLOB NOT NULL,
  edge  BLOB NOT NULL
);
-- The empty tree: its root is SHA-256 of nothing.
INSERT INTO tlog_state (id, size, root, edge)
  VALUES (1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', X'');

CREATE TABLE tlog_checkpoints (
  size       INTEGER PRIMARY KEY CHECK (size >= 0),
  root       BLOB NOT NULL,
  note       BLOB NOT NULL,
  signed_at  TIMESTAMP NOT NULL
);

CREATE TRIGGER tlog_entries_no_update BEFORE UPDATE ON tlog_entries
  BEGIN SELECT RAISE(ABORT, 'table tlog_entries is append-only'); END;
CREATE TRIGGER tlog_entries_no_delete BEFORE DELETE ON tlog_entries
  BEGIN SELECT RAISE(ABORT, 'table tlog_entries is append-only'); END;
CREATE TRIGGER tlog_checkpoints_no_update BEFORE UPDATE ON tlog_checkpoints
  BEGIN SELECT RAISE(ABORT, 'table tlog_checkpoints is append-only'); END;
CREATE TRIGGER tlog_checkpoints_no_delete BEFORE DELETE ON tlog_checkpoints
  BEGIN SELECT RAISE(ABORT, 'table tlog_checkpoints is append-only'); END;
CREATE TRIGGER tlog_tiles_no_delete BEFORE DELETE ON tlog_tiles
  BEGIN SELECT RAISE(ABORT, 'table tlog_tiles is append-only'); END;
CREATE TRIGGER tlog_tiles_grow BEFORE UPDATE ON tlog_tiles
  WHEN NEW.level <> OLD.level OR NEW.idx <> OLD.idx
    OR length(OLD.hashes) = 8192
    OR length(NEW.hashes) <= length(OLD.hashes)
    OR substr(NEW.hashes, 1, length(OLD.hashes)) <> OLD.hashes
  BEGIN SELECT RAISE(ABORT, 'a tile may only grow'); END;
CREATE TRIGGER tlog_state_no_delete BEFORE DELETE ON tlog_state
  BEGIN SELECT RAISE(ABORT, 'the log state row stays'); END;
