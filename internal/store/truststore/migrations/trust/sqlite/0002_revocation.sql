-- Revocation: status events (append-only, the record), the current status
-- derived from them (one row per certificate not good), dual-control
-- requests for holds and releases, the CRLs published, and the service
-- credentials (OCSP responder, trust-bundle signer) trustd rotates.

CREATE TABLE status_events (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  serial        TEXT NOT NULL REFERENCES certificates (serial),
  status        TEXT NOT NULL,
  reason        INTEGER NOT NULL,
  effective_at  TIMESTAMP NOT NULL,
  recorded_at   TIMESTAMP NOT NULL,
  requested_by  TEXT NOT NULL,
  approved_by   TEXT NOT NULL DEFAULT '',
  change_id     TEXT
);
-- A certificate is revoked at most once: never a second record.
CREATE UNIQUE INDEX status_events_revoked_uq ON status_events (serial) WHERE status = 'revoked';
CREATE INDEX status_events_serial ON status_events (serial, seq);
CREATE TRIGGER status_events_no_update BEFORE UPDATE ON status_events
  BEGIN SELECT RAISE(ABORT, 'table status_events is append-only'); END;
CREATE TRIGGER status_events_no_delete BEFORE DELETE ON status_events
  BEGIN SELECT RAISE(ABORT, 'table status_events is append-only'); END;

-- Derived from status_events in the same transaction; absent means good.
CREATE TABLE certificate_status (
  serial        TEXT PRIMARY KEY REFERENCES certificates (serial),
  status        TEXT NOT NULL,
  reason        INTEGER NOT NULL,
  effective_at  TIMESTAMP NOT NULL,
  not_after     TIMESTAMP NOT NULL,
  seq           BIGINT NOT NULL
);

CREATE TABLE status_changes (
  id            TEXT PRIMARY KEY,
  serial        TEXT NOT NULL REFERENCES certificates (serial),
  action        TEXT NOT NULL,
  comment       TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMP NOT NULL
);
CREATE TRIGGER status_changes_no_update BEFORE UPDATE ON status_changes
  BEGIN SELECT RAISE(ABORT, 'table status_changes is append-only'); END;
CREATE TRIGGER status_changes_no_delete BEFORE DELETE ON status_changes
  BEGIN SELECT RAISE(ABORT, 'table status_changes is append-only'); END;

CREATE TABLE status_change_decisions (
  change_id   TEXT PRIMARY KEY REFERENCES status_changes (id),
  approved    BOOLEAN NOT NULL,
  decided_by  TEXT NOT NULL,
  decided_at  TIMESTAMP NOT NULL,
  comment     TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER status_change_decisions_no_update BEFORE UPDATE ON status_change_decisions
  BEGIN SELECT RAISE(ABORT, 'table status_change_decisions is append-only'); END;
CREATE TRIGGER status_change_decisions_no_delete BEFORE DELETE ON status_change_decisions
  BEGIN SELECT RAISE(ABORT, 'table status_change_decisions is append-only'); END;

CREATE TABLE crls (
  number        BIGINT PRIMARY KEY,
  this_update   TIMESTAMP NOT NULL,
  next_update   TIMESTAMP NOT NULL,
  entries       INTEGER NOT NULL,
  der           BLOB NOT NULL,
  generated_at  TIMESTAMP NOT NULL
);
CREATE TRIGGER crls_no_update BEFORE UPDATE ON crls
  BEGIN SELECT RAISE(ABORT, 'table crls is append-only'); END;
CREATE TRIGGER crls_no_delete BEFORE DELETE ON crls
  BEGIN SELECT RAISE(ABORT, 'table crls is append-only'); END;

CREATE TABLE service_credentials (
  serial      TEXT PRIMARY KEY REFERENCES certificates (serial),
  purpose     TEXT NOT NULL,
  key_uri     TEXT NOT NULL,
  not_after   TIMESTAMP NOT NULL,
  created_at  TIMESTAMP NOT NULL
);
CREATE INDEX service_credentials_purpose ON service_credentials (purpose, not_after);
CREATE TRIGGER service_credentials_no_update BEFORE UPDATE ON service_credentials
  BEGIN SELECT RAISE(ABORT, 'table service_credentials is append-only'); END;
CREATE TRIGGER service_credentials_no_delete BEFORE DELETE ON service_credentials
  BEGIN SELECT RAISE(ABORT, 'table service_credentials is append-only'); END;
