-- Retention: entries archived (tlog.Archive) may have their bytes removed,
-- below a watermark that only grows and never passes the last checkpoint
-- signed. The tree's tiles stay: every checkpoint and proof still
-- verifies. Nothing at or above the watermark can be deleted, and no
-- entry can ever be updated.

CREATE TABLE tlog_prune (
  id     INTEGER PRIMARY KEY CHECK (id = 1),
  below  BIGINT NOT NULL CHECK (below >= 0)
);
INSERT INTO tlog_prune (id, below) VALUES (1, 0);

CREATE FUNCTION tlog_prune_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id <> OLD.id OR NEW.below < OLD.below
     OR NEW.below > (SELECT COALESCE(MAX(size), 0) FROM tlog_checkpoints) THEN
    RAISE EXCEPTION 'the prune watermark only grows, up to the last checkpoint' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION tlog_entries_prunable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.idx >= (SELECT below FROM tlog_prune WHERE id = 1) THEN
    RAISE EXCEPTION 'entry % is above the prune watermark: tlog_entries is append-only', OLD.idx USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;

CREATE TRIGGER tlog_prune_grows BEFORE UPDATE ON tlog_prune
  FOR EACH ROW EXECUTE FUNCTION tlog_prune_grows();
CREATE TRIGGER tlog_prune_no_delete BEFORE DELETE ON tlog_prune
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_prune_no_truncate BEFORE TRUNCATE ON tlog_prune
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();

DROP TRIGGER tlog_entries_append_only ON tlog_entries;
CREATE TRIGGER tlog_entries_no_update BEFORE UPDATE ON tlog_entries
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_entries_pruned_only BEFORE DELETE ON tlog_entries
  FOR EACH ROW EXECUTE FUNCTION tlog_entries_prunable();
