//! `portcullis accounts quota`, and the quota lines of `accounts show`.

use crate::timefmt::unix_now;
use std::str::FromStr;

use super::Failure;
use super::accounts::store_failure;
use crate::accounts::SqliteStore;
use crate::accounts::report::{self, QuotaView};
use crate::config::QuotaConfig;

/// A quota as given on the command line: a number (0 for no limit) or `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Default,
    Own(u64),
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(text: &str) -> Result<Limit, String> {
        if text.eq_ignore_ascii_case("default") {
            return Ok(Limit::Default);
        }
        text.parse()
            .map(Limit::Own)
            .map_err(|_| format!("{text:?} is neither a number (0 for no limit) nor \"default\""))
    }
}

impl Limit {
    fn stored(self) -> Option<u64> {
        match self {
            Limit::Default => None,
            Limit::Own(limit) => Some(limit),
        }
    }
}

/// Changes the limits given, keeps the others, and prints what now applies.
pub fn set(
    store: &SqliteStore,
    email: &str,
    messages_per_hour: Option<Limit>,
    recipients_per_day: Option<Limit>,
    defaults: &QuotaConfig,
) -> Result<(), Failure> {
    let mut own = store
        .account_quota_overrides(email)
        .map_err(store_failure)?;
    if let Some(limit) = messages_per_hour {
        own.messages_per_hour = limit.stored();
    }
    if let Some(limit) = recipients_per_day {
        own.recipients_per_day = limit.stored();
    }
    store
        .set_quota_overrides(email, own)
        .map_err(store_failure)?;
    println!("Quotas of {email} (a running server applies them within a second):");
    show(store, email, defaults)
}

/// Prints both quotas of the account as they stand now.
pub fn show(store: &SqliteStore, email: &str, defaults: &QuotaConfig) -> Result<(), Failure> {
    let views = report::quota_views(store, email, defaults, unix_now()).map_err(store_failure)?;
    print(&views);
    Ok(())
}

/// `quota: messages per hour: 3 of 100 used, resets 2026-11-22T15:02:11Z (server default)`.
pub fn print(views: &[QuotaView]) {
    for view in views {
        println!("quota: {}", describe(view));
    }
}

fn describe(view: &QuotaView) -> String {
    let name = view.quota.replace('_', " ");
    let origin = if view.own {
        "the account's own"
    } else {
        "server default"
    };
    let used = view.used;
    if view.limit == 0 {
        return format!("{name}: no limit ({origin}); {used} used in the current window");
    }
    let resets = view.resets_at.as_ref().map_or_else(
        || "window not started".to_string(),
        |at| format!("resets {at}"),
    );
    format!("{name}: {used} of {} used, {resets} ({origin})", view.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_numbers_or_default() {
        assert_eq!("default".parse(), Ok(Limit::Default));
        assert_eq!("0".parse(), Ok(Limit::Own(0)));
        assert_eq!("250".parse(), Ok(Limit::Own(250)));
        assert!(
            "-1".parse::<Limit>()
                .unwrap_err()
                .contains("neither a number")
        );
    }

    #[test]
    fn a_quota_line_says_use_limit_reset_and_origin() {
        let view = |quota, limit, own, used, resets_at: Option<&str>| QuotaView {
            quota,
            limit,
            own,
            used,
            resets_at: resets_at.map(String::from),
        };
        assert_eq!(
            describe(&view(
                "messages_per_hour",
                100,
                false,
                3,
                Some("1970-01-01T01:16:40Z")
            )),
            "messages per hour: 3 of 100 used, resets 1970-01-01T01:16:40Z (server default)"
        );
        assert_eq!(
            describe(&view("messages_per_hour", 100, true, 0, None)),
            "messages per hour: 0 of 100 used, window not started (the account's own)"
        );
        assert_eq!(
            describe(&view(
                "recipients_per_day",
                0,
                false,
                3,
                Some("1970-01-02T00:16:40Z")
            )),
            "recipients per day: no limit (server default); 3 used in the current window"
        );
    }
}
