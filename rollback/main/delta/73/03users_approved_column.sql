-- Drop users.approved.
-- loses: column users.approved WHERE NOT approved (accounts waiting for an administrator's approval, which become usable)
ALTER TABLE users DROP COLUMN approved;
