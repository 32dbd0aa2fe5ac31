-- The audit log (internal/tlog): entries appended unsequenced, in the
-- transaction of the action they record, to tlog_pending; the sequencer
-- moves them, in batches and under the lock of the single tlog_state row,
-- into tlog_entries and the Merkle tree's tiles; every checkpoint signed
-- is kept in tlog_checkpoints. Entries and checkpoints are append-only;
-- a tile only grows, and not at all once full (256 hashes); pending rows
-- are a queue the sequencer empties.

CREATE TABLE tlog_pending (
  id     BIGSERIAL PRIMARY KEY,
  entry  BYTEA NOT NULL CHECK (length(entry) BETWEEN 1 AND 2048)
);

CREATE TABLE tlog_entries (
  idx    BIGINT PRIMARY KEY CHECK (idx >= 0),
  entry  BYTEA NOT NULL
);

CREATE TABLE tlog_tiles (
  level   INTEGER NOT NULL CHECK (level BETWEEN 0 AND 7),
  idx     BIGINT NOT NULL CHECK (idx >= 0),
  hashes  BYTEA NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
  PRIMARY KEY (level, idx)
);

CREATE TABLE tlog_state (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  size  BIGINT NOT NULL CHECK (size >= 0),
  root  BYTEA NOT NULL,
  edge  BYTEA NOT NULL
);
-- The empty tree: its root is SHA-256 of nothing.
INSERT INTO tlog_state (id, size, root, edge)
  VALUES (1, 0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'::bytea, ''::bytea);

CREATE TABLE tlog_checkpoints (
  size       BIGINT PRIMARY KEY CHECK (size >= 0),
  root       BYTEA NOT NULL,
  note       BYTEA NOT NULL,
  signed_at  TIMESTAMPTZ NOT NULL
);

CREATE FUNCTION tlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION tlog_tile_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.level <> OLD.level OR NEW.idx <> OLD.idx
     OR length(OLD.hashes) = 8192
     OR length(NEW.hashes) <= length(OLD.hashes)
     OR substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) <> OLD.hashes THEN
    RAISE EXCEPTION 'tile %/% may only grow', OLD.level, OLD.idx USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER tlog_entries_append_only BEFORE UPDATE OR DELETE ON tlog_entries
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_entries_no_truncate BEFORE TRUNCATE ON tlog_entries
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_checkpoints_append_only BEFORE UPDATE OR DELETE ON tlog_checkpoints
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_checkpoints_no_truncate BEFORE TRUNCATE ON tlog_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_tiles_no_delete BEFORE DELETE ON tlog_tiles
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_tiles_no_truncate BEFORE TRUNCATE ON tlog_tiles
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_tiles_grow BEFORE UPDATE ON tlog_tiles
  FOR EACH ROW EXECUTE FUNCTION tlog_tile_grows();
CREATE TRIGGER tlog_state_no_delete BEFORE DELETE ON tlog_state
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
