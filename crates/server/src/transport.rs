//! The TCP peer transport: one outbound connection per peer (reconnecting with exponential backoff and
//! jitter), a bounded queue per peer that drops when full (Raft tolerates loss), TCP_NODELAY, many frames
//! per write; and a listener that checks each incoming connection's hello and feeds its frames to the
//! node loop. Wire format: [`crate::frame`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use node::PeerMessage;
use raft::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::frame::{self, HELLO_BYTES};
use crate::metrics::Metrics;
use crate::node_loop::NodeHandle;

/// Messages queued for one peer at most; more are dropped. Large enough for a burst of forwarded commands
/// (a follower forwards each pipelined client command as its own message): a dropped forward costs a
/// retry interval, which under a 10,000-command pipeline could run into the client timeout.
pub const PEER_QUEUE_CAPACITY: usize = 65_536;
/// Bytes gathered into one write at most.
const MAX_WRITE_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The node's [`node::Transport`]: a bounded queue per peer, drained by that peer's connection task.
/// The set of peers follows the configuration ([`PeerQueues::set_peers`]): a member added at run time
/// gets a connection, a removed one loses it (dropping its queue ends its task).
pub struct PeerQueues {
    queues: HashMap<NodeId, PeerLink>,
    dropped: u64,
    metrics: Arc<Metrics>,
    cluster_id: u64,
    own_id: NodeId,
    /// The tokio runtime the connection tasks run on (the node loop calls in from its own thread).
    runtime: tokio::runtime::Handle,
}

/// One peer's queue and the address its connection task dials.
struct PeerLink {
    addr: String,
    sender: mpsc::Sender<PeerMessage>,
}

impl node::Transport for PeerQueues {
    fn send(&mut self, to: NodeId, message: PeerMessage) {
        let Some(link) = self.queues.get(&to) else {
            tracing::debug!(to, kind = message.kind(), "no address known for this node; message dropped");
            self.metrics.record_dropped(to, "no_address");
            return;
        };
        if link.sender.try_send(message).is_err() {
            self.metrics.record_dropped(to, "queue_full");
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(to, dropped = self.dropped, "peer queue full; dropping messages");
            }
        }
    }
}

impl PeerQueues {
    /// Makes the peers exactly `peers` (id → peer address; this node's own id is ignored): starts a
    /// connection to each new one or one whose address changed, and drops the others' queues (their
    /// tasks end once the queue is drained and closed).
    pub fn set_peers(&mut self, peers: &std::collections::BTreeMap<NodeId, String>) {
        self.queues.retain(|id, link| {
            let keep = peers.get(id) == Some(&link.addr);
            if !keep {
                tracing::info!(peer = id, addr = %link.addr, "no longer sending to this peer");
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
        self.queues.iter().map(|(&id, link)| (id, link.addr.clone())).collect()
    }

    fn connect(&mut self, id: NodeId, addr: String) {
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_CAPACITY);
        let link = Link {
            cluster_id: self.cluster_id,
            own_id: self.own_id,
            peer: id,
            addr: addr.clone(),
            metrics: self.metrics.clone(),
        };
        self.runtime.spawn(run_outbound(link, receiver));
        self.queues.insert(id, PeerLink { addr, sender });
    }
}

/// Creates the queues and starts one connection task per peer. Must run inside the tokio runtime.
pub fn start_outbound(
    cluster_id: u64,
    own_id: NodeId,
    peers: impl IntoIterator<Item = (NodeId, String)>,
    metrics: Arc<Metrics>,
) -> PeerQueues {
    let mut queues = PeerQueues {
        queues: HashMap::new(),
        dropped: 0,
        metrics,
        cluster_id,
        own_id,
        runtime: tokio::runtime::Handle::current(),
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
    metrics: Arc<Metrics>,
}

async fn run_outbound(link: Link, mut queue: mpsc::Receiver<PeerMessage>) {
    let Link { cluster_id, own_id, peer, ref addr, .. } = link;
    let mut backoff = MIN_BACKOFF;
    let mut failures: u64 = 0;
    loop {
        match connect(cluster_id, own_id, peer, addr).await {
            Ok(stream) => {
                tracing::info!(peer, %addr, "connected to peer");
                backoff = MIN_BACKOFF;
                failures = 0;
                match send_frames(stream, &mut queue, &link).await {
                    Ok(()) => return, // The node loop is gone: nothing more to send.
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
        if queue.is_closed() && queue.is_empty() {
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

/// Writes queued messages until the queue closes (`Ok`) or the connection fails (`Err`).
async fn send_frames(
    mut stream: TcpStream,
    queue: &mut mpsc::Receiver<PeerMessage>,
    link: &Link,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    while let Some(message) = queue.recv().await {
        out.clear();
        frame::encode_frame(&message, &mut out);
        let mut messages = 1;
        while out.len() < MAX_WRITE_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            frame::encode_frame(&next, &mut out);
            messages += 1;
        }
        stream.write_all(&out).await?;
        link.metrics.record_sent(link.peer, messages, out.len() as u64);
    }
    Ok(())
}

/// Accepts peer connections until the listener task is aborted.
pub async fn run_listener(
    listener: TcpListener,
    cluster_id: u64,
    own_id: NodeId,
    node: NodeHandle,
    metrics: Arc<Metrics>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let node = node.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve_inbound(stream, cluster_id, own_id, node, &metrics).await {
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

async fn serve_inbound(
    mut stream: TcpStream,
    cluster_id: u64,
    own_id: NodeId,
    node: NodeHandle,
    metrics: &Metrics,
) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut hello = [0u8; HELLO_BYTES];
    tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut hello))
        .await
        .map_err(|_| "no hello within the timeout".to_string())?
        .map_err(|e| format!("reading the hello: {e}"))?;
    let theirs = frame::check_hello(&hello, cluster_id).map_err(|e| format!("refused: {e}"))?;
    stream.write_all(&frame::encode_hello(cluster_id, own_id)).await.map_err(|e| e.to_string())?;
    let from = theirs.node_id;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let buffered = buf.len();
            match frame::decode_frame(&mut buf) {
                Ok(Some(message)) => {
                    metrics.record_received(from, (buffered - buf.len()) as u64);
                    if !node.peer_message(from, message).await {
                        return Ok(()); // The node loop stopped.
                    }
                }
                Ok(None) => break,
                Err(error) => return Err(format!("from node {from}: {error}")),
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
    }
}
