//! The admin HTTP endpoint of a node, on the same tokio runtime as the rest:
//!
//! - `GET /status`: the node's state as JSON ([`status`]);
//! - `GET /metrics`: Prometheus text exposition ([`crate::metrics`]);
//! - `GET /health`: 200 or 503 with a one-line reason ([`health`]);
//! - `GET /cluster`: every member's `/status` at once, gathered by this node ([`cluster`]);
//! - `GET /snapshot`: a consistent snapshot of the whole state as one snapshot file, streamed
//!   (`raftkv backup`; [`backup`]);
//! - `/members` and `/transfer-leader/{id}`: membership changes ([`members`]);
//! - `GET /`: the live view, a page that polls `/cluster` ([`web`]; the files are in `web/` at the
//!   repository root, embedded in the binary).
//!
//! Every answer is read from one [`NodeStatus`](crate::node_loop::NodeStatus) asked of the node loop,
//! the same data path as INFO, so the three pages and INFO never disagree. A node loop that does not
//! answer within [`STATUS_TIMEOUT`] (stopping, or stuck on a slow disk) gets a 503, never a hung request.
//! Anything else is a 404 (or 405 for another method on a known path); no request can panic the node.
//!
//! Bounds: at most `max_admin_connections` connections at once (more are closed at once), and a client
//! must send a request's headers within [`HEADER_READ_TIMEOUT`] (hyper's header-read timeout), so slow
//! or idle clients cannot pile up. HTTP/1.1 only.

pub mod backup;
pub mod cluster;
pub mod health;
pub mod members;
pub mod status;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use raft::NodeId;

use crate::info::StaticInfo;
use crate::metrics::Metrics;
use crate::node_loop::{NodeHandle, NodeStatus};
use crate::peer_faults::PeerFaults;

/// How long a request waits for the node loop's status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every admin request may read.
pub struct AdminState {
    pub node_id: NodeId,
    pub node: NodeHandle,
    pub info: Arc<StaticInfo>,
    pub metrics: Arc<Metrics>,
    /// `/health` fails when applying trails the commit index by more entries than this.
    pub health_max_lag_entries: u64,
    /// The transport's test-only fault switch; only `POST /fault/drop-peers` (feature `fault-injection`)
    /// sets it.
    pub peer_faults: Arc<PeerFaults>,
    /// Runs the membership routes ([`members`]).
    pub cluster: crate::cluster_admin::ClusterAdmin,
}

pub fn router(state: Arc<AdminState>) -> Router {
    let router = Router::new();
    #[cfg(feature = "fault-injection")]
    let router = router.route("/fault/drop-peers", axum::routing::post(post_drop_peers));
    router
        .route("/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/health", get(get_health))
        .route("/cluster", get(get_cluster))
        .route(
            "/snapshot",
            get(|State(state): State<Arc<AdminState>>| async move { backup::snapshot(&state.node).await }),
        )
        .route(
            "/members",
            get(|State(s): State<Arc<AdminState>>| async move {
                members::run(&s.cluster, vec!["RAFT.MEMBER".into(), "LIST".into()]).await
            }),
        )
        .route(
            "/members/{id}",
            post(|State(s): State<Arc<AdminState>>, Path(id): Path<u64>, uri: Uri| async move {
                members::run(&s.cluster, members::add_arguments(id, uri.query())).await
            })
            .delete(|State(s): State<Arc<AdminState>>, Path(id): Path<u64>| async move {
                members::run(&s.cluster, vec!["RAFT.MEMBER".into(), "REMOVE".into(), id.to_string()]).await
            }),
        )
        .route(
            "/members/{id}/promote",
            post(|State(s): State<Arc<AdminState>>, Path(id): Path<u64>| async move {
                members::run(&s.cluster, vec!["RAFT.MEMBER".into(), "PROMOTE".into(), id.to_string()]).await
            }),
        )
        .route(
            "/transfer-leader/{id}",
            post(|State(s): State<Arc<AdminState>>, Path(id): Path<u64>| async move {
                members::run(&s.cluster, vec!["RAFT.TRANSFER-LEADER".into(), id.to_string()]).await
            }),
        )
        .route("/", get(|| async { web::asset("index.html") }))
        .route("/{file}", get(get_asset))
        .fallback(not_found)
        .with_state(state)
}

