-- A dispense's settled answer: written once, after the adjudication was
-- committed (supplementary caps consumed), with the amounts actually paid.
-- The answer stored with the dispense holds the amounts estimated before;
-- replays and receipts use the settled one. Append-only, as the dispense.
CREATE TABLE settlements (
    dispense_id TEXT      PRIMARY KEY REFERENCES dispenses (id),
    answer      BYTEA     NOT NULL,
    at          TIMESTAMP NOT NULL
);
CREATE TRIGGER settlements_append_only BEFORE UPDATE OR DELETE ON settlements
  FOR EACH ROW EXECUTE FUNCTION nuskha_exchange_append_only();
CREATE TRIGGER settlements_no_truncate BEFORE TRUNCATE ON settlements
  FOR EACH STATEMENT EXECUTE FUNCTION nuskha_exchange_append_only();
