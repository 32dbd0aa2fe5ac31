-- A revocation under dual control (an officer's certificate) names its
-- CRLReason when it is requested; holds and releases have none.
ALTER TABLE status_changes ADD COLUMN reason TEXT NOT NULL DEFAULT '';
