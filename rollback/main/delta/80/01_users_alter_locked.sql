-- Drop users.locked.
-- loses: column users.locked WHERE locked (locked accounts, which become usable again)
ALTER TABLE users DROP COLUMN locked;
