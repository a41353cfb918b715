//! The TCP peer transport: one outbound connection per peer (reconnecting with exponential backoff and
//! jitter), written directly by the node loop when the socket takes the bytes, else through a queue per
//! peer bounded in messages and in bytes that drops when full (Raft tolerates loss: a dropped
//! AppendEntries or heartbeat is resent, a dropped forward is retried; see [`crate::outbox`]),
//! TCP_NODELAY, many frames per write; and a listener that checks each incoming connection's hello and
//! feeds its frames to the node loop, closing a connection whose peer sends a frame over
//! `max_peer_frame_bytes`. Messages are encoded when queued, so the queue's bytes are known exactly
//! (`raftkv_peer_queue_bytes`). Wire format: [`crate::frame`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use node::PeerMessage;
use raft::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::frame::{self, FrameError, HELLO_BYTES};
use crate::metrics::Metrics;
use crate::node_loop::NodeHandle;
use crate::outbox::{Outbox, OutboxLimits, OutboxMetrics};
use crate::peer_faults::PeerFaults;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How much one peer's queue may hold (`max_peer_queue_messages`, `max_peer_queue_bytes`). The message
/// default is large enough for a burst of forwarded commands (a follower forwards each pipelined client
/// command as its own message): a dropped forward costs a retry interval, which under a 10,000-command
/// pipeline could run into the client timeout.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    /// A message whose frame is larger is never sent: the peer would refuse it and drop the connection.
    pub max_frame_bytes: usize,
}

/// One peer's outbox and the address its connection task dials. Dropping it (the peer left the
/// configuration) closes the outbox, which ends the task once what waits is written.
struct PeerQueue {
    addr: String,
    outbox: Arc<Outbox>,
}

impl Drop for PeerQueue {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// The node's [`node::Transport`]: an [`Outbox`] per peer, written directly by the node loop and drained
/// by that peer's connection task. The set of peers follows the configuration ([`PeerQueues::set_peers`]):
/// a member added at run time gets a connection, a removed one loses it.
pub struct PeerQueues {
    queues: HashMap<NodeId, PeerQueue>,
    limits: QueueLimits,
    dropped: u64,
    metrics: Arc<Metrics>,
    /// Test-only cut links (always empty without the `fault-injection` feature).
    faults: Arc<PeerFaults>,
    cluster_id: u64,
    own_id: NodeId,
    /// The tokio runtime the connection tasks run on.
    runtime: tokio::runtime::Handle,
    /// Reused for every frame: encoding allocates nothing once it has grown.
    scratch: BytesMut,
}

impl node::Transport for PeerQueues {
    fn send(&mut self, to: NodeId, message: PeerMessage) {
        if self.faults.drops(to) {
            self.metrics.record_dropped(to, "fault_injection");
            return;
        }
        let Some(queue) = self.queues.get(&to) else {
            tracing::debug!(to, kind = message.kind(), "no address known for this node; message dropped");
            self.metrics.record_dropped(to, "no_address");
            return;
        };
        self.scratch.clear();
        frame::encode_frame(&message, &mut self.scratch);
        let result = if self.scratch.len() > self.limits.max_frame_bytes {
            tracing::error!(
                to,
                kind = message.kind(),
                bytes = self.scratch.len(),
                "a message is over max_peer_frame_bytes"
            );
            Err("too_large")
        } else {
            crate::latency_trace::mark("peer_queued");
            queue.outbox.push(&self.scratch)
        };
        if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
            self.scratch = BytesMut::new(); // Do not keep a huge buffer after one large message.
        }
        if let Err(reason) = result {
            self.metrics.record_dropped(to, reason);
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(to, dropped = self.dropped, reason, "peer queue full; dropping messages");
            }
        }
    }
}

/// The encoding buffer's capacity kept between messages at most.
const SCRATCH_KEEP_BYTES: usize = 1 << 20;

impl PeerQueues {
    /// Makes the peers exactly `peers` (id → peer address; this node's own id is ignored): starts a
    /// connection to each new one or one whose address changed, and drops the others' queues (their
    /// tasks end once the queue is drained and closed).
    pub fn set_peers(&mut self, peers: &std::collections::BTreeMap<NodeId, String>) {
        self.queues.retain(|id, queue| {
            let keep = peers.get(id) == Some(&queue.addr);
            if !keep {
                tracing::info!(peer = id, addr = %queue.addr, "no longer sending to this peer");
            }
            keep
        });
        for (&id, addr) in peers {
            if id != self.own_id && !self.queues.contains_key(&id) {
                tracing::info!(peer = id, %addr, "sending to a new peer");
                self.connect(id, addr.clone());
            }
        }
    }

    /// The peers messages go to, with their addresses.
    pub fn peers(&self) -> std::collections::BTreeMap<NodeId, String> {
        self.queues.iter().map(|(&id, queue)| (id, queue.addr.clone())).collect()
    }

    fn connect(&mut self, id: NodeId, addr: String) {
        let label = self.metrics.peer_label(id);
        let metrics = OutboxMetrics {
            queued_bytes: self.metrics.peer_queue_bytes.with_label_values(&[&label]),
            queued_messages: self.metrics.peer_queue_messages.with_label_values(&[&label]),
            sent_messages: self.metrics.peer_sent_messages.with_label_values(&[&label]),
            sent_bytes: self.metrics.peer_sent_bytes.with_label_values(&[&label]),
        };
        let limits =
            OutboxLimits { max_messages: self.limits.max_messages, max_bytes: self.limits.max_bytes };
        let outbox = Outbox::new(limits, metrics);
        let link = Link { cluster_id: self.cluster_id, own_id: self.own_id, peer: id, addr: addr.clone() };
        self.runtime.spawn(run_outbound(link, outbox.clone()));
        self.queues.insert(id, PeerQueue { addr, outbox });
    }
}

