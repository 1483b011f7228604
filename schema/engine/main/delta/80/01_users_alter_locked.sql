/* Locked accounts (MSC3939) cannot log in or use their tokens. */
ALTER TABLE users ADD COLUMN locked BOOLEAN DEFAULT FALSE NOT NULL;
