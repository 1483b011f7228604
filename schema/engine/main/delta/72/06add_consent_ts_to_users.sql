/* When the user consented to the privacy policy. */
ALTER TABLE users ADD COLUMN consent_ts bigint;
