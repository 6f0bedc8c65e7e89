-- Portcullis account store, schema version 2: the record of logins behind brute-force
-- protection. User names here are what clients tried (lower-cased), accounts or not; passwords
-- are never stored, not even hashed.
CREATE TABLE login_failures (
    id          INTEGER PRIMARY KEY,
    username    TEXT NOT NULL,
    client      TEXT NOT NULL,      -- the client's IP address (of the latest attempt in the row)
    network     TEXT NOT NULL,      -- the network it was counted under, e.g. 192.0.2.0/24
    first_at    INTEGER NOT NULL,   -- unix time of the first attempt in the row
    at          INTEGER NOT NULL,   -- unix time of the latest attempt in the row
    reason      TEXT NOT NULL,      -- unknown-user, wrong-password, disabled, app-password-revoked,
                                    -- locked, network-refused
    counted     INTEGER NOT NULL,   -- 1: counts towards the limits and is replayed at start-up
    locked_until            INTEGER,    -- this failure locked the user name from the network
    network_refused_until   INTEGER,    -- this failure made the server refuse the network
    attempts    INTEGER NOT NULL DEFAULT 1  -- attempts that did not count, folded into one row
);
CREATE INDEX login_failures_by_username ON login_failures (username, id);
CREATE INDEX login_failures_by_time ON login_failures (at);
-- The latest successful login of each (user name, network): a known network for that user.
CREATE TABLE login_successes (
    username    TEXT NOT NULL,
    network     TEXT NOT NULL,
    client      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (username, network)
);
-- `portcullis accounts unlock`: the running server picks these up by id.
CREATE TABLE login_unlocks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX login_unlocks_by_username ON login_unlocks (username, at);
