-- Portcullis account store, schema version 1. Addresses and domains are stored lower-cased.
-- Later versions are applied on top of it, one file each (schema_v2.sql, ...).
CREATE TABLE IF NOT EXISTS domains (
    name        TEXT PRIMARY KEY,
    host        TEXT,               -- the submission host name serving this domain, if set
    created     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    address         TEXT PRIMARY KEY,
    domain          TEXT NOT NULL REFERENCES domains(name),
    password_hash   TEXT NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    created         INTEGER NOT NULL,
    last_login      INTEGER
);
CREATE TABLE IF NOT EXISTS app_passwords (
    id              TEXT PRIMARY KEY,   -- the public part of the app password (pcap_ID_secret)
    address         TEXT NOT NULL REFERENCES accounts(address) ON DELETE CASCADE,
    label           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    created         INTEGER NOT NULL,
    revoked         INTEGER,            -- time of revocation
    UNIQUE (address, label)
);
CREATE TABLE IF NOT EXISTS aliases (
    alias       TEXT PRIMARY KEY,
    address     TEXT NOT NULL REFERENCES accounts(address) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS grants (
    address     TEXT NOT NULL REFERENCES accounts(address) ON DELETE CASCADE,
    domain      TEXT NOT NULL,
    PRIMARY KEY (address, domain)
);
