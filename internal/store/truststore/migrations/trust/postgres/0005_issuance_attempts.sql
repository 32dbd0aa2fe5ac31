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
  not_before    TIMESTAMPTZ NOT NULL,
  not_after     TIMESTAMPTZ NOT NULL,
  claimed_by    TEXT NOT NULL,
  claimed_at    TIMESTAMPTZ NOT NULL,
  CONSTRAINT issuance_attempts_pkey PRIMARY KEY (enrolment_id, attempt)
);
-- A serial belongs to one enrolment.
CREATE UNIQUE INDEX issuance_attempts_serial_uq ON issuance_attempts (serial) WHERE attempt = 1;
CREATE INDEX issuance_attempts_serial ON issuance_attempts (serial);
CREATE TRIGGER issuance_attempts_append_only BEFORE UPDATE OR DELETE ON issuance_attempts
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER issuance_attempts_no_truncate BEFORE TRUNCATE ON issuance_attempts
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

-- How an attempt ended, when it did not end with a recorded certificate:
-- failed (nothing was signed), or signed but not recorded (the certificate
-- is kept here until an approval or a revocation records it).
CREATE TABLE issuance_outcomes (
  enrolment_id  TEXT NOT NULL,
  attempt       INTEGER NOT NULL,
  outcome       TEXT NOT NULL,
  der           BYTEA,
  code          TEXT NOT NULL DEFAULT '',
  recorded_at   TIMESTAMPTZ NOT NULL,
  CONSTRAINT issuance_outcomes_pkey PRIMARY KEY (enrolment_id, attempt),
  FOREIGN KEY (enrolment_id, attempt) REFERENCES issuance_attempts (enrolment_id, attempt)
);
CREATE TRIGGER issuance_outcomes_append_only BEFORE UPDATE OR DELETE ON issuance_outcomes
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER issuance_outcomes_no_truncate BEFORE TRUNCATE ON issuance_outcomes
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();
