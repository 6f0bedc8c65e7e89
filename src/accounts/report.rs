//! One account as operators see it: `portcullis accounts show` (text or `--json`) and
//! `GET /api/accounts/EMAIL` are both built from [`report`], so they cannot disagree.

use serde::Serialize;

use super::{Account, SqliteStore};
use crate::auth::StoreError;
use crate::config::QuotaConfig;
use crate::policy::quotas::{self, DAY, HOUR, Window};
use crate::timefmt::rfc3339_unix;

/// How many failed logins a report lists.
pub const SHOWN_FAILURES: usize = 20;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AccountReport {
    pub address: String,
    pub domain: String,
    pub enabled: bool,
    /// RFC 3339, like every time of the report.
    pub created: String,
    pub last_login: Option<String>,
    pub aliases: Vec<String>,
    pub granted_domains: Vec<String>,
    pub app_passwords: Vec<AppPasswordView>,
    pub quotas: Vec<QuotaView>,
    /// Networks from which the account's logins are locked now.
    pub locks: Vec<Lock>,
    /// Networks refused every login now (they failed for many user names), among those this
    /// account's recent failures came from.
    pub refused_networks: Vec<Lock>,
    /// The latest first.
    pub recent_failures: Vec<FailureView>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AppPasswordView {
    pub label: String,
    pub created: String,
    pub revoked: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct QuotaView {
    /// `messages_per_hour` or `recipients_per_day`, as in `[quotas]`.
    pub quota: &'static str,
    /// 0: no limit.
    pub limit: u64,
    /// The account's own limit rather than the server default.
    pub own: bool,
    pub used: u64,
    /// When the current window ends; `null` when nothing is counted in it.
    pub resets_at: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Lock {
    pub network: String,
    pub until: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FailureView {
    pub first: String,
    pub last: String,
    pub network: String,
    pub client: String,
    pub reason: String,
    pub attempts: u64,
}

/// The account `email` at `now` (unix seconds), or `None` when there is no such account.
pub fn report(
    store: &SqliteStore,
    email: &str,
    defaults: &QuotaConfig,
    now: u64,
) -> Result<Option<AccountReport>, StoreError> {
    let Some(Account {
        address,
        domain,
        enabled,
        created,
        last_login,
        aliases,
        grants,
    }) = store.account(email)?
    else {
        return Ok(None);
    };
    let app_passwords = store
        .app_passwords(email)?
        .into_iter()
        .map(|app| AppPasswordView {
            label: app.label,
            created: rfc3339_unix(app.created),
            revoked: app.revoked.map(rfc3339_unix),
        })
        .collect();
    let failures = store.recent_failures(email, SHOWN_FAILURES)?;
    let refused_networks = store
        .refused_networks(now)?
        .into_iter()
        .filter(|(network, _)| failures.iter().any(|f| &f.network == network))
        .map(lock)
        .collect();
    Ok(Some(AccountReport {
        address,
        domain,
        enabled,
        created: rfc3339_unix(created),
        last_login: last_login.map(rfc3339_unix),
        aliases,
        granted_domains: grants,
        app_passwords,
        quotas: quota_views(store, email, defaults, now)?,
        locks: store
            .login_locks(email, now)?
            .into_iter()
            .map(lock)
            .collect(),
        refused_networks,
        recent_failures: failures
            .into_iter()
            .map(|f| FailureView {
                first: rfc3339_unix(f.first),
                last: rfc3339_unix(f.last),
                network: f.network,
                client: f.client,
                reason: f.reason,
                attempts: f.attempts,
            })
            .collect(),
    }))
}

/// Both quotas of the account: the limit in force, whose it is, and the current window.
pub fn quota_views(
    store: &SqliteStore,
    email: &str,
    defaults: &QuotaConfig,
    now: u64,
) -> Result<Vec<QuotaView>, StoreError> {
    let own = store.account_quota_overrides(email)?;
    let usage = store.quota_usage_of(email)?;
    let limits = quotas::effective_limits(defaults, own);
    Ok(vec![
        quota_view(
            "messages_per_hour",
            limits.messages_per_hour,
            own.messages_per_hour.is_some(),
            &usage.messages,
            HOUR,
            now,
        ),
        quota_view(
            "recipients_per_day",
            limits.recipients_per_day,
            own.recipients_per_day.is_some(),
            &usage.recipients,
            DAY,
            now,
        ),
    ])
}

fn quota_view(
    quota: &'static str,
    limit: u64,
    own: bool,
    window: &Window,
    length: u64,
    now: u64,
) -> QuotaView {
    let used = window.used_at(now, length);
    QuotaView {
        quota,
        limit,
        own,
        used,
        resets_at: (used > 0).then(|| rfc3339_unix(window.resets_at(now, length))),
    }
}

fn lock((network, until): (String, u64)) -> Lock {
    Lock {
        network,
        until: rfc3339_unix(until),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_with_nothing_counted_has_no_reset_time() {
        let empty = quota_view(
            "messages_per_hour",
            10,
            false,
            &Window::default(),
            HOUR,
            100,
        );
        assert_eq!(empty.used, 0);
        assert_eq!(empty.resets_at, None);
        let window = Window {
            start: 1_796_205_600,
            used: 3,
        };
        let view = quota_view("recipients_per_day", 0, true, &window, DAY, 1_796_205_700);
        assert_eq!(view.used, 3);
        assert_eq!(view.resets_at.as_deref(), Some("2026-12-03T10:00:00Z"));
        // A window that has passed counts nothing any more.
        let passed = quota_view("messages_per_hour", 10, false, &window, HOUR, 1_796_209_201);
        assert_eq!((passed.used, passed.resets_at), (0, None));
    }
}
