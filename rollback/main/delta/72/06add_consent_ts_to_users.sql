-- Drop users.consent_ts.
-- loses: column users.consent_ts (when each user consented to the privacy policy)
ALTER TABLE users DROP COLUMN consent_ts;
