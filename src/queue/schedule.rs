//! Retry scheduling as pure functions of state and time.
//!
//! Everything here is sans-IO: time comes in as unix seconds (`u64`) from the caller and no
//! function reads a clock, so every rule is tested with exact numbers. Three layers:
//!
//! * per recipient: when to try again after a temporary failure ([`next_attempt`],
//!   [`after_temporary_failure`]) and when to send a delay warning ([`delay_warning_due`]);
//! * per destination: back-off after the whole destination failed or throttled us, and a
//!   concurrency gate, so 100,000 messages for one dead host cause one probe, not a storm
//!   ([`DestinationState`], [`is_throttling_reply`]);
//! * the due-queue itself ([`Timers`]).

use std::collections::BTreeMap;
use std::num::NonZeroU64;

/// Used when `retry_seconds` is empty: Postfix's `minimal_backoff_time`, so a misconfigured
/// list still retries at a sane pace instead of never or in a loop.
const FALLBACK_RETRY_SECONDS: u64 = 300;

/// How often to retry a recipient and how long to keep trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before retry n (n = 1, 2, …); the last value repeats for every later retry.
    pub retry_seconds: Vec<u64>,
    /// A recipient still failing temporarily this long after the message arrived is bounced.
    pub max_queue_lifetime: u64,
    /// Tell the sender once that the message is delayed, this long after it arrived.
    pub delay_warning: Option<u64>,
    /// Each delay is moved by up to ± this percentage (capped at 100).
    pub jitter_percent: u8,
}

