//! The `[http]` listener: Prometheus `GET /metrics` and the read-only JSON API
//! (`/api/summary`, `/api/queue`, `/api/queue/ID`, `/api/accounts/EMAIL`), served by axum on
//! the server's runtime. The API answers with the very structures `portcullis queue list
//! --json`, `queue show --json` and `accounts show --json` print ([`crate::queue::entries`],
//! [`crate::queue::detail`], [`crate::accounts::report::report`]).

mod access;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::SqliteStore;
use crate::config::QuotaConfig;
use crate::listener::Phase;
use crate::metrics::{self, Census, Sample, SpoolUsage};
use crate::policy::ConnectionLimiter;
use crate::queue::driver::QueueProbe;
use crate::queue::{self, Filter};
use crate::smtp::budget::MemoryBudget;
use crate::spool::log;
use access::Access;

/// How long a scrape waits for the queue manager's census; past it the queue reads as down
/// (`portcullis_queue_up 0`) rather than holding the scrape.
const CENSUS_PATIENCE: Duration = Duration::from_secs(2);

/// The OpenMetrics text format, which Prometheus asks for and reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
pub struct Api {
    pub data_dir: PathBuf,
    pub quotas: QuotaConfig,
    /// A connection of its own: the API's reads never wait behind the server's writes.
    pub store: Arc<SqliteStore>,
    pub queue: QueueProbe,
    pub memory: Arc<MemoryBudget>,
    pub limiter: Arc<ConnectionLimiter>,
    /// `[http] token_file`'s token; `None`: loopback clients only.
    pub token: Option<String>,
    pub started: Instant,
}

/// Serves `api` on `socket` (bound before privileges were dropped) until the server leaves
/// the running phase.
pub async fn serve(socket: TcpListener, api: Api, mut phase: watch::Receiver<Phase>) {
    let app = router(Arc::new(api)).into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        let _ = phase.wait_for(|p| *p != Phase::Running).await;
    };
    if let Err(error) = axum::serve(socket, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(%error, "the HTTP listener failed; /metrics and the API are gone");
    }
}

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/api/summary", get(summary))
        .route("/api/queue", get(queue_list))
        .route("/api/queue/{id}", get(queue_message))
        .route("/api/accounts/{email}", get(account))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&api), guard))
        .with_state(api)
}

/// Applies the access rule ([`access::decide`]) before any handler runs.
async fn guard(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    match access::decide(peer.ip(), api.token.as_deref(), authorization) {
        Access::Allowed => next.run(request).await,
        Access::LoopbackOnly => failure(
            StatusCode::FORBIDDEN,
            "only loopback clients are served without a token; set [http] token_file to allow \
             others with Authorization: Bearer",
        ),
        Access::TokenRequired => {
            let mut response = failure(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer with the token of [http] token_file",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

async fn scrape(State(api): State<Arc<Api>>) -> Response {
    let sample = sample(&api).await;
    let text = metrics::global().render(&sample);
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// The states a scrape reports: the queue manager's census, the spool's size, the budget.
async fn sample(api: &Api) -> Sample {
    let census = api.queue.census(CENSUS_PATIENCE).await;
    let spool_dir = api.data_dir.join("spool");
    let spool = match tokio::task::spawn_blocking(move || log::usage(&spool_dir)).await {
        Ok(Ok(usage)) => usage,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot measure the spool for /metrics");
            SpoolUsage::default()
        }
        Err(_) => SpoolUsage::default(),
    };
    Sample {
        queue: census,
        spool,
        memory_reserved: api.memory.reserved() as u64,
        memory_budget: api.memory.capacity() as u64,
    }
}

/// `/api/summary`: the server at a glance.
#[derive(Serialize)]
struct Summary {
    version: &'static str,
    uptime_seconds: u64,
    connections_open: usize,
    /// `null` when the queue manager did not answer in time.
    queue: Option<QueueSummary>,
    spool: SpoolUsage,
    memory_in_flight_bytes: usize,
    memory_budget_bytes: usize,
}

#[derive(Serialize)]
struct QueueSummary {
    messages: u64,
    recipients: std::collections::BTreeMap<&'static str, u64>,
}

impl From<Census> for QueueSummary {
    fn from(census: Census) -> QueueSummary {
        QueueSummary {
            messages: census.messages,
            recipients: census.recipients.into_iter().collect(),
        }
    }
}

async fn summary(State(api): State<Arc<Api>>) -> Response {
    let sample = sample(&api).await;
    json(&Summary {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: api.started.elapsed().as_secs(),
        connections_open: api.limiter.open_connections(),
        queue: sample.queue.map(QueueSummary::from),
        spool: sample.spool,
        memory_in_flight_bytes: api.memory.reserved(),
        memory_budget_bytes: api.memory.capacity(),
    })
}

/// `/api/queue?status=&domain=&account=`: `queue list --json` with the same filters.
async fn queue_list(State(api): State<Arc<Api>>, Query(filter): Query<Filter>) -> Response {
    let data_dir = api.data_dir.clone();
    let listed = tokio::task::spawn_blocking(move || {
        queue::entries(&data_dir).map(|mut entries| {
            entries.retain(|entry| filter.matches(entry));
            entries
        })
    })
    .await;
    match listed {
        Ok(Ok(entries)) => json(&entries),
        Ok(Err(error)) => unavailable(&format!("cannot read the queue: {error}")),
        Err(_) => unavailable("the queue read did not finish"),
    }
}

/// `/api/queue/ID`: `queue show --json`.
async fn queue_message(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let Some(id) = queue_id(&id) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "a queue id is 16 hex digits, as /api/queue lists them",
        );
    };
    let data_dir = api.data_dir.clone();
    let found = tokio::task::spawn_blocking(move || queue::detail(&data_dir, &id)).await;
    match found {
        Ok(Ok(Some((detail, _body)))) => json(&detail),
        Ok(Ok(None)) => failure(
            StatusCode::NOT_FOUND,
            "no such message in the spool; /api/queue lists those that are",
        ),
        Ok(Err(error)) => unavailable(&format!("cannot read the queue: {error}")),
        Err(_) => unavailable("the queue read did not finish"),
    }
}

/// A queue id in the spool's spelling (16 hex digits, upper case).
fn queue_id(text: &str) -> Option<String> {
    (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_uppercase())
}

/// `/api/accounts/EMAIL`: `accounts show --json`.
async fn account(State(api): State<Arc<Api>>, Path(email): Path<String>) -> Response {
    let email = crate::auth::canonical_username(&email);
    let store = Arc::clone(&api.store);
    let quotas = api.quotas.clone();
    let now = crate::timefmt::unix_now();
    let found = tokio::task::spawn_blocking(move || {
        crate::accounts::report::report(&store, &email, &quotas, now)
    })
    .await;
    match found {
        Ok(Ok(Some(report))) => json(&report),
        Ok(Ok(None)) => failure(
            StatusCode::NOT_FOUND,
            "no such account; `portcullis accounts list` lists them",
        ),
        Ok(Err(error)) => unavailable(&format!("cannot read the account store: {error}")),
        Err(_) => unavailable("the account read did not finish"),
    }
}

async fn not_found() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "no such page; there are /metrics, /api/summary, /api/queue, /api/queue/ID and \
         /api/accounts/EMAIL",
    )
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {error}"),
        ),
    }
}

fn unavailable(reason: &str) -> Response {
    tracing::error!(reason, "an API request failed");
    failure(StatusCode::SERVICE_UNAVAILABLE, reason)
}

/// `{"error": "..."}`, saying what to do.
fn failure(status: StatusCode, error: &str) -> Response {
    let body = serde_json::json!({ "error": error }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
