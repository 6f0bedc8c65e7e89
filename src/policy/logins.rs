//! Brute-force protection for logins, without I/O: every decision is a pure function of what
//! happened before and of the `now` the caller passes in (unix seconds), so each rule is tested
//! with a fake clock.
//!
//! Failures are counted per (user name, client network) pair and per client network across all
//! user names. A network is an IPv4 /24 or an IPv6 /64 by default: one customer, office or
//! cloud tenant usually holds at least that much, and counting single addresses would give an
//! attacker with a /64 2^64 fresh starts.
//!
//! - A pair's failures past `delay_after_failures` are answered after a growing delay, and at
//!   `lock_after_failures` the pair is locked for `lock_seconds`: every attempt of that user
//!   from that network is refused (454) without checking the password, even a right one. Other
//!   networks are not affected, so an attacker cannot lock the real user out from elsewhere.
//! - An exact address the user name logged in from within `remember_success` is a scope of its
//!   own, with its own count and lock: a neighbour in the same network (a NAT'd office, a cloud
//!   tenant) failing for that name locks the network but not the address known to be the
//!   user's, unless that address itself keeps failing.
//! - Attempts in flight count: at most one password check per (user name, scope) at a time,
//!   and names in flight count towards the network's spraying limit as if they had failed, so
//!   the limits hold however many connections an attacker opens at once.
//! - A network whose failures name `network_refuse_after_accounts` different user names in the
//!   window is spraying: it is slowed on the way, then every login from it is refused (421)
//!   for `network_refuse_seconds`, whichever user name it gives. Failures for a user name that
//!   the network logged in as recently are typing mistakes, not spraying, and do not count;
//!   such names are not refused with the network either (their own pair limit still applies).
//! - The same wrong password again within the window counts once (a phone retrying an old
//!   password every few minutes is one mistake, not a thousand guesses). To notice repeats the
//!   guard keeps an HMAC tag of each counted wrong password under a key that exists only in
//!   this process; never the password.
//! - User names are never looked up here: an unknown user name is counted, delayed, locked and
//!   refused exactly like an account, so none of it tells which accounts exist.
//!
//! Memory is bounded: user names are kept as 16-byte keyed hashes, a pair holds at most about
//! `lock_after_failures` tags, a network at most about `network_refuse_after_accounts` names,
//! and the number of pairs and networks is capped, evicting the least recently seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ring::hmac;

use crate::config::Cidr;

/// The rules' numbers (see `[auth]` in the configuration). Times are seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPolicy {
    /// How long a failure counts.
    pub failure_window: u64,
    /// Failures of a pair (or names failed from a network) answered without delay.
    pub delay_after_failures: u32,
    /// The first delay; each further failure doubles it, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub lock_after_failures: u32,
    pub lock_seconds: u64,
    pub network_refuse_after_accounts: u32,
    pub network_refuse_seconds: u64,
    /// How long a successful login keeps a network known for that user name.
    pub remember_success: u64,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Caps on what is tracked; the least recently seen entries are evicted beyond them.
    pub max_pairs: usize,
    pub max_networks: usize,
}

/// The caps on what a running server tracks (not configurable: they bound memory, and an
/// attack large enough to reach them is evicted least recently seen first). The other numbers
/// come from `[auth]`, whose defaults live in [`crate::config::AuthConfig`].
pub const MAX_PAIRS: usize = 100_000;
pub const MAX_NETWORKS: usize = 50_000;

/// The made-up user name `portcullis check` logs in with to see that made-up credentials are
/// refused. The guard answers it as a wrong password at once, without a password check, and
/// never counts it: otherwise each run of `check` would be one more sprayed name, and a few
/// dozen runs would refuse the operator's own network. It costs an attacker's guessing nothing
/// either (no account has this name: `.invalid` is reserved, RFC 2606).
pub const CHECK_PROBE_USER: &str = "portcullis-check-probe@example.invalid";

/// A user name as the guard knows it: a keyed hash, so long or many names cost little.
type AccountKey = [u8; 16];
/// A keyed hash of (user name, wrong password).
type Tag = [u8; 16];

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This user name from this network (or address), until then (reply 454).
    Locked { until: u64 },
    /// Every login from this network, until then (reply 421 and close).
    NetworkRefused { until: u64 },
    /// Not yet: another attempt of this user name from here is being checked, or enough other
    /// user names from this network are being checked to reach the spraying limit if they all
    /// fail. The driver asks again once an attempt in flight has ended.
    Busy,
    /// [`CHECK_PROBE_USER`]: answer as a wrong password (535), uncounted and unchecked.
    Probe,
}

/// An attempt let through to the password check. Give it back with [`LoginGuard::release`]
/// once it is answered (after any delay): until then it counts as in progress.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    account: AccountKey,
    network: Cidr,
    /// The client's exact address, as a one-address network.
    host: Cidr,
    /// What the attempt is counted under: the network, or the exact address when the user
    /// name logged in from that address recently (see [`LoginGuard::admit`]).
    scope: Cidr,
    /// The user name is one of the network's names in flight (not known there, not yet failed).
    spraying_candidate: bool,
}

impl Ticket {
    pub fn network(&self) -> Cidr {
        self.network
    }

    /// What the attempt is counted under: the network, or the exact address.
    pub fn scope(&self) -> Cidr {
        self.scope
    }
}

/// What a failed attempt changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// False for a wrong password already counted for this pair within the window.
    pub counted: bool,
    /// How long to wait before answering it.
    pub delay: Duration,
    /// This failure locked the pair, until then.
    pub locked_until: Option<u64>,
    /// What the lock applies to: the network, or the exact address of a known one.
    pub scope: Cidr,
    /// This failure made the network refused, until then.
    pub network_refused_until: Option<u64>,
}

