-- The prescription exchange. Rows that record acts (dispenses, their lines,
-- receipts, cancellations) are append-only; a prescription's row is the
-- lock every write about it takes first (SELECT … FOR UPDATE), and its
-- lines carry the last guard on medicine: CHECK 0 <= dispensed <= quantity.
CREATE TABLE prescriptions (
    id                  TEXT      PRIMARY KEY,
    tracking_code       TEXT      NOT NULL CONSTRAINT prescriptions_tracking_code UNIQUE,
    kind                TEXT      NOT NULL CHECK (kind IN ('electronic', 'paper')),
    jws                 TEXT      NOT NULL,
    jws_sha256          TEXT      NOT NULL,
    patient_national_id TEXT      NOT NULL,
    prescriber_council  TEXT      NOT NULL,
    prescriber_serial   TEXT      NOT NULL,
    issued_at           TIMESTAMP NOT NULL,
    accepted_at         TIMESTAMP NOT NULL,
    expires_at          TIMESTAMP NOT NULL,
    -- expired is derived from expires_at, never stored
    state               TEXT      NOT NULL CHECK (state IN ('active', 'partly-dispensed', 'dispensed', 'cancelled', 'remainder-cancelled')),
    answer              BYTEA     NOT NULL
);
CREATE INDEX prescriptions_patient ON prescriptions (patient_national_id, issued_at DESC, id DESC);

CREATE TABLE prescription_lines (
    prescription_id TEXT      NOT NULL REFERENCES prescriptions (id),
    fill            INTEGER   NOT NULL CHECK (fill >= 0),
    item            INTEGER   NOT NULL CHECK (item >= 0),
    code            TEXT      NOT NULL,
    kind            TEXT      NOT NULL CHECK (kind IN ('drug', 'lab', 'imaging', 'procedure')),
    quantity        INTEGER   NOT NULL CHECK (quantity > 0),
    dispensed       INTEGER   NOT NULL CHECK (dispensed >= 0 AND dispensed <= quantity),
    valid_from      TIMESTAMP NOT NULL,
    valid_until     TIMESTAMP NOT NULL CHECK (valid_until > valid_from),
    PRIMARY KEY (prescription_id, fill, item)
);

CREATE TABLE claims (
    id              TEXT      PRIMARY KEY,
    prescription_id TEXT      NOT NULL REFERENCES prescriptions (id),
    organisation    TEXT      NOT NULL,
    cert_serial     TEXT      NOT NULL,
    secret_sha256   BYTEA     NOT NULL CHECK (length(secret_sha256) = 32),
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    released_at     TIMESTAMP,
    closed_at       TIMESTAMP,
    CHECK (released_at IS NULL OR closed_at IS NULL)
);
CREATE INDEX claims_prescription ON claims (prescription_id);

CREATE TABLE dispenses (
    id              TEXT      PRIMARY KEY,
    prescription_id TEXT      NOT NULL REFERENCES prescriptions (id),
    claim_id        TEXT      REFERENCES claims (id), -- NULL for a paper prescription's
    jws             TEXT      NOT NULL,
    jws_sha256      TEXT      NOT NULL,
    at              TIMESTAMP NOT NULL,
    answer          BYTEA     NOT NULL
);
CREATE INDEX dispenses_prescription ON dispenses (prescription_id, at);
CREATE INDEX dispenses_claim ON dispenses (claim_id);

CREATE TABLE dispense_lines (
    dispense_id TEXT    NOT NULL REFERENCES dispenses (id),
    item        INTEGER NOT NULL CHECK (item >= 0),
    fill        INTEGER NOT NULL CHECK (fill >= 0),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (dispense_id, item)
);

CREATE TABLE receipts (
    id       TEXT      PRIMARY KEY,
    claim_id TEXT      NOT NULL CONSTRAINT receipts_claim UNIQUE REFERENCES claims (id),
    jws      TEXT      NOT NULL,
    at       TIMESTAMP NOT NULL
);

CREATE TABLE cancellations (
    id              TEXT      PRIMARY KEY,
    prescription_id TEXT      NOT NULL CONSTRAINT cancellations_prescription UNIQUE REFERENCES prescriptions (id),
    jws             TEXT      NOT NULL,
    jws_sha256      TEXT      NOT NULL,
    at              TIMESTAMP NOT NULL,
    remainder_only  BOOLEAN   NOT NULL
);

-- A session is found by the SHA-256 of its bearer token; the token is
-- never stored.
CREATE TABLE sessions (
    token_sha256      BYTEA     PRIMARY KEY CHECK (length(token_sha256) = 32),
    document_id       TEXT      NOT NULL,
    cert_serial       TEXT      NOT NULL,
    role              TEXT      NOT NULL,
    organisation      TEXT      NOT NULL,
    council_number    TEXT      NOT NULL,
    vendor_thumbprint TEXT      NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    expires_at        TIMESTAMP NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Every session document id ever used: each opens one session.
CREATE TABLE session_documents (
    id      TEXT      PRIMARY KEY,
    used_at TIMESTAMP NOT NULL
);

CREATE TABLE idempotency_keys (
    key            TEXT      NOT NULL,
    caller         TEXT      NOT NULL,
    request_sha256 BYTEA     NOT NULL,
    status         INTEGER   NOT NULL,
    body           BYTEA     NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (key, caller)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The acts, append-only whatever role connects: a dispense, a receipt or
-- a cancellation once recorded is never changed or removed, and a session
-- document once used stays used.
CREATE FUNCTION nuskha_exchange_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER dispenses_append_only BEFORE UPDATE OR DELETE ON dispenses
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER dispenses_no_truncate BEFORE TRUNCATE ON dispenses
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER dispense_lines_append_only BEFORE UPDATE OR DELETE ON dispense_lines
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER dispense_lines_no_truncate BEFORE TRUNCATE ON dispense_lines
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER receipts_append_only BEFORE UPDATE OR DELETE ON receipts
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER receipts_no_truncate BEFORE TRUNCATE ON receipts
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER cancellations_append_only BEFORE UPDATE OR DELETE ON cancellations
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER cancellations_no_truncate BEFORE TRUNCATE ON cancellations
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER session_documents_append_only BEFORE UPDATE OR DELETE ON session_documents
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER session_documents_no_truncate BEFORE TRUNCATE ON session_documents
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
