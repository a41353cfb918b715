//! `raftkv serve`: one node, from a validated [`ServerConfig`] to a running process, and back down on
//! SIGINT/SIGTERM (stop accepting, fail in-flight requests, let storage close, exit 0).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::address_book::AddressBook;
use crate::admin::{self, AdminState};
use crate::client::{self, ClientApi};
use crate::cluster_admin::ClusterAdmin;
use crate::config::ServerConfig;
use crate::info::StaticInfo;
use crate::metrics::Metrics;
use crate::node_loop::{self, StartError};
use crate::peer_faults::PeerFaults;
use crate::transport;

/// Why `serve` failed. Each maps to one clear line on stderr and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the node stopped: {0}")]
    NodeFailed(String),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// How long a restarted node keeps trying a port the previous process still held.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let started = Instant::now();
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse && started.elapsed() < BIND_RETRY_FOR =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => return Err(ServeError::Bind { what, addr, source }),
        }
    }
}

/// Runs one node until a signal or a fatal error.
pub fn run(config: ServerConfig) -> Result<(), ServeError> {
    config.validate()?;
    // One worker thread for the node loop and every socket of this node: see `node_loop` for why. (A
    // multi-thread runtime with one worker rather than a current-thread one: its `block_in_place` lets
    // another thread serve the sockets while the node loop waits for an fsync; see `metered_disk`.)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("raftkv-io")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(serve(config));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let peer_listener = bind("peers", config.peer_listen).await?;
    let client_listener = bind("clients", config.client_listen).await?;
    let admin_listener = match config.admin_listen {
        Some(addr) => Some(bind("admin HTTP", addr).await?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new(config.peers().map(|m| m.id)));
    let book = Arc::new(AddressBook::new(config.members_as_advertised()));
    let faults = Arc::new(PeerFaults::default());
    let limits = config.limits;
    let queue_limits = transport::QueueLimits {
        max_messages: limits.max_peer_queue_messages,
        max_bytes: limits.max_peer_queue_bytes,
        max_frame_bytes: limits.max_peer_frame_bytes,
    };
    // The node loop connects to the members of the configuration in force once it has read it.
    let queues = transport::start_outbound(
        config.cluster_id,
        config.node_id,
        [],
        queue_limits,
        metrics.clone(),
        faults.clone(),
    );
    let (node, incarnation) = node_loop::build_node(&config, queues, metrics.clone())?;
    let tick = Duration::from_millis(config.timing.tick_ms);
    let node_loop::NodeLoop { handle, mut stopped } = node_loop::spawn(node, incarnation, tick, book.clone());

    let peer_task = tokio::spawn(transport::run_listener(
        peer_listener,
        config.cluster_id,
        config.node_id,
        limits.max_peer_frame_bytes,
        handle.clone(),
        metrics.clone(),
        faults.clone(),
    ));
    let info = Arc::new(StaticInfo {
        started: Instant::now(),
        client_addr: config.client_advertise(),
        peer_addr: config.peer_advertise(),
        admin_addr: config.admin_advertise(),
        cluster_id: config.cluster_id,
        book: book.clone(),
    });
    let cluster = ClusterAdmin {
        node: handle.clone(),
        book: book.clone(),
        election_timeout: Duration::from_millis(config.timing.election_timeout_ms),
    };
    let admin_task = admin_listener.map(|listener| {
        let state = AdminState {
            node_id: config.node_id,
            node: handle.clone(),
            info: info.clone(),
            metrics: metrics.clone(),
            health_max_lag_entries: config.health_max_lag_entries,
            peer_faults: faults,
            cluster: cluster.clone(),
        };
        tokio::spawn(admin::run(listener, Arc::new(state), limits.max_admin_connections))
    });
    let api = Arc::new(ClientApi::new(handle.clone(), limits, info, metrics, cluster));
    let client_task = tokio::spawn(client::run_listener(client_listener, api));
    // Asks the cluster to add this node once it can answer the leader (see `join`).
    let join_task =
        config.join.is_some().then(|| tokio::spawn(crate::join::join(config.clone(), book.clone())));
    tracing::info!(
        node_id = config.node_id,
        client = %config.client_listen,
        peers = %config.peer_listen,
        admin = ?config.admin_listen,
        incarnation,
        "raftkv node is serving"
    );

    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            // The peers keep running meanwhile: the transfer needs them.
            hand_off_leadership(&handle, Duration::from_millis(config.timing.election_timeout_ms)).await;
            tracing::info!(signal, "shutting down: no new connections, failing in-flight requests");
            Ok(())
        }
        result = &mut stopped => Err(result.unwrap_or_else(|_| Err("the node loop vanished".into()))),
    };
    client_task.abort();
    peer_task.abort();
    if let Some(task) = join_task {
        task.abort();
    }
    if let Some(task) = admin_task {
        task.abort();
    }
    match outcome {
        Ok(()) => {
            handle.shutdown().await;
            // Storage is synced on every write; the loop returning drops it (and its lock).
            let _ = tokio::time::timeout(Duration::from_secs(5), stopped).await;
            // Give connection writers a moment to send the errors of failed requests.
            tokio::time::sleep(Duration::from_millis(100)).await;
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Err(Ok(())) => Ok(()),
        Err(Err(reason)) => Err(ServeError::NodeFailed(reason)),
    }
}

/// A leader that is asked to stop first hands leadership to the most up-to-date voter (dissertation
/// §3.10), so the cluster does not sit out an election timeout without a leader. Bounded: after two
/// election timeouts it stops anyway (the transfer is abandoned by the core after one).
async fn hand_off_leadership(node: &crate::node_loop::NodeHandle, election_timeout: Duration) {
    let Some(status) = node.status().await else { return };
    if status.role != raft::Role::Leader {
        return;
    }
    let target = status
        .followers
        .iter()
        .filter(|f| status.voters.contains(&f.id))
        .max_by_key(|f| (f.match_index, std::cmp::Reverse(f.since_last_contact)))
        .map(|f| f.id);
    let Some(target) = target else {
        tracing::info!("stopping a leader with no other voter: nobody to hand leadership to");
        return;
    };
    match node.transfer_leadership(target).await {
        Some(Ok(())) => {
            tracing::info!(target, "stopping: handing leadership to the most up-to-date voter first")
        }
        Some(Err(error)) => {
            tracing::warn!(target, %error, "stopping without handing leadership over");
            return;
        }
        None => return,
    }
    let deadline = Instant::now() + 2 * election_timeout;
    while Instant::now() < deadline {
        match node.status().await {
            Some(now) if now.role != raft::Role::Leader => {
                tracing::info!(leader = ?now.leader_id, term = now.term, "leadership handed over");
                return;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            None => return,
        }
    }
    tracing::warn!(target, "leadership was not handed over in time; stopping anyway");
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
