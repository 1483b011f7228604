/* Whether an administrator approved the account (MSC3866). NULL for
 * accounts that predate approval, which count as approved. */
ALTER TABLE users ADD COLUMN approved BOOLEAN;
