-- The prescription exchange. Rows that record acts (dispenses, their lines,
-- receipts, cancellations) are append-only; every write about a
-- prescription holds the database's write lock (transactions begin
-- IMMEDIATE), and its lines carry the last guard on medicine:
-- CHECK 0 <= dispensed <= quantity.
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
    answer              BLOB      NOT NULL
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
    secret_sha256   BLOB      NOT NULL CHECK (length(secret_sha256) = 32),
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
    answer          BLOB      NOT NULL
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
    remainder_only  INTEGER   NOT NULL CHECK (remainder_only IN (0, 1))
);

-- A session is found by the SHA-256 of its bearer token; the token is
-- never stored.
CREATE TABLE sessions (
    token_sha256      BLOB      PRIMARY KEY CHECK (length(token_sha256) = 32),
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
    request_sha256 BLOB      NOT NULL,
    status         INTEGER   NOT NULL,
    body           BLOB      NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (key, caller)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The acts, append-only: a dispense, a receipt or a cancellation once
-- recorded is never changed or removed, and a session document once used
-- stays used.
CREATE TRIGGER dispenses_no_update BEFORE UPDATE ON dispenses
  BEGIN SELECT RAISE(ABORT, 'table dispenses is append-only'); END;
CREATE TRIGGER dispenses_no_delete BEFORE DELETE ON dispenses
  BEGIN SELECT RAISE(ABORT, 'table dispenses is append-only'); END;
CREATE TRIGGER dispense_lines_no_update BEFORE UPDATE ON dispense_lines
  BEGIN SELECT RAISE(ABORT, 'table dispense_lines is append-only'); END;
CREATE TRIGGER dispense_lines_no_delete BEFORE DELETE ON dispense_lines
  BEGIN SELECT RAISE(ABORT, 'table dispense_lines is append-only'); END;
CREATE TRIGGER receipts_no_update BEFORE UPDATE ON receipts
  BEGIN SELECT RAISE(ABORT, 'table receipts is append-only'); END;
CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts
  BEGIN SELECT RAISE(ABORT, 'table receipts is append-only'); END;
CREATE TRIGGER cancellations_no_update BEFORE UPDATE ON cancellations
  BEGIN SELECT RAISE(ABORT, 'table cancellations is append-only'); END;
CREATE TRIGGER cancellations_no_delete BEFORE DELETE ON cancellations
  BEGIN SELECT RAISE(ABORT, 'table cancellations is append-only'); END;
CREATE TRIGGER session_documents_no_update BEFORE UPDATE ON session_documents
  BEGIN SELECT RAISE(ABORT, 'table session_documents is append-only'); END;
CREATE TRIGGER session_documents_no_delete BEFORE DELETE ON session_documents
  BEGIN SELECT RAISE(ABORT, 'table session_documents is append-only'); END;
