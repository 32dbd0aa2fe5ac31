-- Registry changes under dual control: an update that changes a subject's
-- identity or widens its licence is requested by one officer, against the
-- version they edited, and applied only when a second approves it.
CREATE TABLE subject_change_requests (
  id            TEXT PRIMARY KEY,
  subject_id    TEXT NOT NULL REFERENCES subjects (id),
  base_version  INTEGER NOT NULL,
  fields        TEXT NOT NULL,
  proposed      TEXT NOT NULL,
  requested_by  TEXT NOT NULL,
  requested_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX subject_change_requests_subject ON subject_change_requests (subject_id, requested_at);
CREATE INDEX subject_change_requests_requested_at ON subject_change_requests (requested_at);
CREATE TRIGGER subject_change_requests_append_only BEFORE UPDATE OR DELETE ON subject_change_requests
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER subject_change_requests_no_truncate BEFORE TRUNCATE ON subject_change_requests
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();

CREATE TABLE subject_change_decisions (
  change_id   TEXT PRIMARY KEY REFERENCES subject_change_requests (id),
  approved    BOOLEAN NOT NULL,
  decided_by  TEXT NOT NULL,
  decided_at  TIMESTAMPTZ NOT NULL,
  comment     TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER subject_change_decisions_append_only BEFORE UPDATE OR DELETE ON subject_change_decisions
  FOR EACH ROW EXECUTE FUNCTION nuskha_append_only();
CREATE TRIGGER subject_change_decisions_no_truncate BEFORE TRUNCATE ON subject_change_decisions
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_append_only();