/// A connection that has not sent a whole request head within this time is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves admin requests until the task is aborted, on at most `max_connections` connections at once.
pub async fn run(listener: TcpListener, state: Arc<AdminState>, max_connections: usize) {
    let router = router(state);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting an admin connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%addr, max_connections, "admin connection limit reached; closing a new one");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = builder.serve_connection(io, service).await {
                tracing::debug!(%addr, %error, "admin connection ended");
            }
        });
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

/// Test-only (feature `fault-injection`): the body lists the peers (ids separated by commas or spaces) this
/// node drops every message to and from, replacing the previous list; an empty body heals.
#[cfg(feature = "fault-injection")]
async fn post_drop_peers(State(state): State<Arc<AdminState>>, body: String) -> Response {
    match crate::peer_faults::parse_peer_list(&body) {
        Ok(peers) => {
            tracing::warn!(?peers, "fault injection: dropping every message to and from these peers");
            let text = format!("dropping every message to and from {peers:?}\n");
            state.peer_faults.set_dropped(peers);
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error + "\n").into_response(),
    }
}

/// `GET /` and the live view's other files.
async fn get_asset(Path(file): Path<String>) -> Response {
    web::asset(&file)
}

/// This node's status (from its loop) and every other member's (over HTTP, concurrently, each bounded by
/// [`cluster::MEMBER_TIMEOUT`]), so the whole answer takes about as long as the slowest member allows.
async fn get_cluster(State(state): State<Arc<AdminState>>) -> Response {
    let own_id = state.node_id;
    let admin_addr = |id: NodeId| state.info.member(id).and_then(|m| m.admin_addr.clone());
    // Ask every configured member at once, before waiting for this node's own loop.
    let fetches: Vec<_> = state
        .info
        .book
        .all()
        .iter()
        .filter(|member| member.id != own_id)
        .map(|member| (member.id, tokio::spawn(cluster::fetch_member(member.id, admin_addr(member.id)))))
        .collect();
    let mut nodes = Vec::with_capacity(fetches.len() + 1);
    match node_status(&state).await {
        Ok(status) => {
            // A member of the configuration in force that the flags do not name: nobody told this node
            // its admin address, so it shows as down with that reason.
            for &id in status.voters.iter().chain(&status.outgoing_voters).chain(&status.learners) {
                if id != own_id && state.info.member(id).is_none() {
                    nodes.push(cluster::MemberState::down(
                        id,
                        None,
                        "no admin address configured for it".into(),
                    ));
                }
            }
            nodes.push(match serde_json::to_value(status::view(&state.info, &status)) {
                Ok(json) => cluster::MemberState::up(own_id, state.info.admin_addr.clone(), json),
                Err(error) => {
                    cluster::MemberState::down(own_id, None, format!("encoding the status: {error}"))
                }
            });
        }
        Err(_) => nodes.push(cluster::MemberState::down(
            own_id,
            state.info.admin_addr.clone(),
            format!("the node loop did not answer within {STATUS_TIMEOUT:?}"),
        )),
    }
    for (id, fetch) in fetches {
        nodes.push(fetch.await.unwrap_or_else(|error| {
            cluster::MemberState::down(id, admin_addr(id), format!("asking it failed: {error}"))
        }));
    }
    nodes.sort_by_key(|node| node.id);
    let view = cluster::ClusterView { served_by: own_id, nodes };
    match serde_json::to_string(&view) {
        Ok(json) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json + "\n")
                .into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the cluster view: {error}\n"))
            .into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    let text =
        format!("no page at {}; try /, /cluster, /status, /metrics, /health or /snapshot\n", uri.path());
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
