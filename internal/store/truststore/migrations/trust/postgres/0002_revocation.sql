-- Revocation: status events (append-only, the record), the current status
-- derived from them (one row per certificate not good), dual-control
-- requests for holds and releases, the CRLs published, and the service
-- credentials (OCSP responder, trust-bundle signer) trustd rotates.

CREATE TABLE status_events (
  seq           BIGSERIAL PRIMARY KEY,
  serial        TEXT NOT NULL REFERENCES certificates (serial),
  status        TEXT NOT NULL,
  reason        INTEGER NOT NULL,
  effective_at  TIMESTAMPTZ NOT NULL,
  recorded_at   TIMESTAMPTZ NOT NULL,
  requested_by  TEXT NOT NULL,
  approved_by   TEXT NOT NULL DEFAULT '',
  change_id     TEXT
);
-- A certificate is revoked at most once: never a second record.
CREATE UNIQUE INDEX status_events_revoked_uq ON status_events (serial) WHERE status = 'revoked';
CREATE INDEX status_events_serial ON status_events (serial, seq);
CREATE TRIGGER status_events_append_only BEFORE UPDATE OR DELETE ON status_events
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER status_events_no_truncate BEFORE TRUNCATE ON status_events
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

-- Derived from status_events in the same transaction; absent means good.
CREATE TABLE certificate_status (
  serial        TEXT PRIMARY KEY REFERENCES certificates (serial),
  status        TEXT NOT NULL,
  reason        INTEGER NOT NULL,
  effective_at  TIMESTAMPTZ NOT NULL,
  not_after     TIMESTAMPTZ NOT NULL,
  seq           BIGINT NOT NULL
);

CREATE TABLE status_changes (
  id            TEXT PRIMARY KEY,
  serial        TEXT NOT NULL REFERENCES certificates (serial),
  action        TEXT NOT NULL,
  comment       TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER status_changes_append_only BEFORE UPDATE OR DELETE ON status_changes
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER status_changes_no_truncate BEFORE TRUNCATE ON status_changes
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE status_change_decisions (
  change_id   TEXT PRIMARY KEY REFERENCES status_changes (id),
  approved    BOOLEAN NOT NULL,
  decided_by  TEXT NOT NULL,
  decided_at  TIMESTAMPTZ NOT NULL,
  comment     TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER status_change_decisions_append_only BEFORE UPDATE OR DELETE ON status_change_decisions
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER status_change_decisions_no_truncate BEFORE TRUNCATE ON status_change_decisions
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE crls (
  number        BIGINT PRIMARY KEY,
  this_update   TIMESTAMPTZ NOT NULL,
  next_update   TIMESTAMPTZ NOT NULL,
  entries       INTEGER NOT NULL,
  der           BYTEA NOT NULL,
  generated_at  TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER crls_append_only BEFORE UPDATE OR DELETE ON crls
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER crls_no_truncate BEFORE TRUNCATE ON crls
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE service_credentials (
  serial      TEXT PRIMARY KEY REFERENCES certificates (serial),
  purpose     TEXT NOT NULL,
  key_uri     TEXT NOT NULL,
  not_after   TIMESTAMPTZ NOT NULL,
  created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX service_credentials_purpose ON service_credentials (purpose, not_after);
CREATE TRIGGER service_credentials_append_only BEFORE UPDATE OR DELETE ON service_credentials
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER service_credentials_no_truncate BEFORE TRUNCATE ON service_credentials
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();
