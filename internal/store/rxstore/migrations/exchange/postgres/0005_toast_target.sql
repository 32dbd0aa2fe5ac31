-- A prescription's row holds its JWS (~3.4 KB) and its answer (~4.7 KB).
-- PostgreSQL moves EXTERNAL values (0004) out of line until a row is under
-- toast_tuple_target, 2 KB by default: both documents, five TOAST chunks
-- and five TOAST index entries for every prescription. At the largest
-- target a page allows, a value goes out of line only when the row would
-- not fit in a page otherwise: the JWS stays in the row, the answer goes
-- out when both do not fit, and a dispense, a receipt or a cancellation is
-- not split at all. Accepted prescriptions a second in process rose by
-- 7–49 % in six alternated runs; end to end the change is inside the
-- machine's noise (docs/BENCHMARKS.md, session 8). Rows already stored
-- stay as they are.
--
-- A storage parameter takes SHARE UPDATE EXCLUSIVE, not 0004's ACCESS
-- EXCLUSIVE: readers and writers neither hold it up nor wait for it, and
-- replicas replay no lock. Only a VACUUM (an anti-wraparound one is not
-- cancelled for it), an ANALYZE or a CREATE INDEX CONCURRENTLY holds it
-- up; behind one it gives up, as 0004 does, failing this instance's start.
SET LOCAL lock_timeout = '2s';
ALTER TABLE prescriptions SET (toast_tuple_target = 8160);
ALTER TABLE dispenses SET (toast_tuple_target = 8160);
ALTER TABLE receipts SET (toast_tuple_target = 8160);
ALTER TABLE cancellations SET (toast_tuple_target = 8160);