impl Default for RetryPolicy {
    /// Postfix starts at `minimal_backoff_time` (300 s) and doubles up to
    /// `maximal_backoff_time` (4000 s), i.e. about 110 attempts in its 5 days. We start the
    /// same (5 minutes is also past the usual greylisting delay, so the first retry of a
    /// greylisted message succeeds), but keep growing to 4 hours, like Exim's and sendmail's
    /// long-term intervals: about 35 attempts in 5 days. Hammering a recipient server that
    /// has been failing for a day every hour buys little, and a destination that comes back
    /// is noticed by the per-destination probe ([`DestinationState`]), not by this list.
    fn default() -> Self {
        RetryPolicy {
            retry_seconds: vec![300, 900, 1800, 3600, 7200, 14400],
            max_queue_lifetime: 5 * 24 * 3600,
            delay_warning: None,
            jitter_percent: 10,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, without jitter. `attempts_so_far` counts every
    /// attempt made, the first delivery included: after one failed attempt the delay is
    /// `retry_seconds[0]`. Zero attempts is treated like one (nothing sensible is earlier).
    pub fn base_delay(&self, attempts_so_far: u32) -> u64 {
        let index = usize::try_from(attempts_so_far.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_seconds
            .get(index)
            .or(self.retry_seconds.last())
            .copied()
            .unwrap_or(FALLBACK_RETRY_SECONDS)
    }

    /// The moment a recipient of a message received at `received_at` is given up on.
    pub fn deadline(&self, received_at: u64) -> u64 {
        received_at.saturating_add(self.max_queue_lifetime)
    }
}

/// splitmix64's finaliser: a cheap, well-mixed bijection on u64, enough to spread seeds
/// (hashes of queue ids) evenly. Not cryptographic and need not be.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `delay` moved by a deterministic offset in `[-delay*pct/100, +delay*pct/100]`. The attempt
/// number is mixed in too, so one message is not early (or late) on every retry.
fn jittered(delay: u64, percent: u8, seed: u64, attempts_so_far: u32) -> u64 {
    let percent = u128::from(percent.min(100));
    let span = u128::from(delay) * percent / 100;
    if span == 0 {
        return delay;
    }
    let r = u128::from(mix(seed ^ mix(u64::from(attempts_so_far))));
    let offset = r % (2 * span + 1); // 0 ..= 2*span, i.e. -span ..= +span shifted
    let moved = u128::from(delay) + offset - span; // never below 0: offset - span >= -span >= -delay
    u64::try_from(moved).unwrap_or(u64::MAX)
}

/// When to try a recipient again after `attempts_so_far` attempts, the last at
/// `last_attempt_at`. `jitter_seed` should be stable per message (a hash of the queue id), so
/// messages deferred together spread out, yet the schedule is reproducible. Always at least one
/// second after the last attempt, so even a zero delay cannot turn into a busy loop.
pub fn next_attempt(
    policy: &RetryPolicy,
    attempts_so_far: u32,
    last_attempt_at: u64,
    jitter_seed: u64,
) -> u64 {
    let base = policy.base_delay(attempts_so_far);
    let delay = jittered(base, policy.jitter_percent, jitter_seed, attempts_so_far).max(1);
    last_attempt_at.saturating_add(delay)
}

/// What to do with a recipient after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it queued; try again at this time.
    RetryAt(u64),
    /// Its lifetime is over: bounce it (a DSN with the last temporary reply).
    Expire,
}

/// The decision after attempt number `attempts` (counting all attempts) failed temporarily at
/// `now`, for a message received at `received_at`.
///
/// Postfix bounces a message whose age exceeds `maximal_queue_lifetime` when an attempt is
/// deferred, so its last attempt can fall anywhere up to one back-off interval past the
/// lifetime, and the bounce arrives late by that much. We keep the lifetime exact instead:
/// a failure at or after the deadline expires; a next attempt that would land past the
/// deadline is moved to the deadline itself, which is then the final attempt. So a recipient is
/// never dropped without one last try, and never kept beyond its lifetime.
pub fn after_temporary_failure(
    policy: &RetryPolicy,
    received_at: u64,
    attempts: u32,
    now: u64,
    seed: u64,
) -> Verdict {
    let deadline = policy.deadline(received_at);
    if now >= deadline {
        return Verdict::Expire;
    }
    Verdict::RetryAt(next_attempt(policy, attempts, now, seed).min(deadline))
}

/// Whether the sender should now get the (single) "still trying" notice. Only while the message
/// is alive: at the deadline the sender gets the bounce instead, so a warning due at or after
/// it would only be noise.
pub fn delay_warning_due(
    policy: &RetryPolicy,
    received_at: u64,
    already_warned: bool,
    now: u64,
) -> bool {
    let Some(after) = policy.delay_warning else {
        return false;
    };
    !already_warned
        && now >= received_at.saturating_add(after)
        && now < policy.deadline(received_at)
}

/// First suspension after a destination was unreachable; doubles with each consecutive failure.
const UNREACHABLE_BASE_SECONDS: u64 = 60;
/// First suspension after being throttled: the receiver told us outright to slow down, and
/// coming back after a minute usually just earns the next 421.
const THROTTLED_BASE_SECONDS: u64 = 300;
/// No suspension is longer than this, so a destination that is back is found within an hour.
const MAX_SUSPENSION_SECONDS: u64 = 3600;

/// Back-off and connection count for one destination (a next-hop domain or host), sans-IO.
///
/// Outcomes come in through `on_*`, and the caller calls [`finish`](Self::finish) separately
/// whenever a connection that [`try_start`](Self::try_start) admitted ends, whatever its
/// outcome. While the destination has a failure streak, only one connection at a time is
/// admitted: the first one after a suspension is a probe, and only its success reopens the
/// full concurrency (Postfix's "dead destination" handling does the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationState {
    consecutive_failures: u32,
    suspended_until: Option<u64>,
    in_flight: u32,
    last_success: Option<u64>,
    throttle_reply: Option<String>,
}

impl DestinationState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message (or a session) went through: the destination is healthy again.
    pub fn on_success(&mut self, now: u64) {
        self.consecutive_failures = 0;
        self.suspended_until = None;
        self.last_success = Some(now);
        self.throttle_reply = None;
    }

    /// Every address refused or timed out, or the greeting was a 421.
    pub fn on_unreachable(&mut self, now: u64) {
        self.fail(now, UNREACHABLE_BASE_SECONDS);
    }

