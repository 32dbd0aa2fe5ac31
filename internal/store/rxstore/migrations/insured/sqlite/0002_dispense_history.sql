-- What each insured person was handed out, for the rules that look back
-- (duplicate therapy, refill too early). Append-only: one row per item of
-- a committed dispense; a retried dispense (same id) adds nothing.
CREATE TABLE dispense_history (
    dispense_id  TEXT      NOT NULL,
    item         INTEGER   NOT NULL,
    national_id  TEXT      NOT NULL,
    code         TEXT      NOT NULL,
    atc          TEXT      NOT NULL,
    quantity     INTEGER   NOT NULL CHECK (quantity > 0),
    days_supply  INTEGER   NOT NULL CHECK (days_supply >= 0),
    dispensed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (dispense_id, item)
);
CREATE INDEX dispense_history_patient ON dispense_history (national_id, dispensed_at);
