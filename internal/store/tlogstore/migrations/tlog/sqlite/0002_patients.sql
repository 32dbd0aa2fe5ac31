-- A patient's entries: each sequenced entry that names a patient, by its
-- pseudonym and index, written by the sequencer in the transaction that
-- sequences the entry. It is what a patient's access log reads (newest
-- first, keyset-paged by index) without scanning the log. It is derived
-- from tlog_entries, which alone the tree commits to; like them it is
-- only ever appended to.

CREATE TABLE tlog_patients (
  patient  BLOB NOT NULL CHECK (length(patient) = 32),
  idx      INTEGER NOT NULL CHECK (idx >= 0),
  PRIMARY KEY (patient, idx)
);

CREATE TRIGGER tlog_patients_no_update BEFORE UPDATE ON tlog_patients
  BEGIN SELECT RAISE(ABORT, 'table tlog_patients is append-only'); END;
CREATE TRIGGER tlog_patients_no_delete BEFORE DELETE ON tlog_patients
  BEGIN SELECT RAISE(ABORT, 'table tlog_patients is append-only'); END;