    /// The destination told us to slow down (see [`is_throttling_reply`]). The reply text is
    /// kept to explain the pause; its length does not depend on it, because providers' texts
    /// are not a stable interface.
    pub fn on_throttled(&mut self, now: u64, reply_text: &str) {
        self.throttle_reply = Some(reply_text.to_owned());
        self.fail(now, THROTTLED_BASE_SECONDS);
    }

    /// Suspends for `base * 2^(streak-1)`, capped. A failure reported while already suspended
    /// comes from a connection started before the suspension (several in flight failing
    /// together): it says nothing new, so it does not grow the streak, else ten parallel
    /// timeouts would jump straight to the cap. It can still lengthen the current pause (a
    /// throttle arriving during a shorter unreachable pause).
    fn fail(&mut self, now: u64, base: u64) {
        if self.ready(now) {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        let doublings = self.consecutive_failures.saturating_sub(1).min(16);
        let pause = base
            .saturating_mul(1 << doublings)
            .min(MAX_SUSPENSION_SECONDS);
        let until = now.saturating_add(pause);
        self.suspended_until = Some(self.suspended_until.map_or(until, |u| u.max(until)));
    }

    /// Whether a connection may be attempted now (ignoring the concurrency limit).
    pub fn ready(&self, now: u64) -> bool {
        self.suspended_until.is_none_or(|until| now >= until)
    }

    /// The end of the current or last suspension; `None` once a success cleared it.
    pub fn suspended_until(&self) -> Option<u64> {
        self.suspended_until
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    pub fn last_success(&self) -> Option<u64> {
        self.last_success
    }

    /// The reply of the last throttle since the last success, for status output.
    pub fn throttle_reply(&self) -> Option<&str> {
        self.throttle_reply.as_deref()
    }

    /// Admits one more connection if the destination is ready and fewer than `limit` are in
    /// flight (one while probing after failures). A `limit` of 0 counts as 1: a destination
    /// that may never be connected to would hold its mail until it expires, silently.
    pub fn try_start(&mut self, now: u64, limit: u32) -> bool {
        let limit = if self.consecutive_failures > 0 {
            1
        } else {
            limit.max(1)
        };
        if !self.ready(now) || self.in_flight >= limit {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// A connection admitted by [`try_start`](Self::try_start) ended. Saturating, so a stray
    /// extra call cannot wrap the count and shut the destination.
    pub fn finish(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

/// Whether a temporary reply means "you are sending too much, slow down" for the whole
/// destination, rather than a problem with one message or recipient. The rule:
///
/// * `421` at any stage (greeting, after MAIL, RCPT or DATA): the server is closing on us.
/// * Otherwise only 4xx replies, never 5xx (those are permanent failures, not pacing).
/// * An enhanced code `4.7.x` with x other than 0 or 1: the 4.7 subject is security/policy, and
///   its specific details are what providers use for rate limits (Gmail `4.7.28`, Microsoft
///   `4.7.650`). `4.7.0` ("other") and `4.7.1` (what greylisters such as postgrey send, per
///   recipient) count only if the text speaks of rates or limits.
/// * No enhanced code: the text decides the same way, except for `452`, which RFC 5321
///   (§4.5.3.1.10) uses for "too many recipients" in one transaction: that is answered by
///   splitting the transaction, not by pausing the destination.
pub fn is_throttling_reply(code: u16, enhanced: Option<&str>, text: &str) -> bool {
    if code == 421 {
        return true;
    }
    if !(400..500).contains(&code) {
        return false;
    }
    match enhanced.and_then(parse_enhanced) {
        Some((4, 7, 0 | 1)) => mentions_rate(text),
        Some((4, 7, _)) => true,
        Some(_) => false,
        None => code != 452 && mentions_rate(text),
    }
}

/// `"4.7.28"` into `(4, 7, 28)`; anything else is `None` and treated as no enhanced code.
fn parse_enhanced(s: &str) -> Option<(u16, u16, u16)> {
    let mut parts = s.trim().split('.').map(|p| p.parse::<u16>().ok());
    let (class, subject, detail) = (parts.next()??, parts.next()??, parts.next()??);
    match parts.next() {
        None => Some((class, subject, detail)),
        Some(_) => None,
    }
}

/// Whole words only, so "generated" or "separate" do not count as "rate".
fn mentions_rate(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "rate",
        "ratelimit",
        "ratelimited",
        "limit",
        "limits",
        "limited",
        "exceeded",
        "throttled",
        "throttling",
        "volume",
    ];
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().any(|w| WORDS.contains(w)) || words.windows(2).any(|p| p == ["too", "many"])
}

/// A handle to one scheduled entry, for [`Timers::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    /// Never 0 (a time long past is due at once either way), so `Option<TimerId>`, which every
    /// queued message holds, costs no extra bytes.
    at: NonZeroU64,
    seq: u64,
}

impl TimerId {
    pub fn at(&self) -> u64 {
        self.at.get()
    }
}

/// The due-queue: keys ordered by time, then by scheduling order (so entries due at the same
/// second come out first-in first-out). Scheduling and cancelling are O(log n); popping the due
/// entries splits the tree once instead of removing them one by one, so 100,000 deferred
/// messages for one dead destination coming due together cost one split.
#[derive(Debug, Clone)]
pub struct Timers<K> {
    entries: BTreeMap<(u64, u64), K>,
    next_seq: u64,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            entries: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<K> Timers<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `key` to come due at `at` (unix seconds).
    pub fn schedule(&mut self, at: u64, key: K) -> TimerId {
        // u64 sequence numbers do not run out: 2^64 schedules at a million per second
        // take half a million years.
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let at = NonZeroU64::new(at).unwrap_or(NonZeroU64::MIN);
        self.entries.insert((at.get(), seq), key);
        TimerId { at, seq }
    }

    /// Removes an entry; `None` if it already came due or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<K> {
        self.entries.remove(&(id.at.get(), id.seq))
    }

    /// Everything due at or before `now`, in order.
    pub fn pop_due(&mut self, now: u64) -> Vec<K> {
        let later = match now.checked_add(1) {
            Some(after) => self.entries.split_off(&(after, 0)),
            None => BTreeMap::new(), // now is the end of time: everything is due
        };
        std::mem::replace(&mut self.entries, later)
            .into_values()
            .collect()
    }

    /// When the earliest entry comes due, for the caller's sleep.
    pub fn next_deadline(&self) -> Option<u64> {
        self.entries.keys().next().map(|&(at, _)| at)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter_percent: 0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn default_policy() {
        let p = RetryPolicy::default();
        assert_eq!(p.retry_seconds, [300, 900, 1800, 3600, 7200, 14400]);
        assert_eq!(p.max_queue_lifetime, 432_000);
        assert_eq!(p.delay_warning, None);
        assert_eq!(p.jitter_percent, 10);
    }

    #[test]
    fn delays_index_the_list_and_repeat_the_last() {
        let p = no_jitter();
        assert_eq!(p.base_delay(0), 300);
        assert_eq!(p.base_delay(1), 300);
        assert_eq!(p.base_delay(2), 900);
        assert_eq!(p.base_delay(6), 14400);
        assert_eq!(p.base_delay(7), 14400);
        assert_eq!(p.base_delay(u32::MAX), 14400);
        assert_eq!(next_attempt(&p, 1, 1000, 42), 1300);
        assert_eq!(next_attempt(&p, 3, 1000, 42), 2800);
        assert_eq!(next_attempt(&p, 100, 1000, 42), 15400);
    }

    #[test]
    fn empty_list_falls_back_and_zero_delay_still_waits() {
        let mut p = no_jitter();
        p.retry_seconds.clear();
        assert_eq!(next_attempt(&p, 4, 1000, 0), 1300);
        p.retry_seconds = vec![0];
        assert_eq!(next_attempt(&p, 4, 1000, 0), 1001);
        p.retry_seconds = vec![300];
        assert_eq!(next_attempt(&p, 1, u64::MAX - 5, 0), u64::MAX);
    }

    #[test]
    fn jitter_stays_within_bounds_and_spreads() {
        let p = RetryPolicy::default(); // ±10 %
        let (mut lowest, mut highest) = (u64::MAX, 0);
        let mut distinct = std::collections::HashSet::new();
        for seed in 0..10_000u64 {
            let at = next_attempt(&p, 1, 0, seed);
            assert!((270..=330).contains(&at), "seed {seed}: {at}");
            lowest = lowest.min(at);
            highest = highest.max(at);
            distinct.insert(at);
        }
        // Both ends are reached and the 61 possible values are all used.
        assert_eq!((lowest, highest, distinct.len()), (270, 330, 61));
        for seed in 0..1000u64 {
            let at = next_attempt(&p, 9, 0, seed);
            assert!((12960..=15840).contains(&at), "seed {seed}: {at}");
        }
    }

    #[test]
    fn jitter_is_reproducible_and_differs_per_message_and_attempt() {
        let p = RetryPolicy::default();
        let a = next_attempt(&p, 6, 5000, 0xDEAD_BEEF);
        assert_eq!(a, next_attempt(&p, 6, 5000, 0xDEAD_BEEF));
        let others: Vec<u64> = (1..=20).map(|s| next_attempt(&p, 6, 5000, s)).collect();
        assert!(others.iter().any(|&o| o != a));
        // One message is not always early or always late: the offset moves between retries.
        let offsets: std::collections::HashSet<i64> = (7..30)
            .map(|n| next_attempt(&p, n, 0, 7) as i64 - 14400)
            .collect();
        assert!(offsets.len() > 1);
    }

    #[test]
    fn jitter_percent_is_capped_at_100() {
        let p = RetryPolicy {
            jitter_percent: 255,
            retry_seconds: vec![100],
            ..RetryPolicy::default()
        };
        for seed in 0..2000 {
            let at = next_attempt(&p, 1, 1000, seed);
            assert!((1001..=1200).contains(&at), "{at}");
        }
    }

    #[test]
    fn retries_until_the_lifetime_then_expires() {
        let p = no_jitter();
        let received = 1_000_000;
        let deadline = received + 5 * DAY;
        assert_eq!(
            after_temporary_failure(&p, received, 1, received, 0),
            Verdict::RetryAt(received + 300)
        );
        // The next attempt would land 100 s past the deadline: it is moved onto it.
        assert_eq!(
            after_temporary_failure(&p, received, 20, deadline - 14300, 0),
            Verdict::RetryAt(deadline)
        );
        // Landing exactly on the deadline is allowed as is.
        assert_eq!(
            after_temporary_failure(&p, received, 20, deadline - 14400, 0),
            Verdict::RetryAt(deadline)
        );
        assert_eq!(
            after_temporary_failure(&p, received, 20, deadline - 1, 0),
            Verdict::RetryAt(deadline)
        );
        // The final attempt at the deadline failed: bounce.
        assert_eq!(
            after_temporary_failure(&p, received, 21, deadline, 0),
            Verdict::Expire
        );
        assert_eq!(
            after_temporary_failure(&p, received, 21, deadline + 1, 0),
            Verdict::Expire
        );
    }

    #[test]
    fn zero_lifetime_expires_at_the_first_failure() {
        let p = RetryPolicy {
            max_queue_lifetime: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(after_temporary_failure(&p, 50, 1, 50, 9), Verdict::Expire);
    }

    #[test]
    fn delay_warning_is_sent_once_while_the_message_lives() {
        let mut p = no_jitter();
        assert!(!delay_warning_due(&p, 0, false, 10 * DAY)); // off by default
        p.delay_warning = Some(4 * 3600);
        assert!(!delay_warning_due(&p, 1000, false, 1000 + 4 * 3600 - 1));
        assert!(delay_warning_due(&p, 1000, false, 1000 + 4 * 3600));
        assert!(!delay_warning_due(&p, 1000, true, 1000 + 4 * 3600));
        assert!(delay_warning_due(&p, 1000, false, 1000 + 5 * DAY - 1));
        assert!(!delay_warning_due(&p, 1000, false, 1000 + 5 * DAY));
        p.delay_warning = Some(6 * DAY); // longer than the lifetime: the bounce says it all
        assert!(!delay_warning_due(&p, 0, false, 6 * DAY));
    }

    #[test]
    fn unreachable_suspension_doubles_to_the_cap_and_success_resets() {
        let mut d = DestinationState::new();
        assert!(d.ready(0));
        assert_eq!(d.suspended_until(), None);
        let mut now = 10_000;
        for expected in [60, 120, 240, 480, 960, 1920, 3600, 3600] {
            d.on_unreachable(now);
            assert_eq!(d.suspended_until(), Some(now + expected));
            assert!(!d.ready(now + expected - 1));
            assert!(d.ready(now + expected));
            now += expected;
        }
        assert_eq!(d.consecutive_failures(), 8);
        d.on_success(now);
        assert_eq!(
            (
                d.suspended_until(),
                d.consecutive_failures(),
                d.last_success()
            ),
            (None, 0, Some(now))
        );
        d.on_unreachable(now);
        assert_eq!(d.suspended_until(), Some(now + 60));
    }

    #[test]
    fn throttling_starts_higher_and_keeps_the_reply() {
        let mut d = DestinationState::new();
        d.on_throttled(0, "421 4.7.28 slow down");
        assert_eq!(d.suspended_until(), Some(300));
        assert_eq!(d.throttle_reply(), Some("421 4.7.28 slow down"));
        d.on_throttled(300, "421 4.7.28 slow down");
        assert_eq!(d.suspended_until(), Some(900));
        d.on_throttled(900, "x");
        d.on_throttled(2100, "x");
        assert_eq!(d.suspended_until(), Some(2100 + 2400));
        d.on_throttled(4500, "x");
        assert_eq!(d.suspended_until(), Some(4500 + 3600));
        d.on_success(9000);
        assert_eq!(d.throttle_reply(), None);
    }

    #[test]
    fn failures_while_suspended_do_not_grow_the_streak() {
        let mut d = DestinationState::new();
        // Ten connections in flight all time out within the same second.
        for _ in 0..10 {
            d.on_unreachable(100);
        }
        assert_eq!(d.consecutive_failures(), 1);
        assert_eq!(d.suspended_until(), Some(160));
        // A throttle during that pause lengthens it, still without growing the streak.
        d.on_throttled(110, "421 too many connections");
        assert_eq!(
            (d.consecutive_failures(), d.suspended_until()),
            (1, Some(410))
        );
        // A late unreachable cannot shorten it.
        d.on_unreachable(120);
        assert_eq!(d.suspended_until(), Some(410));
    }

    #[test]
    fn concurrency_gate() {
        let mut d = DestinationState::new();
        assert!(d.try_start(0, 3));
        assert!(d.try_start(0, 3));
        assert!(d.try_start(0, 3));
        assert!(!d.try_start(0, 3));
        assert_eq!(d.in_flight(), 3);
        d.finish();
        assert!(d.try_start(0, 3));
        for _ in 0..5 {
            d.finish(); // one more than started: saturates
        }
        assert_eq!(d.in_flight(), 0);
        assert!(d.try_start(0, 0)); // 0 counts as 1
        assert!(!d.try_start(0, 0));
    }

    #[test]
    fn suspended_destination_admits_nothing_then_one_probe() {
        let mut d = DestinationState::new();
        d.on_unreachable(0);
        assert!(!d.try_start(59, 10));
        assert!(d.try_start(60, 10)); // the probe
        assert!(!d.try_start(60, 10)); // only one while probing
        d.finish();
        d.on_success(61);
        for _ in 0..10 {
            assert!(d.try_start(61, 10));
        }
        assert!(!d.try_start(61, 10));
    }

    #[test]
    fn provider_throttling_replies() {
        // Gmail
        assert!(is_throttling_reply(
            421,
            Some("4.7.28"),
            "Our system has detected an unusual rate of unsolicited mail originating from your IP address."
        ));
        // Yahoo
        assert!(is_throttling_reply(
            421,
            Some("4.7.0"),
            "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints"
        ));
        // Microsoft
        assert!(is_throttling_reply(
            451,
            Some("4.7.650"),
            "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation."
        ));
        // Greylisting is per message, not a reason to pause the destination.
        assert!(!is_throttling_reply(450, Some("4.2.0"), "greylisted"));
        assert!(!is_throttling_reply(
            450,
            Some("4.7.1"),
            "<a@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/"
        ));
    }

    #[test]
    fn throttling_rule_details() {
        assert!(is_throttling_reply(421, None, "Service not available"));
        assert!(is_throttling_reply(421, Some("4.3.2"), "shutting down"));
        assert!(is_throttling_reply(
            451,
            Some("4.7.0"),
            "Too many messages, slow down"
        ));
        assert!(is_throttling_reply(
            450,
            Some("4.7.1"),
            "Sending rate limit exceeded"
        ));
        assert!(!is_throttling_reply(
            451,
            Some("4.7.0"),
            "Temporary local problem"
        ));
        assert!(is_throttling_reply(450, Some("4.7.500"), "Server busy"));
        assert!(!is_throttling_reply(
            550,
            Some("5.7.1"),
            "rate limit exceeded"
        ));
        assert!(!is_throttling_reply(452, None, "Too many recipients"));
        assert!(!is_throttling_reply(
            452,
            Some("4.5.3"),
            "Too many recipients"
        ));
        assert!(is_throttling_reply(
            450,
            None,
            "Too many connections from your host"
        ));
        assert!(!is_throttling_reply(
            451,
            None,
            "Message generated a separate error"
        ));
        // A malformed enhanced code counts as none.
        assert!(!is_throttling_reply(451, Some("4.7"), "local error"));
        assert!(is_throttling_reply(451, Some("4.x.1"), "ratelimited"));
        assert_eq!(parse_enhanced("4.7.28"), Some((4, 7, 28)));
        assert_eq!(parse_enhanced("4.7.28.1"), None);
    }

    #[test]
    fn timers_come_out_in_time_then_scheduling_order() {
        let mut t = Timers::new();
        assert_eq!(t.next_deadline(), None);
        t.schedule(30, "c");
        t.schedule(10, "a1");
        t.schedule(20, "b");
        t.schedule(10, "a2");
        assert_eq!((t.len(), t.next_deadline()), (4, Some(10)));
        assert!(t.pop_due(9).is_empty());
        assert_eq!(t.pop_due(10), ["a1", "a2"]);
        assert_eq!(t.next_deadline(), Some(20));
        assert_eq!(t.pop_due(100), ["b", "c"]);
        assert!(t.is_empty());
        t.schedule(u64::MAX, "end");
        assert_eq!(t.pop_due(u64::MAX), ["end"]);
    }

    #[test]
    fn timers_cancel_by_handle() {
        let mut t = Timers::new();
        let a = t.schedule(10, 1);
        let b = t.schedule(10, 2);
        assert_eq!(a.at(), 10);
        assert_eq!(t.cancel(a), Some(1));
        assert_eq!(t.cancel(a), None);
        assert_eq!(t.pop_due(10), [2]);
        assert_eq!(t.cancel(b), None); // already came due
    }

    #[test]
    fn hundred_thousand_deferred_for_one_destination() {
        let p = RetryPolicy::default();
        let mut t = Timers::new();
        for id in 0..100_000u64 {
            t.schedule(next_attempt(&p, 1, 1_000, id), id);
        }
        assert_eq!(t.next_deadline(), Some(1_270));
        let early = t.pop_due(1_299);
        let rest = t.pop_due(1_330);
        assert_eq!(early.len() + rest.len(), 100_000);
        assert!(early.len() > 40_000 && rest.len() > 40_000);
        assert!(t.is_empty() && t.pop_due(u64::MAX).is_empty());
        // Within one pop, times never go backwards.
        let times: Vec<u64> = rest
            .iter()
            .map(|&id| next_attempt(&p, 1, 1_000, id))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
