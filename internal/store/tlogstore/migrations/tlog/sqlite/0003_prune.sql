-- Retention: entries archived (tlog.Archive) may have their bytes removed,
-- below a watermark that only grows and never passes the last checkpoint
-- signed. The tree's tiles stay: every checkpoint and proof still
-- verifies. Nothing at or above the watermark can be deleted, and no
-- entry can ever be updated.

CREATE TABLE tlog_prune (
  id     INTEGER PRIMARY KEY CHECK (id = 1),
  below  INTEGER NOT NULL CHECK (below >= 0)
);
INSERT INTO tlog_prune (id, below) VALUES (1, 0);

CREATE TRIGGER tlog_prune_grows BEFORE UPDATE ON tlog_prune
  WHEN NEW.id <> OLD.id OR NEW.below < OLD.below
    OR NEW.below > (SELECT COALESCE(MAX(size), 0) FROM tlog_checkpoints)
  BEGIN SELECT RAISE(ABORT, 'the prune watermark only grows, up to the last checkpoint'); END;
CREATE TRIGGER tlog_prune_no_delete BEFORE DELETE ON tlog_prune
  BEGIN SELECT RAISE(ABORT, 'the prune watermark stays'); END;

DROP TRIGGER tlog_entries_no_delete;
CREATE TRIGGER tlog_entries_pruned_only BEFORE DELETE ON tlog_entries
  WHEN OLD.idx >= (SELECT below FROM tlog_prune WHERE id = 1)
  BEGIN SELECT RAISE(ABORT, 'tlog_entries is append-only above the prune watermark'); END;