/// Creates the queues and starts one connection task per peer. Must run inside the tokio runtime.
pub fn start_outbound(
    cluster_id: u64,
    own_id: NodeId,
    peers: impl IntoIterator<Item = (NodeId, String)>,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    faults: Arc<PeerFaults>,
) -> PeerQueues {
    let mut queues = PeerQueues {
        queues: HashMap::new(),
        limits,
        dropped: 0,
        metrics,
        faults,
        cluster_id,
        own_id,
        runtime: tokio::runtime::Handle::current(),
        scratch: BytesMut::new(),
    };
    queues.set_peers(&peers.into_iter().collect());
    queues
}

/// One outbound connection's fixed facts.
struct Link {
    cluster_id: u64,
    own_id: NodeId,
    peer: NodeId,
    addr: String,
}

async fn run_outbound(link: Link, outbox: Arc<Outbox>) {
    let Link { cluster_id, own_id, peer, ref addr } = link;
    let mut backoff = MIN_BACKOFF;
    let mut failures: u64 = 0;
    loop {
        match connect(cluster_id, own_id, peer, addr).await {
            Ok(stream) => {
                tracing::info!(peer, %addr, "connected to peer");
                backoff = MIN_BACKOFF;
                failures = 0;
                match outbox.serve(stream).await {
                    Ok(()) => return, // The node no longer sends to this peer.
                    Err(error) => tracing::info!(peer, %addr, %error, "peer connection lost; reconnecting"),
                }
            }
            Err(error) => {
                failures += 1;
                // Loud once, then quiet: a peer that is down is normal while a cluster starts.
                if failures == 1 || failures.is_power_of_two() && failures >= 64 {
                    tracing::warn!(peer, %addr, %error, failures, "cannot reach peer; will keep trying");
                }
            }
        }
        tokio::time::sleep(with_jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if outbox.is_closed() {
            return;
        }
    }
}

/// A random-looking duration in `[d/2, d)`, so that peers that failed together do not retry together.
fn with_jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(d.as_nanos() as u64);
    let fraction = (hasher.finish() % 1_000) as u32;
    d / 2 + d / 2 * fraction / 1_000
}

async fn connect(cluster_id: u64, own_id: NodeId, peer: NodeId, addr: &str) -> std::io::Result<TcpStream> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    stream.write_all(&frame::encode_hello(cluster_id, own_id)).await?;
    let mut hello = [0u8; HELLO_BYTES];
    tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut hello))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello from peer"))??;
    let theirs = frame::check_hello(&hello, cluster_id)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    if theirs.node_id != peer {
        tracing::warn!(
            expected = peer,
            found = theirs.node_id,
            addr,
            "the peer at this address has another id"
        );
    }
    Ok(stream)
}

/// Accepts peer connections until the listener task is aborted.
pub async fn run_listener(
    listener: TcpListener,
    cluster_id: u64,
    own_id: NodeId,
    max_frame_bytes: usize,
    node: NodeHandle,
    metrics: Arc<Metrics>,
    faults: Arc<PeerFaults>,
) {
    let inbound = Arc::new(Inbound { cluster_id, own_id, max_frame_bytes, node, metrics, faults });
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let inbound = inbound.clone();
                tokio::spawn(async move {
                    if let Err((reason, error)) = serve_inbound(stream, &inbound).await {
                        if let Some(reason) = reason {
                            inbound.metrics.peer_connections_closed.with_label_values(&[reason]).inc();
                        }
                        tracing::warn!(%addr, %error, "closed a peer connection");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What every incoming peer connection shares.
struct Inbound {
    cluster_id: u64,
    own_id: NodeId,
    max_frame_bytes: usize,
    node: NodeHandle,
    metrics: Arc<Metrics>,
    /// Test-only cut links (always empty without the `fault-injection` feature).
    faults: Arc<PeerFaults>,
}

/// Why an incoming connection was closed: the `reason` label when the peer sent something wrong, and
/// the text for the log.
type Closed = (Option<&'static str>, String);

async fn serve_inbound(mut stream: TcpStream, inbound: &Inbound) -> Result<(), Closed> {
    let io_error = |e: std::io::Error| (None, e.to_string());
    stream.set_nodelay(true).map_err(io_error)?;
    let mut hello = [0u8; HELLO_BYTES];
    tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut hello))
        .await
        .map_err(|_| (Some("hello"), "no hello within the timeout".to_string()))?
        .map_err(|e| (None, format!("reading the hello: {e}")))?;
    let theirs = frame::check_hello(&hello, inbound.cluster_id)
        .map_err(|e| (Some("hello"), format!("refused: {e}")))?;
    stream.write_all(&frame::encode_hello(inbound.cluster_id, inbound.own_id)).await.map_err(io_error)?;
    let from = theirs.node_id;
    let (received_messages, received_bytes) = inbound.metrics.received_counters(from);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let buffered = buf.len();
            match frame::decode_frame(&mut buf, inbound.max_frame_bytes) {
                Ok(Some(message)) => {
                    received_messages.inc();
                    received_bytes.inc_by((buffered - buf.len()) as u64);
                    crate::latency_trace::mark("peer_decoded");
                    if inbound.faults.drops(from) {
                        continue;
                    }
                    if !inbound.node.peer_message(from, message).await {
                        return Ok(()); // The node loop stopped.
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let reason = if matches!(error, FrameError::TooLong { .. }) {
                        "frame_too_large"
                    } else {
                        "bad_frame"
                    };
                    return Err((Some(reason), format!("from node {from}: {error}")));
                }
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = stream.read_buf(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Ok(());
        }
    }
}