#[derive(Debug, Default)]
struct Pair {
    /// Counted failures in the window: when, and the tag of the password (none when restored).
    failures: Vec<(u64, Option<Tag>)>,
    /// 0 when never locked.
    locked_until: u64,
    last_success: Option<u64>,
    last_seen: u64,
    /// Attempts admitted and not yet released (at most one: see [`LoginGuard::admit`]).
    in_progress: u32,
}

#[derive(Debug, Default)]
struct Network {
    /// User names with a counted failure from this network in the window, and when.
    accounts: Vec<(AccountKey, u64)>,
    refused_until: u64,
    last_seen: u64,
    /// User names being checked now that would count towards spraying if they failed.
    in_flight: Vec<AccountKey>,
}

pub struct LoginGuard {
    policy: LoginPolicy,
    key: hmac::Key,
    /// Keyed by user name and scope: a network, or the exact address of a known one.
    pairs: HashMap<(AccountKey, Cidr), Pair>,
    networks: HashMap<Cidr, Network>,
}

impl LoginGuard {
    /// `secret` keys the hashes of user names and wrong passwords; it should be random and
    /// never leave the process.
    pub fn new(policy: LoginPolicy, secret: &[u8]) -> LoginGuard {
        LoginGuard {
            policy,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            pairs: HashMap::new(),
            networks: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    /// The network `ip` is counted under.
    pub fn network_of(&self, ip: IpAddr) -> Cidr {
        let ip = super::canonical(ip);
        let prefix = match ip {
            IpAddr::V4(_) => self.policy.ipv4_prefix,
            IpAddr::V6(_) => self.policy.ipv6_prefix,
        };
        Cidr::around(ip, prefix)
    }

    /// Before checking a password: refused, or let through with a ticket. `username` must be
    /// canonical (lower-cased); it is not looked up.
    ///
    /// An attempt is counted under the exact address when the user name logged in from it
    /// within `remember_success`, else under the network: a neighbour in the same network
    /// failing for that name then locks the network, not the address that is known to be the
    /// user's. A user name that logged in from the network is not refused with the network
    /// (spraying is about names that never worked there).
    ///
    /// At most one attempt per (user name, scope) is in flight, and user names in flight from a
    /// network count towards its spraying limit as if they had failed: otherwise an attacker
    /// with many connections would have many guesses checked before the delay, the lock or the
    /// refusal could apply to any of them.
    pub fn admit(&mut self, username: &str, ip: IpAddr, now: u64) -> Result<Ticket, Refusal> {
        let network = self.network_of(ip);
        let account = self.account_key(username);
        let host = host_of(ip);
        let scope = self.scope_of(account, host, network, now);
        let known_here = scope != network || self.known(account, network, now);
        if let Some(state) = self.networks.get_mut(&network) {
            state.last_seen = now;
            if state.refused_until > now && !known_here {
                return Err(Refusal::NetworkRefused {
                    until: state.refused_until,
                });
            }
        }
        if username == CHECK_PROBE_USER {
            return Err(Refusal::Probe);
        }
        let busy_until = now + self.delay_for(usize::MAX).as_secs().max(1);
        let suspicious = self.policy.delay_after_failures.max(1) as usize;
        let pair = self.pair(account, scope, now);
        if pair.locked_until > now {
            return Err(Refusal::Locked {
                until: pair.locked_until,
            });
        }
        // A clean pair (a client opening several connections at once) waits its turn; a
        // suspicious one is refused at once, as if locked until its longest delay is over.
        if pair.in_progress > 0 {
            return Err(match pair.failures.len() >= suspicious {
                true => Refusal::Locked { until: busy_until },
                false => Refusal::Busy,
            });
        }
        let spraying_candidate = !known_here && self.admit_name_in_flight(account, network, now)?;
        if let Some(pair) = self.pairs.get_mut(&(account, scope)) {
            pair.in_progress += 1;
        }
        Ok(Ticket {
            account,
            network,
            host,
            scope,
            spraying_candidate,
        })
    }

    /// Names failed from the network and names in flight from it together stay within the
    /// spraying limit, so that a burst of names at once meets the refusal as soon as the names
    /// checked so far reach it. Returns whether the name joined those in flight.
    fn admit_name_in_flight(
        &mut self,
        account: AccountKey,
        network: Cidr,
        now: u64,
    ) -> Result<bool, Refusal> {
        let limit = self.policy.network_refuse_after_accounts as usize;
        let state = self.network(network, now);
        let failed_here = |key: &AccountKey| state.accounts.iter().any(|(k, _)| k == key);
        if failed_here(&account) {
            return Ok(false);
        }
        // A name that has failed and waits out its delay is still in flight: count it once.
        // With none in flight one name is let through even at the limit (after a refusal has
        // expired): its failure refuses the network again at once.
        let in_flight = state.in_flight.iter().filter(|k| !failed_here(k)).count();
        if in_flight > 0 && state.accounts.len() + in_flight >= limit {
            return Err(Refusal::Busy);
        }
        state.in_flight.push(account);
        Ok(true)
    }

    /// The exact address when the user name logged in from it recently (and the network is
    /// wider than one address), else the network.
    fn scope_of(&self, account: AccountKey, host: Cidr, network: Cidr, now: u64) -> Cidr {
        match host != network && self.known(account, host, now) {
            true => host,
            false => network,
        }
    }

    /// Whether the user name logged in from `scope` within `remember_success`.
    fn known(&self, account: AccountKey, scope: Cidr, now: u64) -> bool {
        self.pairs.get(&(account, scope)).is_some_and(|pair| {
            pair.last_success
                .is_some_and(|at| now.saturating_sub(at) < self.policy.remember_success)
        })
    }

    /// The password of an admitted attempt was wrong (or the user name unknown, or the account
    /// disabled: all the same here).
    pub fn failed(&mut self, ticket: &Ticket, password: &str, now: u64) -> Failure {
        let tag = self.tag(&ticket.account, password);
        self.record_failure(ticket.account, ticket.scope, ticket.network, Some(tag), now)
    }

    /// The attempt logged in. Returns whether this is news worth recording durably (the first
    /// success of the pair in a while, or one that cleared failures).
    pub fn succeeded(&mut self, ticket: &Ticket, now: u64) -> bool {
        let (network, host) = (ticket.network, ticket.host);
        self.record_success(ticket.account, ticket.scope, [network, host], now)
    }

    /// The attempt is answered: it no longer counts as in progress.
    pub fn release(&mut self, ticket: Ticket) {
        if let Some(pair) = self.pairs.get_mut(&(ticket.account, ticket.scope)) {
            pair.in_progress = pair.in_progress.saturating_sub(1);
        }
        if ticket.spraying_candidate
            && let Some(state) = self.networks.get_mut(&ticket.network)
            && let Some(at) = state.in_flight.iter().position(|k| *k == ticket.account)
        {
            state.in_flight.swap_remove(at);
        }
    }

    /// Replays a counted failure from the durable record (at start-up), at its own time and
    /// under the scope it had then.
    pub fn restore_failure(&mut self, username: &str, ip: IpAddr, at: u64) {
        let account = self.account_key(username);
        let (network, host) = (self.network_of(ip), host_of(ip));
        let scope = self.scope_of(account, host, network, at);
        self.record_failure(account, scope, network, None, at);
    }

    /// Replays a successful login from the durable record, counted under the exact address
    /// (`address_only`) or under the network, as it was then (see [`Ticket::scope`]).
    pub fn restore_success(&mut self, username: &str, ip: IpAddr, at: u64, address_only: bool) {
        let account = self.account_key(username);
        let (network, host) = (self.network_of(ip), host_of(ip));
        let scope = if address_only { host } else { network };
        self.record_success(account, scope, [network, host], at);
    }

    /// The administrator cleared the user name: its locks and failure counts are gone, from
    /// every network and address, and it no longer counts towards any network's spraying
    /// limit. Returns how many pairs had any.
    pub fn unlock(&mut self, username: &str) -> usize {
        let account = self.account_key(username);
        let mut cleared = 0;
        for ((key, _), pair) in &mut self.pairs {
            if *key == account && (pair.locked_until != 0 || !pair.failures.is_empty()) {
                pair.failures.clear();
                pair.locked_until = 0;
                cleared += 1;
            }
        }
        for network in self.networks.values_mut() {
            network.accounts.retain(|(key, _)| *key != account);
        }
        cleared
    }

    /// The administrator lifted the refusal of the networks within `within`, and forgot the
    /// names that failed from them (else the next failure would refuse again at once). Locks
    /// of single user names stay. Returns how many networks were refused.
    pub fn unlock_network(&mut self, within: Cidr, now: u64) -> usize {
        let mut lifted = 0;
        for (network, state) in &mut self.networks {
            if within.covers(network) {
                lifted += usize::from(state.refused_until > now);
                state.refused_until = 0;
                state.accounts.clear();
            }
        }
        lifted
    }

    /// The scopes (networks or addresses) from which `username` is locked at `now`, with the
    /// end of each lock.
    #[cfg(test)]
    pub fn locks(&self, username: &str, now: u64) -> Vec<(Cidr, u64)> {
        let account = self.account_key(username);
        let mut locks: Vec<(Cidr, u64)> = self
            .pairs
            .iter()
            .filter(|((key, _), pair)| *key == account && pair.locked_until > now)
            .map(|((_, scope), pair)| (*scope, pair.locked_until))
            .collect();
        locks.sort_by_key(|(scope, until)| (*until, scope.to_string()));
        locks
    }

    /// Networks refused at `now`, with the end of each refusal.
    #[cfg(test)]
    pub fn refused_networks(&self, now: u64) -> Vec<(Cidr, u64)> {
        let mut refused: Vec<(Cidr, u64)> = self
            .networks
            .iter()
            .filter(|(_, state)| state.refused_until > now)
            .map(|(network, state)| (*network, state.refused_until))
            .collect();
        refused.sort_by_key(|(network, until)| (*until, network.to_string()));
        refused
    }

    /// How many pairs and networks are tracked (for tests of the caps).
    #[cfg(test)]
    pub fn tracked(&self) -> (usize, usize) {
        (self.pairs.len(), self.networks.len())
    }

    fn record_failure(
        &mut self,
        account: AccountKey,
        scope: Cidr,
        network: Cidr,
        tag: Option<Tag>,
        now: u64,
    ) -> Failure {
        let policy = self.policy.clone();
        let window_start = now.saturating_sub(policy.failure_window);
        let known = self.known(account, scope, now);
        let pair = self.pair(account, scope, now);
        let counted = tag.is_none() || !pair.failures.iter().any(|(_, t)| *t == tag);
        let mut locked_until = None;
        if counted {
            pair.failures.push((now, tag));
            if pair.failures.len() >= policy.lock_after_failures as usize {
                pair.locked_until = now + policy.lock_seconds;
                locked_until = Some(pair.locked_until);
            }
        }
        let pair_failures = pair.failures.len();
        let mut network_refused_until = None;
        let accounts = if counted && !known {
            let state = self.network(network, now);
            match state.accounts.iter_mut().find(|(key, _)| *key == account) {
                Some(entry) => entry.1 = now,
                None => state.accounts.push((account, now)),
            }
            if state.accounts.len() >= policy.network_refuse_after_accounts as usize
                && state.refused_until <= now
            {
                state.refused_until = now + policy.network_refuse_seconds;
                network_refused_until = Some(state.refused_until);
            }
            state.accounts.len()
        } else {
            self.networks.get_mut(&network).map_or(0, |state| {
                state.accounts.retain(|(_, at)| *at > window_start);
                state.accounts.len()
            })
        };
        Failure {
            counted,
            delay: self.delay_for(pair_failures.max(accounts)),
            locked_until,
            scope,
            network_refused_until,
        }
    }

    /// A success clears the failures of its own scope and makes its address known. One counted
    /// under a known address leaves the network's failures alone: the user logging in must not
    /// give a neighbour guessing the same name a fresh start.
    fn record_success(
        &mut self,
        account: AccountKey,
        scope: Cidr,
        [network, host]: [Cidr; 2],
        now: u64,
    ) -> bool {
        let pair = self.pair(account, scope, now);
        let news = !pair.failures.is_empty()
            || pair
                .last_success
                .is_none_or(|at| now.saturating_sub(at) >= SUCCESS_REFRESH);
        pair.failures.clear();
        pair.locked_until = 0;
        pair.last_success = Some(now);
        for other in [network, host] {
            if other != scope {
                self.pair(account, other, now).last_success = Some(now);
            }
        }
        if let Some(state) = self.networks.get_mut(&network) {
            state.accounts.retain(|(key, _)| *key != account);
        }
        news
    }

    /// The growing delay for a pair with `failures` counted failures (or a network that failed
    /// for that many names): none up to `delay_after_failures`, then doubling.
    fn delay_for(&self, failures: usize) -> Duration {
        let free = self.policy.delay_after_failures as usize;
        if failures <= free {
            return Duration::ZERO;
        }
        let doublings = (failures - free - 1).min(20) as u32;
        self.policy
            .first_delay
            .saturating_mul(1 << doublings)
            .min(self.policy.max_delay)
    }

    /// The pair's state with failures outside the window forgotten, created if new.
    fn pair(&mut self, account: AccountKey, network: Cidr, now: u64) -> &mut Pair {
        if !self.pairs.contains_key(&(account, network)) {
            self.make_room_for_pair(now);
        }
        let window_start = now.saturating_sub(self.policy.failure_window);
        let pair = self.pairs.entry((account, network)).or_default();
        pair.failures.retain(|(at, _)| *at > window_start);
        pair.last_seen = pair.last_seen.max(now);
        pair
    }

    fn network(&mut self, network: Cidr, now: u64) -> &mut Network {
        if !self.networks.contains_key(&network) {
            self.make_room_for_network(now);
        }
        let window_start = now.saturating_sub(self.policy.failure_window);
        let state = self.networks.entry(network).or_default();
        state.accounts.retain(|(_, at)| *at > window_start);
        state.last_seen = state.last_seen.max(now);
        state
    }

    /// At the cap: forget pairs with nothing left to remember, then the least recently seen.
    fn make_room_for_pair(&mut self, now: u64) {
        if self.pairs.len() < self.policy.max_pairs {
            return;
        }
        let policy = &self.policy;
        let window_start = now.saturating_sub(policy.failure_window);
        self.pairs.retain(|_, pair| {
            pair.in_progress > 0
                || pair.locked_until > now
                || pair.failures.iter().any(|(at, _)| *at > window_start)
                || pair
                    .last_success
                    .is_some_and(|at| now.saturating_sub(at) < policy.remember_success)
        });
        let target = policy.max_pairs - policy.max_pairs / 10 - 1;
        if self.pairs.len() > target {
            let mut by_age: Vec<(u64, (AccountKey, Cidr))> = self
                .pairs
                .iter()
                .map(|(key, pair)| (pair.last_seen, *key))
                .collect();
            by_age.sort_unstable_by_key(|(seen, _)| *seen);
            let excess = self.pairs.len() - target;
            for (_, key) in by_age.into_iter().take(excess) {
                self.pairs.remove(&key);
            }
        }
    }

    fn make_room_for_network(&mut self, now: u64) {
        if self.networks.len() < self.policy.max_networks {
            return;
        }
        let window_start = now.saturating_sub(self.policy.failure_window);
        self.networks.retain(|_, state| {
            state.refused_until > now
                || !state.in_flight.is_empty()
                || state.accounts.iter().any(|(_, at)| *at > window_start)
        });
        let target = self.policy.max_networks - self.policy.max_networks / 10 - 1;
        if self.networks.len() > target {
            let mut by_age: Vec<(u64, Cidr)> = self
                .networks
                .iter()
                .map(|(network, state)| (state.last_seen, *network))
                .collect();
            by_age.sort_unstable_by_key(|(seen, _)| *seen);
            let excess = self.networks.len() - target;
            for (_, network) in by_age.into_iter().take(excess) {
                self.networks.remove(&network);
            }
        }
    }

    fn account_key(&self, username: &str) -> AccountKey {
        self.keyed(&[b"account", username.as_bytes()])
    }

    fn tag(&self, account: &AccountKey, password: &str) -> Tag {
        self.keyed(&[b"password", account, password.as_bytes()])
    }

    fn keyed(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut context = hmac::Context::with_key(&self.key);
        for part in parts {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&context.sign().as_ref()[..16]);
        out
    }
}

/// `ip` as a network of its own, the scope of a known address.
fn host_of(ip: IpAddr) -> Cidr {
    Cidr::around(super::canonical(ip), 128)
}

/// A success is written down again at most this often (unless it cleared failures), so a client
/// that logs in for every message does not cost a write each time.
const SUCCESS_REFRESH: u64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@example.test";
    const T0: u64 = 1_700_000_000;

    fn policy() -> LoginPolicy {
        LoginPolicy {
            failure_window: 3600,
            delay_after_failures: 3,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            lock_after_failures: 10,
            lock_seconds: 900,
            network_refuse_after_accounts: 5,
            network_refuse_seconds: 1800,
            remember_success: 86_400,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            max_pairs: 1000,
            max_networks: 1000,
        }
    }

    fn guard() -> LoginGuard {
        LoginGuard::new(policy(), b"test key")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// One failed attempt with `password`, answered (released) at once.
    fn fail(guard: &mut LoginGuard, user: &str, from: &str, password: &str, now: u64) -> Failure {
        let ticket = guard.admit(user, ip(from), now).expect("admitted");
        let failure = guard.failed(&ticket, password, now);
        guard.release(ticket);
        failure
    }

    /// Whether an attempt is admitted now (released at once).
    fn admits(guard: &mut LoginGuard, user: &str, from: &str, now: u64) -> bool {
        let admitted = guard.admit(user, ip(from), now);
        admitted.map(|ticket| guard.release(ticket)).is_ok()
    }

    fn succeed(guard: &mut LoginGuard, user: &str, from: &str, now: u64) -> bool {
        let ticket = guard.admit(user, ip(from), now).expect("admitted");
        let news = guard.succeeded(&ticket, now);
        guard.release(ticket);
        news
    }

    #[test]
    fn networks_are_ipv4_24_and_ipv6_64_with_mapped_ipv4_as_ipv4() {
        let guard = guard();
        let net = |text| guard.network_of(ip(text)).to_string();
        assert_eq!(net("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(net("::ffff:192.0.2.77"), "192.0.2.0/24");
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    }

    #[test]
    fn delay_grows_after_the_free_failures_and_is_capped() {
        let mut guard = guard();
        let delays: Vec<u64> = (0..9)
            .map(|n| {
                let failure = fail(&mut guard, ALICE, "192.0.2.1", &format!("guess{n}"), T0 + n);
                failure.delay.as_millis() as u64
            })
            .collect();
        assert_eq!(delays, [0, 0, 0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn lock_after_the_limit_refuses_even_the_right_password_until_it_expires() {
        let mut guard = guard();
        for n in 0..9 {
            let failure = fail(&mut guard, ALICE, "192.0.2.1", &format!("guess{n}"), T0);
            assert_eq!(failure.locked_until, None);
        }
        let tenth = fail(&mut guard, ALICE, "192.0.2.1", "guess9", T0 + 5);
        assert_eq!(tenth.locked_until, Some(T0 + 905));
        // Any address of the /24, any password: refused before the password is looked at.
        assert_eq!(
            guard.admit(ALICE, ip("192.0.2.200"), T0 + 6),
            Err(Refusal::Locked { until: T0 + 905 })
        );
        assert_eq!(guard.locks(ALICE, T0 + 6).len(), 1);
        // After the lock the failures still count: the next wrong password locks again at once.
        let again = fail(&mut guard, ALICE, "192.0.2.1", "guess10", T0 + 906);
        assert_eq!(again.locked_until, Some(T0 + 906 + 900));
        // Once the window has passed, everything is forgotten.
        let later = T0 + 906 + 3601;
        let ticket = guard.admit(ALICE, ip("192.0.2.1"), later).unwrap();
        assert!(guard.succeeded(&ticket, later));
    }

    #[test]
    fn another_network_keeps_working_while_one_is_locked() {
        let mut guard = guard();
        assert!(succeed(&mut guard, ALICE, "198.51.100.7", T0));
        for n in 0..10 {
            fail(&mut guard, ALICE, "192.0.2.1", &format!("guess{n}"), T0 + 1);
        }
        assert!(matches!(
            guard.admit(ALICE, ip("192.0.2.1"), T0 + 2),
            Err(Refusal::Locked { .. })
        ));
        // The network that logged in before, and even a network never seen before.
        assert!(admits(&mut guard, ALICE, "198.51.100.8", T0 + 2));
        assert!(admits(&mut guard, ALICE, "203.0.113.1", T0 + 2));
    }

    #[test]
    fn a_repeated_wrong_password_counts_once() {
        let mut guard = guard();
        for n in 0..50 {
            let failure = fail(&mut guard, ALICE, "192.0.2.1", "old password", T0 + n * 60);
            assert_eq!(failure.counted, n == 0);
            assert_eq!(failure.delay, Duration::ZERO);
        }
        assert!(admits(&mut guard, ALICE, "192.0.2.1", T0 + 3000));
        // The same password for another user name is another failure.
        assert!(
            fail(
                &mut guard,
                "bob@example.test",
                "192.0.2.1",
                "old password",
                T0
            )
            .counted
        );
        // Once out of the window it counts again.
        assert!(
            fail(
                &mut guard,
                ALICE,
                "192.0.2.1",
                "old password",
                T0 + 3601 + 3000
            )
            .counted
        );
    }

    #[test]
    fn unknown_and_known_user_names_are_treated_alike() {
        // The guard never knows which names exist: the same sequence gives the same outcomes.
        let run = |user: &str| {
            let mut guard = guard();
            let outcomes: Vec<Failure> = (0..10)
                .map(|n| fail(&mut guard, user, "192.0.2.1", &format!("g{n}"), T0 + n))
                .collect();
            let locked = guard.admit(user, ip("192.0.2.1"), T0 + 10);
            (outcomes, locked)
        };
        let (known, known_lock) = run(ALICE);
        let (unknown, unknown_lock) = run("nobody@example.test");
        assert_eq!(known, unknown);
        assert_eq!(known_lock, unknown_lock);
    }

    #[test]
    fn a_network_spraying_many_names_is_slowed_then_refused_except_for_names_known_there() {
        let mut guard = guard();
        assert!(succeed(&mut guard, ALICE, "192.0.2.9", T0));
        let mut delays = Vec::new();
        for n in 0..5 {
            let user = format!("user{n}@example.test");
            let failure = fail(&mut guard, &user, "192.0.2.1", "123456", T0 + 1);
            delays.push(failure.delay.as_millis());
            assert_eq!(
                failure.network_refused_until,
                (n == 4).then_some(T0 + 1 + 1800)
            );
        }
        assert_eq!(delays, [0, 0, 0, 100, 200]);
        // Refused for every name that never logged in from there, from any address of it.
        for (user, from) in [
            ("user0@example.test", "192.0.2.9"),
            ("new@example.test", "192.0.2.9"),
            ("new@example.test", "192.0.2.1"),
        ] {
            assert_eq!(
                guard.admit(user, ip(from), T0 + 2),
                Err(Refusal::NetworkRefused { until: T0 + 1801 })
            );
        }
        assert_eq!(guard.refused_networks(T0 + 2).len(), 1);
        // A name known on the network is not spraying: it keeps its own limits, even from the
        // sprayer's address.
        assert!(admits(&mut guard, ALICE, "192.0.2.9", T0 + 2));
        assert!(admits(&mut guard, ALICE, "192.0.2.1", T0 + 2));
        assert!(admits(
            &mut guard,
            "new@example.test",
            "198.51.100.1",
            T0 + 2
        ));
        assert!(admits(
            &mut guard,
            "new@example.test",
            "192.0.2.9",
            T0 + 1802
        ));
    }

    #[test]
    fn failures_for_names_the_network_logged_in_as_are_not_spraying() {
        let mut guard = guard();
        let users: Vec<String> = (0..8).map(|n| format!("staff{n}@example.test")).collect();
        for user in &users {
            succeed(&mut guard, user, "192.0.2.1", T0);
        }
        // Every colleague in the office mistypes a password: no refusal of the network.
        for user in &users {
            let failure = fail(&mut guard, user, "192.0.2.50", "typo", T0 + 10);
            assert_eq!(failure.network_refused_until, None);
            assert_eq!(failure.delay, Duration::ZERO);
        }
        assert!(admits(&mut guard, &users[0], "192.0.2.1", T0 + 11));
    }

    #[test]
    fn success_clears_the_pair_and_is_news_only_now_and_then() {
        let mut guard = guard();
        assert!(succeed(&mut guard, ALICE, "192.0.2.1", T0));
        assert!(!succeed(&mut guard, ALICE, "192.0.2.1", T0 + 60));
        for n in 0..9 {
            fail(&mut guard, ALICE, "192.0.2.1", &format!("g{n}"), T0 + 100);
        }
        assert!(succeed(&mut guard, ALICE, "192.0.2.1", T0 + 101));
        // Cleared: nine more failures do not lock.
        for n in 0..9 {
            fail(&mut guard, ALICE, "192.0.2.1", &format!("h{n}"), T0 + 102);
        }
        assert!(admits(&mut guard, ALICE, "192.0.2.1", T0 + 103));
        assert!(succeed(
            &mut guard,
            ALICE,
            "192.0.2.1",
            T0 + 104 + SUCCESS_REFRESH
        ));
    }

    #[test]
    fn a_pair_has_one_attempt_in_flight_and_a_suspicious_one_refuses_the_others() {
        let mut guard = guard();
        // A clean pair: the second of two parallel logins waits its turn.
        let first = guard.admit(ALICE, ip("192.0.2.1"), T0).unwrap();
        assert_eq!(guard.admit(ALICE, ip("192.0.2.2"), T0), Err(Refusal::Busy));
        // Other names and other networks are not held up.
        assert!(admits(&mut guard, "bob@example.test", "192.0.2.1", T0));
        assert!(admits(&mut guard, ALICE, "198.51.100.1", T0));
        guard.release(first);
        for n in 0..3 {
            fail(&mut guard, ALICE, "192.0.2.1", &format!("g{n}"), T0);
        }
        // Suspicious: the others are refused at once, for as long as the longest delay.
        let first = guard.admit(ALICE, ip("192.0.2.1"), T0).unwrap();
        assert_eq!(
            guard.admit(ALICE, ip("192.0.2.2"), T0),
            Err(Refusal::Locked { until: T0 + 1 })
        );
        guard.release(first);
        assert!(admits(&mut guard, ALICE, "192.0.2.2", T0));
    }

    /// A burst of `attempts` at once, each one's password checked (wrong) only when admitted;
    /// admitted attempts end one by one, and the waiting ones ask again after each. Returns
    /// how many passwords were checked and the refusals the rest got at the end.
    fn burst(
        guard: &mut LoginGuard,
        attempts: usize,
        name: impl Fn(usize) -> String,
        now: u64,
    ) -> (usize, Vec<Refusal>) {
        let mut waiting: Vec<usize> = (0..attempts).collect();
        let mut refused = Vec::new();
        let mut checked = 0;
        loop {
            let mut in_flight = Vec::new();
            let mut still_waiting = Vec::new();
            for n in waiting {
                match guard.admit(&name(n), ip(&format!("192.0.2.{}", n % 250 + 1)), now) {
                    Ok(ticket) => in_flight.push((n, ticket)),
                    Err(Refusal::Busy) => still_waiting.push(n),
                    Err(refusal) => refused.push(refusal),
                }
            }
            if in_flight.is_empty() {
                assert!(
                    still_waiting.is_empty(),
                    "{} wait forever",
                    still_waiting.len()
                );
                return (checked, refused);
            }
            for (n, ticket) in in_flight {
                checked += 1;
                guard.failed(&ticket, &format!("guess{n}"), now);
                guard.release(ticket);
            }
            waiting = still_waiting;
        }
    }

    #[test]
    fn a_burst_for_one_name_gets_at_most_the_lock_limit_of_checks_even_after_the_lock() {
        let mut guard = LoginGuard::new(
            LoginPolicy {
                delay_after_failures: 10,
                ..policy()
            },
            b"k",
        );
        let (checked, refused) = burst(&mut guard, 250, |_| ALICE.to_string(), T0);
        assert_eq!(checked, 10);
        assert_eq!(refused, vec![Refusal::Locked { until: T0 + 900 }; 240]);
        // The lock expires; the failures are still in the window: one check, locked again.
        let (checked, refused) = burst(&mut guard, 250, |_| ALICE.to_string(), T0 + 901);
        assert_eq!(checked, 1);
        assert_eq!(refused.len(), 249);
        // With the default delays the burst is cut short sooner: once suspicious, one at a time.
        let mut guard = self::guard();
        let (checked, _) = burst(&mut guard, 250, |_| ALICE.to_string(), T0);
        assert!(checked <= 10, "{checked}");
    }

    #[test]
    fn a_burst_of_names_at_once_stops_at_the_network_limit() {
        let mut guard = guard();
        let (checked, refused) = burst(&mut guard, 100, |n| format!("user{n}@example.test"), T0);
        assert_eq!(checked, 5);
        assert_eq!(
            refused,
            vec![Refusal::NetworkRefused { until: T0 + 1800 }; 95]
        );
        // Names in flight count as if they had failed: five at once fill the limit, a sixth
        // waits; a name known on the network does not.
        let mut guard = self::guard();
        assert!(succeed(&mut guard, ALICE, "192.0.2.200", T0));
        let held: Vec<Ticket> = (0..5)
            .map(|n| {
                guard
                    .admit(&format!("u{n}@x.test"), ip("192.0.2.1"), T0)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            guard.admit("u5@x.test", ip("192.0.2.7"), T0),
            Err(Refusal::Busy)
        );
        assert!(admits(&mut guard, ALICE, "192.0.2.7", T0));
        for ticket in held {
            guard.release(ticket);
        }
        assert!(admits(&mut guard, "u5@x.test", "192.0.2.7", T0));
    }

    #[test]
    fn a_known_address_keeps_working_while_a_neighbour_locks_the_network() {
        let mut guard = guard();
        assert!(succeed(&mut guard, ALICE, "192.0.2.200", T0));
        let network: Cidr = "192.0.2.0/24".parse().unwrap();
        let host: Cidr = "192.0.2.200/32".parse().unwrap();
        for n in 0..10 {
            let failure = fail(&mut guard, ALICE, "192.0.2.66", &format!("g{n}"), T0 + 1);
            assert_eq!(failure.scope, network);
            // A name known on the network: not spraying.
            assert_eq!(failure.network_refused_until, None);
        }
        assert_eq!(
            guard.admit(ALICE, ip("192.0.2.201"), T0 + 2),
            Err(Refusal::Locked { until: T0 + 901 })
        );
        // The user's own address logs in, and that does not lift the neighbour's lock.
        succeed(&mut guard, ALICE, "192.0.2.200", T0 + 2);
        assert!(matches!(
            guard.admit(ALICE, ip("192.0.2.66"), T0 + 3),
            Err(Refusal::Locked { .. })
        ));
        // The known address has a budget of its own: failing there locks it too, alone.
        for n in 0..10 {
            let failure = fail(&mut guard, ALICE, "192.0.2.200", &format!("h{n}"), T0 + 4);
            assert_eq!(failure.scope, host);
            assert_eq!(failure.locked_until, (n == 9).then_some(T0 + 904));
        }
        let scopes: Vec<Cidr> = guard.locks(ALICE, T0 + 5).iter().map(|b| b.0).collect();
        assert_eq!(scopes, [network, host]);
        // An address is known for `remember_success` only.
        let later = T0 + 4 + 86_400;
        assert!(succeed(&mut guard, ALICE, "192.0.2.50", later));
        let failure = fail(&mut guard, ALICE, "192.0.2.200", "x", later + 1);
        assert_eq!(failure.scope, network);
    }

    #[test]
    fn a_known_address_survives_a_restart() {
        let mut guard = guard();
        guard.restore_success(ALICE, ip("192.0.2.200"), T0, false);
        guard.restore_success(ALICE, ip("192.0.2.200"), T0 + 1, true);
        for n in 0..10 {
            guard.restore_failure(ALICE, ip("192.0.2.66"), T0 + n);
        }
        assert!(matches!(
            guard.admit(ALICE, ip("192.0.2.66"), T0 + 20),
            Err(Refusal::Locked { .. })
        ));
        assert!(admits(&mut guard, ALICE, "192.0.2.200", T0 + 20));
    }

    #[test]
    fn unlocking_a_network_lifts_its_refusal_and_forgets_its_names() {
        let mut guard = guard();
        for n in 0..5 {
            fail(&mut guard, &format!("u{n}@x.test"), "192.0.2.1", "pw", T0);
            fail(
                &mut guard,
                &format!("u{n}@x.test"),
                "198.51.100.1",
                "pw",
                T0,
            );
        }
        assert_eq!(guard.refused_networks(T0 + 1).len(), 2);
        let wider: Cidr = "192.0.0.0/16".parse().unwrap();
        assert_eq!(guard.unlock_network(wider, T0 + 1), 1);
        let refused: Vec<String> = guard
            .refused_networks(T0 + 1)
            .iter()
            .map(|b| b.0.to_string())
            .collect();
        assert_eq!(refused, ["198.51.100.0/24"]);
        assert!(admits(&mut guard, "new@x.test", "192.0.2.1", T0 + 1));
        // Its names are forgotten: one more failure does not refuse it again.
        let failure = fail(&mut guard, "new@x.test", "192.0.2.1", "pw", T0 + 2);
        assert_eq!(failure.network_refused_until, None);
    }

    #[test]
    fn the_check_probe_is_answered_uncounted_but_not_past_a_network_refusal() {
        let mut guard = guard();
        for _ in 0..100 {
            assert_eq!(
                guard.admit(CHECK_PROBE_USER, ip("192.0.2.1"), T0),
                Err(Refusal::Probe)
            );
        }
        assert_eq!(guard.tracked(), (0, 0));
        assert!(admits(&mut guard, ALICE, "192.0.2.1", T0));
        for n in 0..5 {
            fail(&mut guard, &format!("u{n}@x.test"), "192.0.2.1", "pw", T0);
        }
        assert!(matches!(
            guard.admit(CHECK_PROBE_USER, ip("192.0.2.1"), T0),
            Err(Refusal::NetworkRefused { .. })
        ));
    }

    #[test]
    fn unlock_clears_locks_and_counts_of_that_name_only() {
        let mut guard = guard();
        for network in ["192.0.2.1", "198.51.100.1"] {
            for n in 0..10 {
                fail(&mut guard, ALICE, network, &format!("g{n}"), T0);
                fail(
                    &mut guard,
                    "bob@example.test",
                    network,
                    &format!("g{n}"),
                    T0,
                );
            }
        }
        assert_eq!(guard.locks(ALICE, T0 + 1).len(), 2);
        assert_eq!(guard.unlock(ALICE), 2);
        assert!(guard.locks(ALICE, T0 + 1).is_empty());
        assert!(admits(&mut guard, ALICE, "192.0.2.1", T0 + 1));
        assert_eq!(guard.locks("bob@example.test", T0 + 1).len(), 2);
        // The counts are gone too: one more failure does not lock again.
        assert_eq!(
            fail(&mut guard, ALICE, "198.51.100.1", "x", T0 + 2).locked_until,
            None
        );
    }

    #[test]
    fn restoring_the_record_rebuilds_locks_and_refusals() {
        let mut live = guard();
        let mut record = Vec::new();
        for n in 0..10 {
            fail(&mut live, ALICE, "192.0.2.1", &format!("g{n}"), T0 + n);
            record.push((ALICE.to_string(), "192.0.2.1", T0 + n));
        }
        for n in 0..5 {
            let user = format!("user{n}@example.test");
            fail(&mut live, &user, "203.0.113.5", "x", T0 + 20);
            record.push((user, "203.0.113.5", T0 + 20));
        }
        let mut restored = guard();
        for (user, from, at) in &record {
            restored.restore_failure(user, ip(from), *at);
        }
        let now = T0 + 30;
        assert_eq!(restored.locks(ALICE, now), live.locks(ALICE, now));
        assert_eq!(restored.refused_networks(now), live.refused_networks(now));
        assert_eq!(
            restored.admit(ALICE, ip("192.0.2.3"), now),
            Err(Refusal::Locked {
                until: T0 + 9 + 900
            })
        );
    }

    #[test]
    fn restored_success_resets_the_failures_before_it() {
        let mut guard = guard();
        for n in 0..9 {
            guard.restore_failure(ALICE, ip("192.0.2.1"), T0 + n);
        }
        guard.restore_success(ALICE, ip("192.0.2.1"), T0 + 10, false);
        guard.restore_failure(ALICE, ip("192.0.2.1"), T0 + 11);
        assert!(guard.locks(ALICE, T0 + 12).is_empty());
    }

    #[test]
    fn memory_is_capped_by_evicting_the_least_recently_seen() {
        let mut guard = LoginGuard::new(
            LoginPolicy {
                max_pairs: 100,
                max_networks: 50,
                ..policy()
            },
            b"k",
        );
        for n in 0..10_000u64 {
            let from = format!("10.{}.{}.1", n / 256 % 256, n % 256);
            fail(
                &mut guard,
                &format!("u{n}@example.test"),
                &from,
                "pw",
                T0 + n,
            );
            let (pairs, networks) = guard.tracked();
            assert!(pairs <= 100 && networks <= 50, "{pairs} {networks}");
        }
        // The most recent are kept: the same wrong password again is recognised as a repeat.
        let again = fail(
            &mut guard,
            "u9999@example.test",
            "10.39.15.1",
            "pw",
            T0 + 10_000,
        );
        assert!(!again.counted);
    }

    #[test]
    fn a_long_attack_keeps_state_small() {
        let mut guard = guard();
        let mut locked = 0;
        for n in 0..10_000u64 {
            match guard.admit(ALICE, ip("192.0.2.1"), T0 + n / 10) {
                Ok(ticket) => {
                    guard.failed(&ticket, &format!("guess{n}"), T0 + n / 10);
                    guard.release(ticket);
                }
                Err(Refusal::Locked { .. }) => locked += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        // 10 guesses, then one more each time the 900-second lock ran out (1000 s of attack).
        assert_eq!(locked, 10_000 - 10 - 1);
        let pair = guard.pairs.values().next().unwrap();
        assert!(pair.failures.len() <= 11, "{}", pair.failures.len());
        assert_eq!(guard.tracked(), (1, 1));
    }
}
