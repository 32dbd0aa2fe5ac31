-- A hold or release request names the status it was made against (the
-- sequence number of the certificate's latest status event); it can only
-- be approved while that is still the latest.
ALTER TABLE status_changes ADD COLUMN base_seq INTEGER NOT NULL DEFAULT 0;
