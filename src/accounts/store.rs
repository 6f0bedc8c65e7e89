//! SQLite implementation of the account store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Account, AppPassword, CertificateFiles, Domain, FailedLogin, SenderRule, app_password_id,
    domain_of,
};
use crate::auth::guard::{LoginEvent, LoginJournal, LoginRecord};
use crate::auth::{AccountStore, AppPasswordHash, StoreError, StoredLogin};
use crate::policy::quotas::{QuotaOverrides, QuotaStore, Usage, Window};
use crate::timefmt::unix_now;

/// Each script takes the store from the version before it to its own (`PRAGMA user_version`).
/// Scripts are never edited once released: a change is a new version.
const MIGRATIONS: [(i64, &str); 3] = [
    (1, include_str!("schema.sql")),
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
];

/// Attempts that did not count (refused while locked, repeats) within this many seconds of a
/// row's first one are folded into it, so an attack of thousands of attempts is a few rows.
const FOLD_SECONDS: u64 = 300;
/// Rows of attempts that did not count kept per user name; counted ones stay for their window.
const UNCOUNTED_PER_USER: i64 = 100;
/// The whole record of failures never exceeds about this many rows.
const MAX_FAILURE_ROWS: i64 = 200_000;

/// What [`SqliteStore::upsert_accounts`] or [`SqliteStore::create_accounts`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub created: usize,
    /// Existing accounts whose password was replaced.
    pub updated: usize,
    pub domains_created: Vec<String>,
}

/// The account store's file in the data directory.
pub const STORE_FILE: &str = "accounts.sqlite";

pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/accounts.sqlite`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(STORE_FILE);
        let io = |e: rusqlite::Error| StoreError::Io(format!("{}: {e}", path.display()));
        crate::spool::log::create_dir_durably(data_dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", data_dir.display())))?;
        let connection = Connection::open(&path).map_err(io)?;
        // Another process (the CLI while the server runs) may hold a write lock for a moment.
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(io)?;
        // WAL lets readers and one writer work at once; FULL sync makes each commit durable.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(io)?;
        let mut connection = connection;
        migrate(&mut connection).map_err(io)?;
        Ok(SqliteStore {
            path,
            connection: Mutex::new(connection),
        })
    }

    fn with<R>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| StoreError::Io("account store lock poisoned".into()))?;
        work(&mut connection).map_err(|e| StoreError::Io(format!("{}: {e}", self.path.display())))
    }

    /// Runs `work` in one transaction; a domain-level error from it rolls everything back.
    fn transaction<R>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| StoreError::Io("account store lock poisoned".into()))?;
        let io = |e: rusqlite::Error| StoreError::Io(format!("{}: {e}", self.path.display()));
        let transaction = connection.transaction().map_err(io)?;
        let result = work(&transaction)?;
        transaction.commit().map_err(io)?;
        Ok(result)
    }

    // ---- accounts ---------------------------------------------------------------------------

    /// Creates an account; returns true when its domain was new and has been created too.
    pub fn add_account(&self, address: &str, password_hash: &str) -> Result<bool, StoreError> {
        let account = [(address.to_string(), password_hash.to_string())];
        let summary = self.create_accounts(&account, true)?;
        Ok(!summary.domains_created.is_empty())
    }

    pub fn set_password(&self, address: &str, password_hash: &str) -> Result<(), StoreError> {
        self.change_account(
            address,
            "UPDATE accounts SET password_hash = ?2 WHERE address = ?1",
            password_hash,
        )
    }

    pub fn set_enabled(&self, address: &str, enabled: bool) -> Result<(), StoreError> {
        self.change_account(
            address,
            "UPDATE accounts SET enabled = ?2 WHERE address = ?1",
            enabled,
        )
    }

    pub fn remove_account(&self, address: &str) -> Result<(), StoreError> {
        self.transaction(|tx| {
            let removed = tx
                .execute("DELETE FROM accounts WHERE address = ?1", [address])
                .map_err(sql)?;
            if removed == 0 {
                return Err(StoreError::NoSuchAccount(address.to_string()));
            }
            tx.execute("DELETE FROM quota_usage WHERE address = ?1", [address])
                .map_err(sql)?;
            Ok(())
        })
    }

    /// Sets the account's own quotas (`None`: the server's default, 0: no limit).
    pub fn set_quota_overrides(
        &self,
        address: &str,
        quotas: QuotaOverrides,
    ) -> Result<(), StoreError> {
        let as_sql = |limit: Option<u64>| limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let changed = self.with(|c| {
            c.execute(
                "UPDATE accounts SET messages_per_hour = ?2, recipients_per_day = ?3 WHERE address = ?1",
                params![address, as_sql(quotas.messages_per_hour), as_sql(quotas.recipients_per_day)],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount(address.to_string()));
        }
        Ok(())
    }

    /// The account's own quotas (for the command line; the server reads them all at once).
    pub fn account_quota_overrides(&self, address: &str) -> Result<QuotaOverrides, StoreError> {
        let found = self.with(|c| {
            c.query_row(
                "SELECT messages_per_hour, recipients_per_day FROM accounts WHERE address = ?1",
                [address],
                |row| Ok(overrides_of(row.get(0)?, row.get(1)?)),
            )
            .optional()
        })?;
        found.ok_or_else(|| StoreError::NoSuchAccount(address.to_string()))
    }

    /// The account's quota counters as last written by the server.
    pub fn quota_usage_of(&self, address: &str) -> Result<Usage, StoreError> {
        let rows = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT address, quota, window_start, used FROM quota_usage WHERE address = ?1",
            )?;
            let rows = statement.query_map([address], usage_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(group_usage(rows)
            .pop()
            .map(|(_, usage)| usage)
            .unwrap_or_default())
    }

    fn change_account(
        &self,
        address: &str,
        statement: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let changed = self.with(|c| c.execute(statement, params![address, value]))?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount(address.to_string()));
        }
        Ok(())
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let addresses: Vec<String> = self.with(|c| {
            let mut statement = c.prepare("SELECT address FROM accounts ORDER BY address")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            rows.collect()
        })?;
        addresses
            .iter()
            .map(|address| {
                self.account(address)?
                    .ok_or_else(|| StoreError::NoSuchAccount(address.clone()))
            })
            .collect()
    }

    pub fn account(&self, address: &str) -> Result<Option<Account>, StoreError> {
        self.with(|c| {
            let found = c
                .query_row(
                    "SELECT address, domain, enabled, created, last_login FROM accounts WHERE address = ?1",
                    [address],
                    |row| {
                        Ok(Account {
                            address: row.get(0)?,
                            domain: row.get(1)?,
                            enabled: row.get(2)?,
                            created: row.get(3)?,
                            last_login: row.get(4)?,
                            aliases: Vec::new(),
                            grants: Vec::new(),
                        })
                    },
                )
                .optional()?;
            let Some(mut account) = found else { return Ok(None) };
            account.aliases = strings(c, "SELECT alias FROM aliases WHERE address = ?1 ORDER BY alias", address)?;
            account.grants = strings(c, "SELECT domain FROM grants WHERE address = ?1 ORDER BY domain", address)?;
            Ok(Some(account))
        })
    }

    /// Creates or updates (new password hash) every account in one transaction: all of them
    /// or, on any error, none. Accounts keep their enabled state, aliases, grants and app
    /// passwords. A domain that is not in the store is an error unless `create_domains`.
    pub fn upsert_accounts(
        &self,
        accounts: &[(String, String)],
        create_domains: bool,
    ) -> Result<WriteSummary, StoreError> {
        self.write_accounts(accounts, create_domains, true)
    }

    /// Creates every account in one transaction; if any of them exists, none is created.
    pub fn create_accounts(
        &self,
        accounts: &[(String, String)],
        create_domains: bool,
    ) -> Result<WriteSummary, StoreError> {
        self.write_accounts(accounts, create_domains, false)
    }

    fn write_accounts(
        &self,
        accounts: &[(String, String)],
        create_domains: bool,
        replace: bool,
    ) -> Result<WriteSummary, StoreError> {
        self.transaction(|tx| {
            let mut summary = WriteSummary::default();
            let mut domain_exists = tx
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .map_err(sql)?;
            let mut add_domain = tx
                .prepare_cached("INSERT INTO domains (name, created) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut account_exists = tx
                .prepare_cached("SELECT 1 FROM accounts WHERE address = ?1")
                .map_err(sql)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO accounts (address, domain, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            let mut update = tx
                .prepare_cached("UPDATE accounts SET password_hash = ?2 WHERE address = ?1")
                .map_err(sql)?;
            let mut known: HashSet<&str> = HashSet::new();
            let created = unix_now();
            for (address, password_hash) in accounts {
                let domain = domain_of(address)
                    .ok_or_else(|| StoreError::Invalid(format!("{address} has no domain")))?;
                if !known.contains(domain) {
                    if !domain_exists.exists([domain]).map_err(sql)? {
                        if !create_domains {
                            return Err(StoreError::Invalid(format!(
                                "domain {domain} not found; add it with `portcullis domains add {domain}` or pass --create-domains"
                            )));
                        }
                        add_domain.execute(params![domain, created]).map_err(sql)?;
                        summary.domains_created.push(domain.to_string());
                    }
                    known.insert(domain);
                }
                if account_exists.exists([address]).map_err(sql)? {
                    if !replace {
                        return Err(StoreError::Exists(address.clone()));
                    }
                    update.execute([address, password_hash]).map_err(sql)?;
                    summary.updated += 1;
                } else {
                    insert
                        .execute(params![address, domain, password_hash, created])
                        .map_err(sql)?;
                    summary.created += 1;
                }
            }
            Ok(summary)
        })
    }

    /// Which of `addresses` are accounts already.
    pub fn existing_accounts(&self, addresses: &[&str]) -> Result<HashSet<String>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare_cached("SELECT 1 FROM accounts WHERE address = ?1")?;
            let mut found = HashSet::new();
            for address in addresses {
                if statement.exists([address])? {
                    found.insert(address.to_string());
                }
            }
            Ok(found)
        })
    }

    /// The enabled accounts (of one domain, or all) with the host configured for their domain,
    /// ordered by address.
    pub fn enabled_accounts_with_hosts(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT a.address, d.host FROM accounts a JOIN domains d ON d.name = a.domain \
                 WHERE a.enabled AND (?1 IS NULL OR a.domain = ?1) ORDER BY a.address",
            )?;
            let rows = statement.query_map([domain], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    // ---- app passwords ------------------------------------------------------------------------

    pub fn add_app_password(
        &self,
        address: &str,
        id: &str,
        label: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        self.transaction(|tx| {
            require_account(tx, address)?;
            let taken: Option<i64> = tx
                .query_row("SELECT 1 FROM app_passwords WHERE address = ?1 AND label = ?2", [address, label], |r| r.get(0))
                .optional()
                .map_err(sql)?;
            if taken.is_some() {
                return Err(StoreError::Exists(format!("app password {label:?} of {address}")));
            }
            tx.execute(
                "INSERT INTO app_passwords (id, address, label, password_hash, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, address, label, password_hash, unix_now()],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    pub fn app_passwords(&self, address: &str) -> Result<Vec<AppPassword>, StoreError> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT id, label, created, revoked FROM app_passwords WHERE address = ?1 ORDER BY created, label")?;
            let rows = statement.query_map([address], |row| {
                Ok(AppPassword { id: row.get(0)?, label: row.get(1)?, created: row.get(2)?, revoked: row.get(3)? })
            })?;
            rows.collect()
        })
    }

    pub fn revoke_app_password(&self, address: &str, label: &str) -> Result<(), StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE app_passwords SET revoked = ?3 WHERE address = ?1 AND label = ?2 AND revoked IS NULL",
                params![address, label, unix_now()],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::NoSuchAccount(format!(
                "active app password {label:?} of {address}"
            )));
        }
        Ok(())
    }

    // ---- failed logins ------------------------------------------------------------------------

    /// The latest rows of the record of failed logins for `username`, newest first.
    pub fn recent_failures(
        &self,
        username: &str,
        limit: usize,
    ) -> Result<Vec<FailedLogin>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT first_at, at, network, client, reason, attempts FROM login_failures
                 WHERE username = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![username, limit as i64], |row| {
                Ok(FailedLogin {
                    first: row.get(0)?,
                    last: row.get(1)?,
                    network: row.get(2)?,
                    client: row.get(3)?,
                    reason: row.get(4)?,
                    attempts: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The networks `username` is locked from at `now`, with the end of each lock, as the server
    /// recorded them (a lock stops counting when unlocked).
    pub fn login_locks(&self, username: &str, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT network, MAX(locked_until) FROM login_failures
                 WHERE username = ?1 AND counted = 1 AND locked_until > ?2
                 GROUP BY network ORDER BY 2, 1",
            )?;
            let rows = statement
                .query_map(params![username, now], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// Networks every login is refused from at `now` (after failures for many user names).
    pub fn refused_networks(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT network, MAX(network_refused_until) FROM login_failures
                 WHERE network_refused_until > ?1 GROUP BY network ORDER BY 2, 1",
            )?;
            let rows = statement.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    /// Clears the locks and failure counts of `username` from every network: its failures stop
    /// counting (they stay listed), and the running server is told through `login_unlocks`.
    pub fn unlock(&self, username: &str) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE login_failures SET counted = 0 WHERE username = ?1 AND counted = 1",
                [username],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO login_unlocks (username, at) VALUES (?1, ?2)",
                params![username, unix_now()],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    // ---- domains ------------------------------------------------------------------------------

    /// Adds a domain, or sets the fields given when it exists; returns true if it was new.
    pub fn add_domain(
        &self,
        name: &str,
        host: Option<&str>,
        certificate: Option<&CertificateFiles>,
    ) -> Result<bool, StoreError> {
        let (chain, key) = match certificate {
            Some(files) => (Some(path_text(&files.chain)?), Some(path_text(&files.key)?)),
            None => (None, None),
        };
        self.transaction(|tx| {
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO domains (name, host, cert_path, key_path, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, host, chain, key, unix_now()],
                )
                .map_err(sql)?
                == 1;
            if !new {
                tx.execute(
                    "UPDATE domains SET host = COALESCE(?2, host), cert_path = COALESCE(?3, cert_path), \
                     key_path = COALESCE(?4, key_path) WHERE name = ?1",
                    params![name, host, chain, key],
                )
                .map_err(sql)?;
            }
            Ok(new)
        })
    }

    pub fn domain(&self, name: &str) -> Result<Option<Domain>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = ?1"),
                [name],
                domain_row,
            )
            .optional()
        })
    }

    pub fn domains(&self) -> Result<Vec<Domain>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {DOMAIN_COLUMNS} FROM domains ORDER BY name"
            ))?;
            let rows = statement.query_map([], domain_row)?;
            rows.collect()
        })
    }

    /// The host configured for the domain of an account: `None` when the domain has none, or
    /// when there is no such account.
    pub fn serving_host(&self, address: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT d.host FROM accounts a JOIN domains d ON d.name = a.domain \
                 WHERE a.address = ?1",
                [address],
                |row| row.get(0),
            )
            .optional()
        })
        .map(Option::flatten)
    }

    // ---- aliases, grants and the sender rule ----------------------------------------------------

    pub fn add_alias(&self, address: &str, alias: &str) -> Result<(), StoreError> {
        self.transaction(|tx| {
            require_account(tx, address)?;
            let owner: Option<String> = tx
                .query_row(
                    "SELECT address FROM aliases WHERE alias = ?1",
                    [alias],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(owner) = owner {
                return Err(StoreError::Exists(format!("alias {alias} (of {owner})")));
            }
            tx.execute(
                "INSERT INTO aliases (alias, address) VALUES (?1, ?2)",
                [alias, address],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    pub fn remove_alias(&self, address: &str, alias: &str) -> Result<(), StoreError> {
        let removed = self.with(|c| {
            c.execute(
                "DELETE FROM aliases WHERE alias = ?1 AND address = ?2",
                [alias, address],
            )
        })?;
        if removed == 0 {
            return Err(StoreError::NoSuchAccount(format!(
                "alias {alias} of {address}"
            )));
        }
        Ok(())
    }

    pub fn add_grant(&self, address: &str, domain: &str) -> Result<(), StoreError> {
        self.transaction(|tx| {
            require_account(tx, address)?;
            tx.execute(
                "INSERT OR IGNORE INTO grants (address, domain) VALUES (?1, ?2)",
                [address, domain],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    pub fn remove_grant(&self, address: &str, domain: &str) -> Result<(), StoreError> {
        let removed = self.with(|c| {
            c.execute(
                "DELETE FROM grants WHERE address = ?1 AND domain = ?2",
                [address, domain],
            )
        })?;
        if removed == 0 {
            return Err(StoreError::NoSuchAccount(format!(
                "grant @{domain} of {address}"
            )));
        }
        Ok(())
    }

    /// Which rule lets `user` send as `sender` (both lower-cased), or that none does.
    pub fn sender_rule(&self, user: &str, sender: &str) -> Result<SenderRule, StoreError> {
        if user == sender {
            return Ok(SenderRule::OwnAddress);
        }
        self.with(|c| {
            let alias: Option<i64> = c
                .query_row(
                    "SELECT 1 FROM aliases WHERE alias = ?1 AND address = ?2",
                    [sender, user],
                    |r| r.get(0),
                )
                .optional()?;
            if alias.is_some() {
                return Ok(SenderRule::Alias);
            }
            let domain = domain_of(sender).unwrap_or_default();
            let grant: Option<i64> = c
                .query_row(
                    "SELECT 1 FROM grants WHERE address = ?1 AND domain = ?2",
                    [user, domain],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match grant {
                Some(_) => SenderRule::GrantedDomain(domain.to_string()),
                None => SenderRule::NotOwned,
            })
        })
    }
}

impl AccountStore for SqliteStore {
    fn login(&self, username: &str, password: &str) -> Result<Option<StoredLogin>, StoreError> {
        self.with(|c| {
            let found: Option<(String, bool)> = c
                .query_row("SELECT password_hash, enabled FROM accounts WHERE address = ?1", [username], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            let Some((password_hash, enabled)) = found else { return Ok(None) };
            let app_password = match app_password_id(password) {
                Some(id) => c
                    .query_row(
                        "SELECT id, password_hash, revoked IS NOT NULL FROM app_passwords WHERE id = ?1 AND address = ?2",
                        [id, username],
                        |row| Ok(AppPasswordHash { id: row.get(0)?, hash: row.get(1)?, revoked: row.get(2)? }),
                    )
                    .optional()?,
                None => None,
            };
            Ok(Some(StoredLogin { password_hash, enabled, app_password }))
        })
    }
}

impl QuotaStore for SqliteStore {
    /// SQLite's `data_version`: it changes when another connection commits (our own writes of
    /// the counters do not change it).
    fn version(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("PRAGMA data_version", [], |row| row.get(0)))
    }

    fn quota_overrides(&self) -> Result<Vec<(String, QuotaOverrides)>, StoreError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT address, messages_per_hour, recipients_per_day FROM accounts
                 WHERE messages_per_hour IS NOT NULL OR recipients_per_day IS NOT NULL",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get(0)?, overrides_of(row.get(1)?, row.get(2)?)))
            })?;
            rows.collect()
        })
    }

    fn quota_usage(&self) -> Result<Vec<(String, Usage)>, StoreError> {
        let rows = self.with(|c| {
            let mut statement = c.prepare(
                "SELECT address, quota, window_start, used FROM quota_usage ORDER BY address",
            )?;
            let rows = statement.query_map([], usage_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(group_usage(rows))
    }

    fn save_quota_usage(&self, usage: &[(String, Usage)]) -> Result<(), StoreError> {
        let as_sql = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.transaction(|tx| {
            let mut upsert = tx
                .prepare(
                    "INSERT INTO quota_usage (address, quota, window_start, used) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (address, quota) DO UPDATE SET window_start = ?3, used = ?4",
                )
                .map_err(sql)?;
            for (address, usage) in usage {
                for (quota, window) in [
                    (MESSAGES_PER_HOUR, usage.messages),
                    (RECIPIENTS_PER_DAY, usage.recipients),
                ] {
                    upsert
                        .execute(params![address, quota, as_sql(window.start), as_sql(window.used)])
                        .map_err(sql)?;
                }
            }
            Ok(())
        })
    }
}

/// The columns of an account's own quotas (negative values, which the CLI never writes, mean
/// no limit).
fn overrides_of(messages: Option<i64>, recipients: Option<i64>) -> QuotaOverrides {
    let limit = |value: Option<i64>| value.map(|n| u64::try_from(n).unwrap_or(0));
    QuotaOverrides {
        messages_per_hour: limit(messages),
        recipients_per_day: limit(recipients),
    }
}

const MESSAGES_PER_HOUR: &str = "messages-per-hour";
const RECIPIENTS_PER_DAY: &str = "recipients-per-day";

type UsageRow = (String, String, i64, i64);

fn usage_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Rows of `quota_usage`, ordered by address, as one [`Usage`] per account.
fn group_usage(rows: Vec<UsageRow>) -> Vec<(String, Usage)> {
    let mut accounts: Vec<(String, Usage)> = Vec::new();
    for (address, quota, start, used) in rows {
        if accounts.last().is_none_or(|(last, _)| *last != address) {
            accounts.push((address, Usage::default()));
        }
        let Some((_, usage)) = accounts.last_mut() else {
            continue;
        };
        let window = Window {
            start: u64::try_from(start).unwrap_or(0),
            used: u64::try_from(used).unwrap_or(0),
        };
        match quota.as_str() {
            MESSAGES_PER_HOUR => usage.messages = window,
            RECIPIENTS_PER_DAY => usage.recipients = window,
            _ => {}
        }
    }
    accounts
}

impl LoginJournal for SqliteStore {
    fn record(&self, events: &[LoginEvent]) -> Result<(), StoreError> {
        self.transaction(|tx| {
            let mut uncounted_users = Vec::new();
            for event in events {
                record_event(tx, event).map_err(sql)?;
                if event.failure.is_some_and(|f| !f.counted)
                    && !uncounted_users.contains(&&event.username)
                {
                    uncounted_users.push(&event.username);
                }
            }
            for username in uncounted_users {
                tx.execute(
                    "DELETE FROM login_failures WHERE username = ?1 AND counted = 0 AND id < (
                         SELECT id FROM login_failures WHERE username = ?1 AND counted = 0
                         ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    params![username, UNCOUNTED_PER_USER - 1],
                )
                .map_err(sql)?;
            }
            tx.execute(
                "DELETE FROM login_failures WHERE id <= (SELECT MAX(id) FROM login_failures) - ?1",
                [MAX_FAILURE_ROWS],
            )
            .map_err(sql)?;
            Ok(())
        })
    }

    fn history(
        &self,
        failures_since: u64,
        successes_since: u64,
    ) -> Result<Vec<LoginRecord>, StoreError> {
        self.with(|c| {
            // Failures made before an unlock of their user name no longer count.
            let mut statement = c.prepare(
                "SELECT username, client, at, 0 FROM login_failures AS f
                 WHERE counted = 1 AND at >= ?1 AND NOT EXISTS (
                     SELECT 1 FROM login_unlocks AS u WHERE u.username = f.username AND u.at >= f.at)
                 UNION ALL
                 SELECT username, client, at, 1 FROM login_successes WHERE at >= ?2
                 ORDER BY 3, 4",
            )?;
            let rows = statement.query_map(params![failures_since, successes_since], |row| {
                let client: String = row.get(1)?;
                Ok((row.get(0)?, client, row.get(2)?, row.get(3)?))
            })?;
            let mut records = Vec::new();
            for row in rows {
                let (username, client, at, succeeded): (String, String, u64, bool) = row?;
                // A row that is not an address was not written by us; skip it.
                if let Ok(client) = client.parse() {
                    records.push(LoginRecord {
                        username,
                        client,
                        at,
                        succeeded,
                    });
                }
            }
            Ok(records)
        })
    }

    fn unlocks_after(&self, after: i64) -> Result<(i64, Vec<String>), StoreError> {
        self.with(|c| {
            let newest: i64 = c.query_row(
                "SELECT COALESCE(MAX(id), 0) FROM login_unlocks",
                [],
                |row| row.get(0),
            )?;
            let mut statement = c.prepare(
                "SELECT username FROM login_unlocks WHERE id > ?1 AND id <= ?2 ORDER BY id",
            )?;
            let rows = statement.query_map(params![after, newest], |row| row.get(0))?;
            Ok((newest, rows.collect::<rusqlite::Result<_>>()?))
        })
    }

    fn prune(&self, failures_before: u64, successes_before: u64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.execute(
                "DELETE FROM login_failures WHERE at < ?1",
                [failures_before],
            )
            .map_err(sql)?;
            tx.execute("DELETE FROM login_unlocks WHERE at < ?1", [failures_before])
                .map_err(sql)?;
            tx.execute(
                "DELETE FROM login_successes WHERE at < ?1",
                [successes_before],
            )
            .map_err(sql)?;
            Ok(())
        })
    }
}

fn record_event(tx: &rusqlite::Transaction<'_>, event: &LoginEvent) -> rusqlite::Result<()> {
    let client = event.client.to_string();
    let Some(failure) = event.failure else {
        tx.execute(
            "INSERT INTO login_successes (username, network, client, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username, network) DO UPDATE SET client = excluded.client, at = excluded.at",
            params![event.username, event.network, client, event.at],
        )?;
        // The account's last login rides on the same batched write, off the login's path.
        tx.execute(
            "UPDATE accounts SET last_login = MAX(COALESCE(last_login, 0), ?2) WHERE address = ?1",
            params![event.username, event.at],
        )?;
        return Ok(());
    };
    let reason = failure.reason.as_str();
    if !failure.counted {
        let folded = tx.execute(
            "UPDATE login_failures SET attempts = attempts + 1, at = MAX(at, ?4), client = ?5
             WHERE id = (SELECT id FROM login_failures
                         WHERE username = ?1 AND network = ?2 AND reason = ?3 AND counted = 0
                           AND first_at >= ?6
                         ORDER BY id DESC LIMIT 1)",
            params![
                event.username,
                event.network,
                reason,
                event.at,
                client,
                event.at.saturating_sub(FOLD_SECONDS)
            ],
        )?;
        if folded > 0 {
            return Ok(());
        }
    }
    tx.execute(
        "INSERT INTO login_failures (username, client, network, first_at, at, reason, counted,
                                     locked_until, network_refused_until)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)",
        params![
            event.username,
            client,
            event.network,
            event.at,
            reason,
            failure.counted,
            failure.locked_until,
            failure.network_refused_until
        ],
    )?;
    Ok(())
}

fn sql(error: rusqlite::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

fn require_account(tx: &rusqlite::Transaction<'_>, address: &str) -> Result<(), StoreError> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM accounts WHERE address = ?1",
            [address],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NoSuchAccount(address.to_string()))
}

fn strings(c: &Connection, query: &str, key: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = c.prepare(query)?;
    let rows = statement.query_map([key], |row| row.get(0))?;
    rows.collect()
}

const DOMAIN_COLUMNS: &str = "name, host, cert_path, key_path, created";

fn domain_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Domain> {
    let chain: Option<String> = row.get(2)?;
    let key: Option<String> = row.get(3)?;
    Ok(Domain {
        name: row.get(0)?,
        host: row.get(1)?,
        certificate: chain.zip(key).map(|(chain, key)| CertificateFiles {
            chain: chain.into(),
            key: key.into(),
        }),
        created: row.get(4)?,
    })
}

/// Paths are stored as text; one that is not UTF-8 could not be read back as the same path.
fn path_text(path: &Path) -> Result<String, StoreError> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        StoreError::Invalid(format!("{}: the path is not valid UTF-8", path.display()))
    })
}

/// Brings the store up to the newest schema, one version at a time, each step in its own
/// transaction (so the server and the command line starting at once cannot both apply it).
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    for (version, script) in MIGRATIONS {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if current < version {
            tx.execute_batch(script)?;
            tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::FailureReason;
    use crate::auth::guard::RecordedFailure;

    fn store(name: &str) -> (SqliteStore, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("portcullis-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (SqliteStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn accounts_create_their_domain_and_are_visible_to_a_second_connection() {
        let (first, dir) = store("accounts");
        assert!(first.add_account("a@example.test", "$argon2id$x").unwrap());
        assert!(!first.add_account("b@example.test", "$argon2id$y").unwrap());
        assert_eq!(
            first.add_account("a@example.test", "$argon2id$z"),
            Err(StoreError::Exists("a@example.test".into()))
        );
        // Another process (the server) sees the change at once.
        let second = SqliteStore::open(&dir).unwrap();
        let login = second.login("a@example.test", "anything").unwrap().unwrap();
        assert_eq!(
            (
                login.password_hash.as_str(),
                login.enabled,
                login.app_password
            ),
            ("$argon2id$x", true, None)
        );
        first.set_enabled("a@example.test", false).unwrap();
        assert!(
            !second
                .login("a@example.test", "x")
                .unwrap()
                .unwrap()
                .enabled
        );
        first.remove_account("a@example.test").unwrap();
        assert_eq!(second.login("a@example.test", "x").unwrap(), None);
        assert_eq!(first.domains().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_app_password_is_found_by_the_id_inside_it() {
        let (store, dir) = store("app");
        store
            .add_account("a@example.test", "$argon2id$main")
            .unwrap();
        store
            .add_app_password("a@example.test", "abcd1234", "phone", "$argon2id$app")
            .unwrap();
        let login = store
            .login("a@example.test", "pcap_abcd1234_secret")
            .unwrap()
            .unwrap();
        assert_eq!(
            login.app_password.map(|a| (a.hash, a.revoked)),
            Some(("$argon2id$app".to_string(), false))
        );
        assert_eq!(
            store
                .login("a@example.test", "plain password")
                .unwrap()
                .unwrap()
                .app_password,
            None
        );
        store
            .revoke_app_password("a@example.test", "phone")
            .unwrap();
        assert!(
            store
                .login("a@example.test", "pcap_abcd1234_secret")
                .unwrap()
                .unwrap()
                .app_password
                .unwrap()
                .revoked
        );
        // Another account cannot use it.
        store.add_account("b@example.test", "$argon2id$b").unwrap();
        assert_eq!(
            store
                .login("b@example.test", "pcap_abcd1234_secret")
                .unwrap()
                .unwrap()
                .app_password,
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_version_1_store_is_migrated_to_the_latest_keeping_its_accounts() {
        let dir = std::env::temp_dir().join(format!("portcullis-store-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let old = Connection::open(dir.join("accounts.sqlite")).unwrap();
            old.execute_batch(MIGRATIONS[0].1).unwrap();
            old.execute_batch("PRAGMA user_version = 1").unwrap();
            old.execute_batch(
                "INSERT INTO domains (name, created) VALUES ('example.test', 1);
                 INSERT INTO accounts (address, domain, password_hash, created)
                 VALUES ('a@example.test', 'example.test', '$argon2id$old', 1);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&dir).unwrap();
        let version: i64 = store
            .with(|c| c.query_row("PRAGMA user_version", [], |row| row.get(0)))
            .unwrap();
        assert_eq!(version, MIGRATIONS[MIGRATIONS.len() - 1].0);
        assert!(store.account("a@example.test").unwrap().is_some());
        assert!(
            store
                .recent_failures("a@example.test", 10)
                .unwrap()
                .is_empty()
        );
        // Opening again changes nothing.
        drop(store);
        let store = SqliteStore::open(&dir).unwrap();
        assert!(store.account("a@example.test").unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn failure(user: &str, at: u64, reason: FailureReason, counted: bool) -> LoginEvent {
        LoginEvent {
            username: user.into(),
            client: "192.0.2.7".parse().unwrap(),
            network: "192.0.2.0/24".into(),
            at,
            failure: Some(RecordedFailure {
                counted,
                ..RecordedFailure::uncounted(reason)
            }),
        }
    }

    #[test]
    fn a_recorded_success_is_the_accounts_last_login() {
        let (store, dir) = store("last-login");
        store.add_account("a@example.test", "$argon2id$a").unwrap();
        let last_login = || store.account("a@example.test").unwrap().unwrap().last_login;
        assert_eq!(last_login(), None);
        let success = |at| LoginEvent {
            failure: None,
            ..failure("a@example.test", at, FailureReason::WrongPassword, false)
        };
        store.record(&[success(2000)]).unwrap();
        assert_eq!(last_login(), Some(2000));
        // Batches may arrive out of order; the latest login stays.
        store.record(&[success(1000)]).unwrap();
        assert_eq!(last_login(), Some(2000));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_record_of_logins_folds_refusals_and_replays_what_counted() {
        let (store, dir) = store("journal");
        let alice = "a@example.test";
        let mut events: Vec<LoginEvent> = (0..3)
            .map(|n| failure(alice, 1000 + n, FailureReason::WrongPassword, true))
            .collect();
        events[2].failure = events[2].failure.map(|f| RecordedFailure {
            locked_until: Some(1902),
            network_refused_until: Some(4602),
            ..f
        });
        // Two thousand refusals in a few minutes: one row.
        events
            .extend((0..2000).map(|n| failure(alice, 1010 + n / 10, FailureReason::Locked, false)));
        store.record(&events).unwrap();
        store
            .record(&[LoginEvent {
                failure: None,
                ..failure(alice, 1500, FailureReason::WrongPassword, false)
            }])
            .unwrap();
        let shown = store.recent_failures(alice, 10).unwrap();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert_eq!(
            (
                shown[0].reason.as_str(),
                shown[0].attempts,
                shown[0].first,
                shown[0].last
            ),
            ("locked", 2000, 1010, 1209)
        );
        assert_eq!(
            (
                shown[3].reason.as_str(),
                shown[3].network.as_str(),
                shown[3].client.as_str()
            ),
            ("wrong-password", "192.0.2.0/24", "192.0.2.7")
        );
        assert_eq!(
            store.login_locks(alice, 1500).unwrap(),
            [("192.0.2.0/24".to_string(), 1902)]
        );
        assert!(store.login_locks(alice, 1902).unwrap().is_empty());
        assert_eq!(
            store.refused_networks(1500).unwrap(),
            [("192.0.2.0/24".to_string(), 4602)]
        );
        // Replay: the counted failures and the success, in time order.
        let history = store.history(0, 0).unwrap();
        let summary: Vec<(u64, bool)> = history.iter().map(|r| (r.at, r.succeeded)).collect();
        assert_eq!(
            summary,
            [(1000, false), (1001, false), (1002, false), (1500, true)]
        );
        // An unlock stops them counting and is announced once to the running server.
        let (before, _) = store.unlocks_after(i64::MAX).unwrap();
        store.unlock(alice).unwrap();
        assert_eq!(store.history(0, 0).unwrap().len(), 1);
        assert!(store.login_locks(alice, 1500).unwrap().is_empty());
        assert_eq!(store.recent_failures(alice, 10).unwrap().len(), 4);
        let (newest, names) = store.unlocks_after(before).unwrap();
        assert_eq!(names, [alice]);
        assert_eq!(store.unlocks_after(newest).unwrap().1, Vec::<String>::new());
        // Pruning forgets old rows.
        store.prune(2000, 2000).unwrap();
        assert!(store.recent_failures(alice, 10).unwrap().is_empty());
        assert!(store.history(0, 0).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refusal_rows_per_user_name_are_capped() {
        let (store, dir) = store("journal-cap");
        // Refusals an hour apart never fold: each is a row, and only the newest 100 stay.
        let events: Vec<LoginEvent> = (0..150)
            .map(|n| failure("x@example.test", n * 3600, FailureReason::Locked, false))
            .collect();
        store.record(&events).unwrap();
        let kept = store.recent_failures("x@example.test", 1000).unwrap();
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0].first, 149 * 3600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sender_rules() {
        let (store, dir) = store("rules");
        store.add_account("a@example.test", "$argon2id$a").unwrap();
        store
            .add_alias("a@example.test", "sales@example.test")
            .unwrap();
        store
            .add_grant("a@example.test", "news.example.test")
            .unwrap();
        let rule = |sender: &str| store.sender_rule("a@example.test", sender).unwrap();
        assert_eq!(rule("a@example.test"), SenderRule::OwnAddress);
        assert_eq!(rule("sales@example.test"), SenderRule::Alias);
        assert_eq!(
            rule("x@news.example.test"),
            SenderRule::GrantedDomain("news.example.test".into())
        );
        assert_eq!(rule("x@example.test"), SenderRule::NotOwned);
        assert_eq!(rule("x@sub.news.example.test"), SenderRule::NotOwned);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_version_changes_with_other_connections_writes_only() {
        let (server, dir) = store("version");
        let cli = SqliteStore::open(&dir).unwrap();
        let before = server.version().unwrap();
        server
            .save_quota_usage(&[("a@example.test".into(), Usage::default())])
            .unwrap();
        assert_eq!(server.version().unwrap(), before, "own writes");
        cli.add_account("a@example.test", "$argon2id$a").unwrap();
        assert_ne!(
            server.version().unwrap(),
            before,
            "another connection's write"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn quota_overrides_and_counters_round_trip() {
        let (store, dir) = store("quotas");
        store.add_account("a@example.test", "$argon2id$a").unwrap();
        store.add_account("b@example.test", "$argon2id$b").unwrap();
        assert_eq!(
            store.account_quota_overrides("a@example.test").unwrap(),
            QuotaOverrides::default()
        );
        assert!(store.quota_overrides().unwrap().is_empty());
        let own = QuotaOverrides {
            messages_per_hour: Some(0),
            recipients_per_day: Some(500),
        };
        store.set_quota_overrides("a@example.test", own).unwrap();
        assert_eq!(
            store.account_quota_overrides("a@example.test").unwrap(),
            own
        );
        assert_eq!(
            store.quota_overrides().unwrap(),
            [("a@example.test".to_string(), own)]
        );
        assert!(matches!(
            store.set_quota_overrides("nobody@example.test", own),
            Err(StoreError::NoSuchAccount(_))
        ));

        let window = |start, used| Window { start, used };
        let a = Usage {
            messages: window(100, 2),
            recipients: window(50, 9),
        };
        let b = Usage {
            messages: window(7, 1),
            recipients: window(7, 1),
        };
        store
            .save_quota_usage(&[("a@example.test".into(), a), ("b@example.test".into(), b)])
            .unwrap();
        let a = Usage {
            messages: window(200, 1),
            ..a
        };
        store
            .save_quota_usage(&[("a@example.test".into(), a)])
            .unwrap();
        assert_eq!(
            store.quota_usage().unwrap(),
            [
                ("a@example.test".to_string(), a),
                ("b@example.test".to_string(), b)
            ]
        );
        assert_eq!(store.quota_usage_of("b@example.test").unwrap(), b);
        store.remove_account("b@example.test").unwrap();
        assert_eq!(
            store.quota_usage_of("b@example.test").unwrap(),
            Usage::default()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, h)| (a.to_string(), h.to_string()))
            .collect()
    }

    #[test]
    fn upsert_creates_and_replaces_in_one_transaction() {
        let (store, dir) = store("upsert");
        store.add_domain("example.test", None, None).unwrap();
        store
            .add_account("old@example.test", "$argon2id$old")
            .unwrap();
        store.set_enabled("old@example.test", false).unwrap();
        store
            .add_alias("old@example.test", "sales@example.test")
            .unwrap();
        let summary = store
            .upsert_accounts(
                &rows(&[
                    ("old@example.test", "$argon2id$new"),
                    ("a@example.test", "$argon2id$a"),
                ]),
                false,
            )
            .unwrap();
        assert_eq!(
            summary,
            WriteSummary {
                created: 1,
                updated: 1,
                domains_created: vec![]
            }
        );
        let old = store.login("old@example.test", "x").unwrap().unwrap();
        assert_eq!(
            (old.password_hash.as_str(), old.enabled),
            ("$argon2id$new", false)
        );
        assert_eq!(
            store.account("old@example.test").unwrap().unwrap().aliases,
            ["sales@example.test"]
        );

        // An unknown domain in the last row: nothing of the batch is written.
        let error = store
            .upsert_accounts(
                &rows(&[
                    ("b@example.test", "$argon2id$b"),
                    ("a@example.test", "$argon2id$changed"),
                    ("c@unknown.test", "$argon2id$c"),
                ]),
                false,
            )
            .unwrap_err();
        assert_eq!(
            error,
            StoreError::Invalid(
                "domain unknown.test not found; add it with `portcullis domains add unknown.test` or pass --create-domains".into()
            )
        );
        assert_eq!(store.login("b@example.test", "x").unwrap(), None);
        assert_eq!(
            store
                .login("a@example.test", "x")
                .unwrap()
                .unwrap()
                .password_hash,
            "$argon2id$a"
        );

        let summary = store
            .upsert_accounts(
                &rows(&[
                    ("c@unknown.test", "$argon2id$c"),
                    ("d@unknown.test", "$argon2id$d"),
                ]),
                true,
            )
            .unwrap();
        assert_eq!(summary.created, 2);
        assert_eq!(summary.domains_created, ["unknown.test"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn create_accounts_refuses_the_whole_batch_if_one_exists() {
        let (store, dir) = store("create-batch");
        store
            .add_account("taken@example.test", "$argon2id$t")
            .unwrap();
        assert_eq!(
            store.create_accounts(
                &rows(&[
                    ("new@example.test", "$argon2id$n"),
                    ("taken@example.test", "$argon2id$x")
                ]),
                false
            ),
            Err(StoreError::Exists("taken@example.test".into()))
        );
        assert_eq!(store.login("new@example.test", "x").unwrap(), None);
        assert_eq!(
            store
                .existing_accounts(&["new@example.test", "taken@example.test"])
                .unwrap(),
            HashSet::from(["taken@example.test".to_string()])
        );
        let summary = store
            .create_accounts(&rows(&[("n@fresh.test", "$argon2id$n")]), true)
            .unwrap();
        assert_eq!((summary.created, summary.domains_created.len()), (1, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn domain_fields_are_updated_only_when_given() {
        let (store, dir) = store("domain-update");
        let files = CertificateFiles {
            chain: "/etc/certs/a.test/fullchain.pem".into(),
            key: "/etc/certs/a.test/key.pem".into(),
        };
        assert!(store.add_domain("a.test", None, Some(&files)).unwrap());
        assert!(
            !store
                .add_domain("a.test", Some("box.a.test"), None)
                .unwrap()
        );
        let domain = store.domain("a.test").unwrap().unwrap();
        assert_eq!(
            (domain.host.as_deref(), domain.certificate.as_ref()),
            (Some("box.a.test"), Some(&files))
        );
        let renewed = CertificateFiles {
            chain: "/etc/certs/a.test/new.pem".into(),
            key: "/etc/certs/a.test/new-key.pem".into(),
        };
        assert!(!store.add_domain("a.test", None, Some(&renewed)).unwrap());
        let domain = store.domain("a.test").unwrap().unwrap();
        assert_eq!(
            (domain.host.as_deref(), domain.certificate),
            (Some("box.a.test"), Some(renewed))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_serving_host_is_the_host_of_the_accounts_domain() {
        let (store, dir) = store("serving-host");
        store
            .add_domain("a.test", Some("box.a.test"), None)
            .unwrap();
        store.add_account("x@a.test", "$argon2id$x").unwrap();
        store.add_account("y@b.test", "$argon2id$y").unwrap();
        assert_eq!(
            store.serving_host("x@a.test").unwrap().as_deref(),
            Some("box.a.test")
        );
        assert_eq!(store.serving_host("y@b.test").unwrap(), None);
        assert_eq!(store.serving_host("nobody@a.test").unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn domains_and_enabled_accounts_with_hosts() {
        let (store, dir) = store("export");
        store
            .add_domain("a.test", Some("box.a.test"), None)
            .unwrap();
        store.add_account("y@a.test", "$argon2id$y").unwrap();
        store.add_account("x@a.test", "$argon2id$x").unwrap();
        store.add_account("z@b.test", "$argon2id$z").unwrap();
        store.add_account("off@b.test", "$argon2id$o").unwrap();
        store.set_enabled("off@b.test", false).unwrap();
        assert_eq!(
            store.domain("a.test").unwrap().unwrap().host.as_deref(),
            Some("box.a.test")
        );
        assert_eq!(store.domain("c.test").unwrap(), None);
        let host = |h: &str| Some(h.to_string());
        assert_eq!(
            store.enabled_accounts_with_hosts(None).unwrap(),
            [
                ("x@a.test".to_string(), host("box.a.test")),
                ("y@a.test".to_string(), host("box.a.test")),
                ("z@b.test".to_string(), None)
            ]
        );
        assert_eq!(
            store
                .enabled_accounts_with_hosts(Some("b.test"))
                .unwrap()
                .len(),
            1
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
