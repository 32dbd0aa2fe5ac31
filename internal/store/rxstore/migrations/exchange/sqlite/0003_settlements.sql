-- A dispense's settled answer: written once, after the adjudication was
-- committed (supplementary caps consumed), with the amounts actually paid.
-- The answer stored with the dispense holds the amounts estimated before;
-- replays and receipts use the settled one. Append-only, as the dispense.
CREATE TABLE settlements (
    dispense_id TEXT      PRIMARY KEY REFERENCES dispenses (id),
    answer      BLOB      NOT NULL,
    at          TIMESTAMP NOT NULL
);
CREATE TRIGGER settlements_no_update BEFORE UPDATE ON settlements
  BEGIN SELECT RAISE(ABORT, 'table settlements is append-only'); END;
CREATE TRIGGER settlements_no_delete BEFORE DELETE ON settlements
  BEGIN SELECT RAISE(ABORT, 'table settlements is append-only'); END;
