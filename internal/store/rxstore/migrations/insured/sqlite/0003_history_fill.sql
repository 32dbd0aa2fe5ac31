-- Which prescription and fill each dispensed item was counted against, so
-- that the rules judging a later part of the same fill (a partial dispense
-- completed over several visits) leave out the parts already given: they
-- complete one supply. Rows recorded before, and dispenses of no stored
-- prescription, have no prescription id and are always judged against.
ALTER TABLE dispense_history ADD COLUMN prescription_id TEXT NOT NULL DEFAULT '';
ALTER TABLE dispense_history ADD COLUMN fill INTEGER NOT NULL DEFAULT 0 CHECK (fill >= 0);
