-- trustd schema v1: the identity registry, enrolment under dual control,
-- issued certificates and the audit trail. Tables marked append-only refuse
-- UPDATE, DELETE and TRUNCATE through triggers, whatever role connects.

CREATE FUNCTION nuskha_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TABLE subjects (
  id                          TEXT PRIMARY KEY,
  kind                        TEXT NOT NULL,
  name                        TEXT NOT NULL,
  national_id                 TEXT,
  council_number              TEXT,
  profession                  TEXT,
  specialty                   TEXT,
  licence_number              TEXT,
  centre_type                 TEXT,
  province                    TEXT,
  responsible_name            TEXT,
  responsible_council_number  TEXT,
  organization                TEXT,
  dns_names                   TEXT NOT NULL DEFAULT '[]',
  licence_valid_from          TIMESTAMPTZ NOT NULL,
  licence_valid_until         TIMESTAMPTZ NOT NULL,
  licence_status              TEXT NOT NULL,
  created_at                  TIMESTAMPTZ NOT NULL,
  updated_at                  TIMESTAMPTZ NOT NULL,
  version                     INTEGER NOT NULL
);
CREATE UNIQUE INDEX subjects_council_number_uq ON subjects (council_number) WHERE kind = 'practitioner';
CREATE UNIQUE INDEX subjects_national_id_uq ON subjects (kind, national_id) WHERE national_id IS NOT NULL;
CREATE UNIQUE INDEX subjects_licence_number_uq ON subjects (kind, licence_number) WHERE licence_number IS NOT NULL;
CREATE INDEX subjects_kind_name ON subjects (kind, name);

-- Every version of every subject, with who made it.
CREATE TABLE subject_changes (
  seq         BIGSERIAL PRIMARY KEY,
  subject_id  TEXT NOT NULL REFERENCES subjects (id),
  version     INTEGER NOT NULL,
  changed_by  TEXT NOT NULL,
  changed_at  TIMESTAMPTZ NOT NULL,
  snapshot    TEXT NOT NULL,
  UNIQUE (subject_id, version)
);
CREATE TRIGGER subject_changes_append_only BEFORE UPDATE OR DELETE ON subject_changes
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER subject_changes_no_truncate BEFORE TRUNCATE ON subject_changes
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE enrolments (
  id            TEXT PRIMARY KEY,
  subject_id    TEXT NOT NULL REFERENCES subjects (id),
  profile       TEXT NOT NULL,
  csr           BYTEA NOT NULL,
  key_type      TEXT NOT NULL,
  spki_sha256   TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX enrolments_subject ON enrolments (subject_id);
CREATE INDEX enrolments_requested_at ON enrolments (requested_at);
CREATE TRIGGER enrolments_append_only BEFORE UPDATE OR DELETE ON enrolments
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER enrolments_no_truncate BEFORE TRUNCATE ON enrolments
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

-- A public key may be enrolled once, ever.
CREATE TABLE public_keys (
  spki_sha256    TEXT PRIMARY KEY,
  first_seen_at  TIMESTAMPTZ NOT NULL,
  source         TEXT NOT NULL
);
CREATE TRIGGER public_keys_append_only BEFORE UPDATE OR DELETE ON public_keys
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER public_keys_no_truncate BEFORE TRUNCATE ON public_keys
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE decisions (
  enrolment_id  TEXT PRIMARY KEY REFERENCES enrolments (id),
  approved      BOOLEAN NOT NULL,
  decided_by    TEXT NOT NULL,
  decided_at    TIMESTAMPTZ NOT NULL,
  reason        TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE certificates (
  serial              TEXT PRIMARY KEY,
  subject_id          TEXT NOT NULL REFERENCES subjects (id),
  profile             TEXT NOT NULL,
  enrolment_id        TEXT REFERENCES enrolments (id),
  der                 BYTEA NOT NULL,
  fingerprint_sha256  TEXT NOT NULL,
  spki_sha256         TEXT NOT NULL,
  not_before          TIMESTAMPTZ NOT NULL,
  not_after           TIMESTAMPTZ NOT NULL,
  issued_at           TIMESTAMPTZ NOT NULL,
  issued_by           TEXT NOT NULL
);
CREATE UNIQUE INDEX certificates_enrolment_id_uq ON certificates (enrolment_id) WHERE enrolment_id IS NOT NULL;
CREATE UNIQUE INDEX certificates_fingerprint_sha256_uq ON certificates (fingerprint_sha256);
CREATE INDEX certificates_subject ON certificates (subject_id);
CREATE TRIGGER certificates_append_only BEFORE UPDATE OR DELETE ON certificates
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER certificates_no_truncate BEFORE TRUNCATE ON certificates
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE audit_events (
  seq      BIGSERIAL PRIMARY KEY,
  at       TIMESTAMPTZ NOT NULL,
  actor    TEXT NOT NULL,
  action   TEXT NOT NULL,
  object   TEXT NOT NULL,
  outcome  TEXT NOT NULL,
  code     TEXT NOT NULL DEFAULT '',
  detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_object ON audit_events (object);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();
