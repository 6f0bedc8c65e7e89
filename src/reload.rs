//! What a SIGHUP may change in a running server: the rules, free of signals and sockets.
//!
//! Limits, timeouts, `[policy] check_header_from`, `[tls]` (whose files the server reads again
//! before applying anything) and each listener's host name and trusted networks apply to the
//! connections accepted after the reload (sessions in progress keep the
//! settings they started with). Everything else is wired into state built once at start
//! (sockets bound before privileges are dropped, the user run as, the spool, the queue, the login and quota
//! books), so a change there refuses the whole reload: half a reload would leave the operator
//! unsure which file is in effect.

use crate::config::{Config, ListenerConfig};

/// The outcome of comparing the running configuration with the file as it is now.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Apply the new configuration; the keys (or sections) that differ, for the log.
    Apply(Vec<&'static str>),
    /// Keep the running configuration: these keys (or sections) change only with a restart.
    NeedsRestart(Vec<&'static str>),
}

/// Compares `running` with `new` (both already valid).
pub fn plan(running: &Config, new: &Config) -> Plan {
    let restart_only = [
        // Also the EHLO name of delivery and the reporting MTA of bounces, built at start.
        ("hostname", running.hostname == new.hostname),
        ("data_dir", running.data_dir == new.data_dir),
        (
            "listener (addresses, modes, starttls)",
            same_sockets(&running.listeners, &new.listeners),
        ),
        ("auth", running.auth == new.auth),
        (
            "policy.require_host_match",
            running.policy.require_host_match == new.policy.require_host_match,
        ),
        ("quotas", running.quotas == new.quotas),
        ("delivery", running.delivery == new.delivery),
        ("route", running.routes == new.routes),
        ("log", running.log == new.log),
        ("server", running.server == new.server),
        // Its socket is bound at start, and its token read with the file.
        ("http", running.http == new.http),
        // One budget holds every session's reservations; swapping it would forget them.
        (
            "limits.max_memory_in_flight",
            running.limits.max_memory_in_flight == new.limits.max_memory_in_flight,
        ),
        // The connection limiter counts the connections open now under the limits it was
        // built with.
        (
            "limits.max_connections",
            running.limits.max_connections == new.limits.max_connections,
        ),
        (
            "limits.max_connections_per_ip",
            running.limits.max_connections_per_ip == new.limits.max_connections_per_ip,
        ),
    ];
    let needs_restart = differing(&restart_only);
    if !needs_restart.is_empty() {
        return Plan::NeedsRestart(needs_restart);
    }
    let live = [
        ("limits", running.limits == new.limits),
        ("timeouts", running.timeouts == new.timeouts),
        (
            "policy.check_header_from",
            running.policy.check_header_from == new.policy.check_header_from,
        ),
        ("listener", running.listeners == new.listeners),
        ("tls", running.tls == new.tls),
    ];
    Plan::Apply(differing(&live))
}

fn differing(comparisons: &[(&'static str, bool)]) -> Vec<&'static str> {
    comparisons
        .iter()
        .filter(|(_, same)| !same)
        .map(|(key, _)| *key)
        .collect()
}

/// The same sockets, in the same order: what a listener binds cannot change without a restart.
fn same_sockets(running: &[ListenerConfig], new: &[ListenerConfig]) -> bool {
    running.len() == new.len()
        && running.iter().zip(new).all(|(old, new)| {
            old.address == new.address && old.mode == new.mode && old.starttls == new.starttls
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn base() -> Config {
        Config::embedded_default()
    }

    #[test]
    fn an_unchanged_file_applies_with_nothing_to_report() {
        assert_eq!(plan(&base(), &base()), Plan::Apply(vec![]));
    }

    #[test]
    fn limits_timeouts_hosts_and_trusted_networks_apply_live() {
        let mut new = base();
        new.limits.max_recipients = 5;
        new.timeouts.command = std::time::Duration::from_secs(9);
        new.listeners[1].hostname = Some("other.example.test".into());
        new.policy.check_header_from = true;
        new.listeners[0].trusted_networks = vec!["192.0.2.0/24".parse::<Cidr>().unwrap()];
        assert_eq!(
            plan(&base(), &new),
            Plan::Apply(vec![
                "limits",
                "timeouts",
                "policy.check_header_from",
                "listener"
            ])
        );
    }

    #[test]
    fn a_listener_address_needs_a_restart_and_refuses_the_live_changes_too() {
        let mut new = base();
        new.limits.max_recipients = 5;
        new.listeners[0].address = "127.0.0.1:3587".parse().unwrap();
        assert_eq!(
            plan(&base(), &new),
            Plan::NeedsRestart(vec!["listener (addresses, modes, starttls)"])
        );
    }

    #[test]
    fn a_removed_listener_needs_a_restart() {
        let mut new = base();
        new.listeners.pop();
        assert_eq!(
            plan(&base(), &new),
            Plan::NeedsRestart(vec!["listener (addresses, modes, starttls)"])
        );
    }

    #[test]
    fn the_hostname_data_dir_and_delivery_need_a_restart() {
        let mut new = base();
        new.hostname = "other.example.test".into();
        new.data_dir = "/elsewhere".into();
        new.delivery.enabled = !new.delivery.enabled;
        assert_eq!(
            plan(&base(), &new),
            Plan::NeedsRestart(vec!["hostname", "data_dir", "delivery"])
        );
    }

    #[test]
    fn the_memory_budget_needs_a_restart() {
        let mut new = base();
        new.limits.max_memory_in_flight += 1;
        assert_eq!(
            plan(&base(), &new),
            Plan::NeedsRestart(vec!["limits.max_memory_in_flight"])
        );
        let mut new = base();
        new.limits.max_connections += 1;
        new.limits.max_connections_per_ip += 1;
        assert_eq!(
            plan(&base(), &new),
            Plan::NeedsRestart(vec![
                "limits.max_connections",
                "limits.max_connections_per_ip"
            ])
        );
    }
}
