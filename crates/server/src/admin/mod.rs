//! The admin HTTP endpoint of a node, on the same tokio runtime as the rest:
//!
//! - `GET /status`: the node's state as JSON ([`status`]);
//! - `GET /metrics`: Prometheus text exposition ([`crate::metrics`]);
//! - `GET /health`: 200 or 503 with a one-line reason ([`health`]).
//!
//! Every answer is read from one [`NodeStatus`](crate::node_loop::NodeStatus) asked of the node loop,
//! the same data path as INFO, so the three pages and INFO never disagree. A node loop that does not
//! answer within [`STATUS_TIMEOUT`] (stopping, or stuck on a slow disk) gets a 503, never a hung request.
//! Anything else is a 404 (or 405 for another method on a known path); no request can panic the node.

pub mod health;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::info::StaticInfo;
use crate::metrics::Metrics;
use crate::node_loop::{NodeHandle, NodeStatus};

/// How long a request waits for the node loop's status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every admin request may read.
pub struct AdminState {
    pub node: NodeHandle,
    pub info: Arc<StaticInfo>,
    pub metrics: Arc<Metrics>,
    /// `/health` fails when applying trails the commit index by more entries than this.
    pub health_max_lag_entries: u64,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/health", get(get_health))
        .fallback(not_found)
        .with_state(state)
}

/// Serves admin requests until the task is aborted.
pub async fn run(listener: TcpListener, state: Arc<AdminState>) {
    if let Err(error) = axum::serve(listener, router(state)).await {
        tracing::error!(%error, "the admin HTTP endpoint stopped");
    }
}

/// The node's status, or the 503 that explains why there is none.
async fn node_status(state: &AdminState) -> Result<NodeStatus, Response> {
    match tokio::time::timeout(STATUS_TIMEOUT, state.node.status()).await {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err(unavailable("the node is shutting down".into())),
        Err(_) => Err(unavailable(format!("the node loop did not answer within {STATUS_TIMEOUT:?}"))),
    }
}

fn unavailable(reason: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reason + "\n")
        .into_response()
}

async fn get_status(State(state): State<Arc<AdminState>>) -> Response {
    let status = match node_status(&state).await {
        Ok(status) => status,
        Err(response) => return response,
    };
    match serde_json::to_string_pretty(&status::view(&state.info, &status)) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json + "\n").into_response(),
        // Serializing plain structs of numbers and strings cannot fail; answer rather than panic anyway.
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the status: {error}\n")).into_response()
        }
    }
}

async fn get_metrics(State(state): State<Arc<AdminState>>) -> Response {
    // Without a status the state gauges keep their last values; the counters are current either way.
    if let Ok(status) = node_status(&state).await {
        state.metrics.set_status(&status);
    }
    let content_type = prometheus::TEXT_FORMAT;
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

async fn get_health(State(state): State<Arc<AdminState>>) -> Response {
    let status = match node_status(&state).await {
        Ok(status) => status,
        Err(response) => return response,
    };
    match health::check(&status, state.health_max_lag_entries) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text + "\n").into_response(),
        Err(reason) => unavailable(reason),
    }
}

async fn not_found(uri: Uri) -> Response {
    let text = format!("no page at {}; try /status, /metrics or /health\n", uri.path());
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
