-- Portcullis account store, schema version 3: per-domain certificates, per-account quotas and
-- the quota counters.
ALTER TABLE domains ADD COLUMN cert_path TEXT;   -- PEM chain served to clients asking for the
ALTER TABLE domains ADD COLUMN key_path TEXT;    -- domain or its host by SNI; NULL: the default
-- NULL: the server's default from [quotas]; 0: no limit for this account.
ALTER TABLE accounts ADD COLUMN messages_per_hour INTEGER;
ALTER TABLE accounts ADD COLUMN recipients_per_day INTEGER;
-- What each account has used of each quota in its current window. A window starts with the
-- first message counted in it and lasts an hour (messages) or a day (recipients).
CREATE TABLE quota_usage (
    address         TEXT NOT NULL,
    quota           TEXT NOT NULL,      -- messages-per-hour, recipients-per-day
    window_start    INTEGER NOT NULL,   -- unix time
    used            INTEGER NOT NULL,
    PRIMARY KEY (address, quota)
);
