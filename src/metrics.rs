//! The server's counters for `GET /metrics` (Prometheus / OpenMetrics text).
//!
//! Counters are process-wide, like Prometheus's own model of a process: the code paths that
//! count (listeners, sessions, the spool writer, the queue manager, the login guard) reach
//! them through [`global`] without any of them carrying a handle. Each count is one atomic
//! add; what is hot (a listener's connections) resolves its labelled counter once, up front.
//! What is a state rather than an event (queue depth, spool size, the memory budget) is not
//! counted at all: it is read when a scrape asks ([`Sample`]).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Destinations with a label of their own; later ones share `other`, so that mail to many
/// domains cannot grow the scrape (and Prometheus's memory) without bound.
pub const MAX_DESTINATIONS: usize = 100;
/// The label of the destinations past [`MAX_DESTINATIONS`].
pub const OTHER_DESTINATIONS: &str = "other";

/// Every recipient status the queue reports, so that a status that empties reads 0.
const RECIPIENT_STATUSES: [&str; 6] = [
    "queued",
    "deferred",
    "held",
    "delivered",
    "bounced",
    "expired",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsFailureLabels {
    listener: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplyLabels {
    code: u16,
    enhanced: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    outcome: &'static str,
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabel {
    quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// One listener's counters, resolved once when the listener is bound.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    pub accepted: Counter,
    pub open: Gauge,
    pub tls_handshakes: Counter,
}

/// What a scrape reads at the moment it is made.
#[derive(Debug, Default)]
pub struct Sample {
    /// Recipients of unfinished messages by status (`None`: the queue manager did not answer).
    pub queue: Option<Census>,
    pub spool: SpoolUsage,
    pub memory_reserved: u64,
    pub memory_budget: u64,
}

/// The queue manager's count of what it holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub messages: u64,
    /// (status as `queue list` names it, recipients).
    pub recipients: Vec<(&'static str, u64)>,
}

/// The spool directory's segments and their total size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpoolUsage {
    pub segments: u64,
    pub bytes: u64,
}

pub struct Metrics {
    registry: Registry,
    connections: Family<ListenerLabel, Counter>,
    connections_open: Family<ListenerLabel, Gauge>,
    tls_handshakes: Family<ListenerLabel, Counter>,
    tls_failures: Family<TlsFailureLabels, Counter>,
    auth: Family<OutcomeLabel, Counter>,
    messages_accepted: Counter,
    bytes_accepted: Counter,
    recipients_accepted: Counter,
    refusals: Family<ReplyLabels, Counter>,
    spool_fsync: Histogram,
    spool_batch: Histogram,
    delivery_attempts: Family<AttemptLabels, Counter>,
    delivery_latency: Histogram,
    notifications: Family<KindLabel, Counter>,
    login_locks: Counter,
    network_refusals: Counter,
    quota_refusals: Family<QuotaLabel, Counter>,
    queue_recipients: Family<StatusLabel, Gauge>,
    queue_messages: Gauge,
    queue_up: Gauge,
    spool_bytes: Gauge,
    spool_segments: Gauge,
    memory_reserved: Gauge,
    memory_budget: Gauge,
    /// The destinations that have a label of their own.
    destinations: Mutex<HashSet<String>>,
}

/// The server's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            connections: Family::default(),
            connections_open: Family::default(),
            tls_handshakes: Family::default(),
            tls_failures: Family::default(),
            auth: Family::default(),
            messages_accepted: Counter::default(),
            bytes_accepted: Counter::default(),
            recipients_accepted: Counter::default(),
            refusals: Family::default(),
            // 100 µs to 3.3 s.
            spool_fsync: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 1 to 2048 messages.
            spool_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            delivery_attempts: Family::default(),
            delivery_latency: Histogram::new([
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 432000.0,
            ]),
            notifications: Family::default(),
            login_locks: Counter::default(),
            network_refusals: Counter::default(),
            quota_refusals: Family::default(),
            queue_recipients: Family::default(),
            queue_messages: Gauge::default(),
            queue_up: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_segments: Gauge::default(),
            memory_reserved: Gauge::default(),
            memory_budget: Gauge::default(),
            destinations: Mutex::new(HashSet::new()),
            registry: Registry::default(),
        };
        let mut registry = Registry::with_prefix("portcullis");
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// Names each metric; the registry holds clones that share the counts.
    fn register(&self, r: &mut Registry) {
        r.register(
            "connections",
            "SMTP connections admitted, by listener",
            self.connections.clone(),
        );
        r.register(
            "connections_open",
            "SMTP connections open now, by listener",
            self.connections_open.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes completed (STARTTLS or implicit), by listener",
            self.tls_handshakes.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by listener and cause (as logged)",
            self.tls_failures.clone(),
        );
        r.register(
            "auth",
            "AUTH outcomes: accepted, or the failure's reason as logged",
            self.auth.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages spooled and acknowledged with 250",
            self.messages_accepted.clone(),
        );
        r.register_with_unit(
            "accepted",
            "Message octets spooled and acknowledged",
            Unit::Bytes,
            self.bytes_accepted.clone(),
        );
        r.register(
            "recipients_accepted",
            "Recipients of the messages acknowledged",
            self.recipients_accepted.clone(),
        );
        r.register(
            "refusals",
            "4xx and 5xx replies sent to clients, by basic and enhanced code",
            self.refusals.clone(),
        );
        r.register_with_unit(
            "spool_fsync",
            "Time of each spool batch's write and fdatasync",
            Unit::Seconds,
            self.spool_fsync.clone(),
        );
        r.register(
            "spool_batch_messages",
            "Messages made durable by one spool fdatasync",
            self.spool_batch.clone(),
        );
        r.register(
            "delivery_attempts",
            "Outbound delivery outcomes per recipient, by outcome and destination",
            self.delivery_attempts.clone(),
        );
        r.register_with_unit(
            "delivery_latency",
            "From acceptance to delivery, per delivered recipient",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        r.register(
            "notifications",
            "Delivery status notifications spooled to senders, by kind",
            self.notifications.clone(),
        );
        r.register(
            "login_locks",
            "User names locked for a network after repeated failed logins",
            self.login_locks.clone(),
        );
        r.register(
            "network_refusals",
            "Networks refused every login after failing for many user names",
            self.network_refusals.clone(),
        );
        r.register(
            "quota_refusals",
            "Messages or recipients refused over an account's sending quota",
            self.quota_refusals.clone(),
        );
        r.register(
            "queue_recipients",
            "Recipients of unfinished messages, by status",
            self.queue_recipients.clone(),
        );
        r.register(
            "queue_messages",
            "Unfinished messages in the queue",
            self.queue_messages.clone(),
        );
        r.register(
            "queue_up",
            "1 if the queue manager answered this scrape's census, else 0",
            self.queue_up.clone(),
        );
        r.register_with_unit(
            "spool",
            "Size of the spool's segment files",
            Unit::Bytes,
            self.spool_bytes.clone(),
        );
        r.register(
            "spool_segments",
            "Spool segment files on disk",
            self.spool_segments.clone(),
        );
        r.register_with_unit(
            "memory_in_flight",
            "Message data reserved by sessions now (limits.max_memory_in_flight)",
            Unit::Bytes,
            self.memory_reserved.clone(),
        );
        r.register_with_unit(
            "memory_budget",
            "The memory budget for message data (limits.max_memory_in_flight)",
            Unit::Bytes,
            self.memory_budget.clone(),
        );
    }

    /// The counters of the listener bound to `address`.
    pub fn listener(&self, address: &str) -> ListenerMetrics {
        let label = ListenerLabel {
            listener: address.to_string(),
        };
        ListenerMetrics {
            accepted: self.connections.get_or_create(&label).clone(),
            open: self.connections_open.get_or_create(&label).clone(),
            tls_handshakes: self.tls_handshakes.get_or_create(&label).clone(),
        }
    }

    pub fn tls_failed(&self, listener: &str, cause: &'static str) {
        let labels = TlsFailureLabels {
            listener: listener.to_string(),
            cause,
        };
        self.tls_failures.get_or_create(&labels).inc();
    }

    /// `outcome`: `accepted`, `unavailable`, `wrong-host` or a failure reason.
    pub fn auth(&self, outcome: &'static str) {
        self.auth.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn accepted(&self, recipients: usize, bytes: usize) {
        self.messages_accepted.inc();
        self.recipients_accepted.inc_by(recipients as u64);
        self.bytes_accepted.inc_by(bytes as u64);
    }

    /// A 4xx or 5xx reply; `enhanced` is empty for the replies that have no enhanced code.
    pub fn refused(&self, code: u16, enhanced: String) {
        self.refusals
            .get_or_create(&ReplyLabels { code, enhanced })
            .inc();
    }

    pub fn spool_synced(&self, took: Duration, messages: usize) {
        self.spool_fsync.observe(took.as_secs_f64());
        self.spool_batch.observe(messages as f64);
    }

    /// One recipient's attempt: `delivered`, `deferred`, `bounced` or `expired`.
    pub fn delivery_attempt(&self, outcome: &'static str, destination: &str) {
        let destination = self.destination_label(destination);
        self.delivery_attempts
            .get_or_create(&AttemptLabels {
                outcome,
                destination,
            })
            .inc();
    }

    pub fn delivered_after(&self, seconds: u64) {
        self.delivery_latency.observe(seconds as f64);
    }

    /// A DSN spooled: `failure` (a bounce) or `delay`.
    pub fn notified(&self, kind: &'static str) {
        self.notifications.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn login_locked(&self) {
        self.login_locks.inc();
    }

    pub fn network_refused(&self) {
        self.network_refusals.inc();
    }

    /// `messages_per_hour` or `recipients_per_day`.
    pub fn quota_refused(&self, quota: &'static str) {
        self.quota_refusals
            .get_or_create(&QuotaLabel { quota })
            .inc();
    }

    /// The label `destination` is counted under: its own among the first
    /// [`MAX_DESTINATIONS`], else [`OTHER_DESTINATIONS`].
    fn destination_label(&self, destination: &str) -> String {
        let Ok(mut known) = self.destinations.lock() else {
            return OTHER_DESTINATIONS.to_string();
        };
        if known.contains(destination) {
            return destination.to_string();
        }
        if known.len() < MAX_DESTINATIONS {
            known.insert(destination.to_string());
            return destination.to_string();
        }
        OTHER_DESTINATIONS.to_string()
    }

    /// The exposition: every counter, and the gauges set from `sample`.
    pub fn render(&self, sample: &Sample) -> String {
        self.set_gauges(sample);
        let mut text = String::new();
        // Writing to a String cannot fail; an error here would be a bug in the encoder.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        text
    }

    fn set_gauges(&self, sample: &Sample) {
        let census = sample.queue.clone().unwrap_or_default();
        self.queue_up.set(i64::from(sample.queue.is_some()));
        self.queue_messages.set(gauge(census.messages));
        for status in RECIPIENT_STATUSES {
            let count = census
                .recipients
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.queue_recipients
                .get_or_create(&StatusLabel { status })
                .set(gauge(count));
        }
        self.spool_bytes.set(gauge(sample.spool.bytes));
        self.spool_segments.set(gauge(sample.spool.segments));
        self.memory_reserved.set(gauge(sample.memory_reserved));
        self.memory_budget.set(gauge(sample.memory_budget));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text` that start with `name` followed by `{` or a space.
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn counters_are_named_the_prometheus_way() {
        let metrics = Metrics::new();
        let listener = metrics.listener("127.0.0.1:587");
        listener.accepted.inc();
        listener.open.inc();
        metrics.accepted(2, 300);
        metrics.refused(530, "5.7.0".into());
        metrics.refused(530, "5.7.0".into());
        metrics.spool_synced(Duration::from_millis(3), 4);
        let text = metrics.render(&Sample::default());
        assert_eq!(
            samples(&text, "portcullis_connections_total"),
            ["portcullis_connections_total{listener=\"127.0.0.1:587\"} 1"]
        );
        assert_eq!(
            samples(&text, "portcullis_messages_accepted_total"),
            ["portcullis_messages_accepted_total 1"]
        );
        assert_eq!(
            samples(&text, "portcullis_accepted_bytes_total"),
            ["portcullis_accepted_bytes_total 300"]
        );
        assert_eq!(
            samples(&text, "portcullis_refusals_total"),
            ["portcullis_refusals_total{code=\"530\",enhanced=\"5.7.0\"} 2"]
        );
        assert_eq!(
            samples(&text, "portcullis_spool_fsync_seconds_count"),
            ["portcullis_spool_fsync_seconds_count 1"]
        );
        assert_eq!(
            samples(&text, "portcullis_spool_batch_messages_sum"),
            ["portcullis_spool_batch_messages_sum 4.0"]
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn every_recipient_status_is_reported_even_when_empty() {
        let metrics = Metrics::new();
        let sample = Sample {
            queue: Some(Census {
                messages: 2,
                recipients: vec![("deferred", 3)],
            }),
            ..Sample::default()
        };
        let text = metrics.render(&sample);
        let statuses = samples(&text, "portcullis_queue_recipients");
        assert_eq!(statuses.len(), RECIPIENT_STATUSES.len(), "{statuses:?}");
        assert!(statuses.contains(&"portcullis_queue_recipients{status=\"deferred\"} 3"));
        assert!(statuses.contains(&"portcullis_queue_recipients{status=\"queued\"} 0"));
        assert_eq!(
            samples(&text, "portcullis_queue_up"),
            ["portcullis_queue_up 1"]
        );
        // A queue that did not answer reads as down, not as empty-and-fine.
        let text = metrics.render(&Sample::default());
        assert_eq!(
            samples(&text, "portcullis_queue_up"),
            ["portcullis_queue_up 0"]
        );
    }

    #[test]
    fn destinations_past_the_limit_share_one_label() {
        let metrics = Metrics::new();
        for n in 0..MAX_DESTINATIONS {
            metrics.delivery_attempt("delivered", &format!("d{n}.example"));
        }
        metrics.delivery_attempt("deferred", "late.example");
        metrics.delivery_attempt("deferred", "later.example");
        // A destination that had its own label keeps it.
        metrics.delivery_attempt("delivered", "d0.example");
        let text = metrics.render(&Sample::default());
        let attempts = samples(&text, "portcullis_delivery_attempts_total");
        assert_eq!(attempts.len(), MAX_DESTINATIONS + 1);
        assert!(attempts.contains(
            &"portcullis_delivery_attempts_total{outcome=\"deferred\",destination=\"other\"} 2"
        ));
        assert!(attempts.contains(
            &"portcullis_delivery_attempts_total{outcome=\"delivered\",destination=\"d0.example\"} 2"
        ));
    }
}
