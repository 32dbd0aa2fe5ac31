-- The card's certificate chain (DER certificates concatenated, leaf first)
-- is kept with its session, so that every rxd instance checks the card's
-- revocation on every call. A session opened before has none and is
-- refused (failing closed): its holder opens a new one.
ALTER TABLE sessions ADD COLUMN card_chain BLOB NOT NULL DEFAULT '';
