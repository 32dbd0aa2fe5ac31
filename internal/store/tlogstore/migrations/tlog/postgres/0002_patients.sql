-- A patient's entries: each sequenced entry that names a patient, by its
-- pseudonym and index, written by the sequencer in the transaction that
-- sequences the entry. It is what a patient's access log reads (newest
-- first, keyset-paged by index) without scanning the log. It is derived
-- from tlog_entries, which alone the tree commits to; like them it is
-- only ever appended to.

CREATE TABLE tlog_patients (
  patient  BYTEA NOT NULL CHECK (length(patient) = 32),
  idx      BIGINT NOT NULL CHECK (idx >= 0),
  PRIMARY KEY (patient, idx)
);

CREATE TRIGGER tlog_patients_append_only BEFORE UPDATE OR DELETE ON tlog_patients
  FOR EACH ROW EXECUTE FUNCTION tlog_append_only();
CREATE TRIGGER tlog_patients_no_truncate BEFORE TRUNCATE ON tlog_patients
  FOR EACH STATEMENT EXECUTE FUNCTION tlog_append_only();
