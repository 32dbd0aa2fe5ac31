-- Issuance is reserved before the issuing key signs: a row per attempt to
-- sign an enrolment's certificate, committed before the signature. An
-- attempt number is taken once ((enrolment_id, attempt) is the key), so of
-- officers approving one enrolment at the same time only one signs. Every
-- attempt of an enrolment uses the first one's serial: whatever the issuing
-- key signed for an enrolment is found, and revoked, by that serial.
CREATE TABLE issuance_attempts (
  enrolment_id  TEXT NOT NULL REFERENCES enrolments (id),
  attempt       INTEGER NOT NULL,
  serial        TEXT NOT NULL,
  not_before    TIMESTAMP NOT NULL,
  not_after     TIMESTAMP NOT NULL,
  claimed_by    TEXT NOT NULL,
  claimed_at    TIMESTAMP NOT NULL,
  PRIMARY KEY (enrolment_id, attempt)
);
-- A serial belongs to one enrolment.
CREATE UNIQUE INDEX issuance_attempts_serial_uq ON issuance_attempts (serial) WHERE attempt = 1;
CREATE INDEX issuance_attempts_serial ON issuance_attempts (serial);
CREATE TRIGGER issuance_attempts_no_update BEFORE UPDATE ON issuance_attempts
  BEGIN SELECT RAISE(ABORT, 'table issuance_attempts is append-only'); END;
CREATE TRIGGER issuance_attempts_no_delete BEFORE DELETE ON issuance_attempts
  BEGIN SELECT RAISE(ABORT, 'table issuance_attempts is append-only'); END;

-- How an attempt ended, when it did not end with a recorded certificate:
-- failed (nothing was signed), or signed but not recorded (the certificate
-- is kept here until an approval or a revocation records it).
CREATE TABLE issuance_outcomes (
  enrolment_id  TEXT NOT NULL,
  attempt       INTEGER NOT NULL,
  outcome       TEXT NOT NULL,
  der           BLOB,
  code          TEXT NOT NULL DEFAULT '',
  recorded_at   TIMESTAMP NOT NULL,
  PRIMARY KEY (enrolment_id, attempt),
  FOREIGN KEY (enrolment_id, attempt) REFERENCES issuance_attempts (enrolment_id, attempt)
);
CREATE TRIGGER issuance_outcomes_no_update BEFORE UPDATE ON issuance_outcomes
  BEGIN SELECT RAISE(ABORT, 'table issuance_outcomes is append-only'); END;
CREATE TRIGGER issuance_outcomes_no_delete BEFORE DELETE ON issuance_outcomes
  BEGIN SELECT RAISE(ABORT, 'table issuance_outcomes is append-only'); END;
