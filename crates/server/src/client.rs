//! The client API: a RESP listener. Each connection has a reader task (parse, decide, submit to the node
//! loop) and a writer task ([`crate::client_writer`]) that answers **in request order**: the reader pushes
//! one entry per command into a FIFO — a reply that is known at once, or the receiver of one the node will
//! send — and the writer takes them in order. So many commands are in flight per connection (pipelining)
//! while replies keep their order.
//!
//! What one connection can make the node hold is bounded ([`crate::limits`]): the input buffer by
//! `max_request_bytes` (the parser refuses a request that declares more, before it arrives); the FIFO by
//! `max_pipelined_commands` (when it is full the reader waits, so the node stops reading the socket and TCP
//! pushes back on the client); unsent replies by `max_client_output_bytes` (the writer closes a connection
//! whose client does not read). A connection idle for `client_idle_timeout_secs` is closed, and after the
//! client stops sending, its last replies get [`FLUSH_AFTER_EOF`] to go out. The bytes held are the
//! `raftkv_client_input_buffer_bytes` and `raftkv_client_output_buffer_bytes` gauges.
//!
//! A client that disconnects mid-command disturbs nothing: the node still answers into a oneshot nobody
//! listens to any more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kv::Reply;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::client_writer::write_replies;
use crate::cluster_admin::ClusterAdmin;
use crate::info;
use crate::limits::Limits;
use crate::metrics::{HeldBytes, Metrics};
use crate::node_loop::{NodeHandle, SHUTTING_DOWN};

/// After a client stops sending (EOF), its remaining replies get this long to be written; a client that
/// half-closes and never reads cannot hold its connection (and its slot under the limit) forever.
pub const FLUSH_AFTER_EOF: Duration = Duration::from_secs(30);

/// The answer a client over the connection limit gets before the node closes its connection.
pub const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// What the client listener shares across connections.
pub struct ClientApi {
    pub node: NodeHandle,
    pub limits: Limits,
    pub info: Arc<info::StaticInfo>,
    pub connections: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// Runs `RAFT.MEMBER` and `RAFT.TRANSFER-LEADER`.
    pub cluster: ClusterAdmin,
    next_client_id: AtomicU64,
}

impl ClientApi {
    pub fn new(
        node: NodeHandle,
        limits: Limits,
        info: Arc<info::StaticInfo>,
        metrics: Arc<Metrics>,
        cluster: ClusterAdmin,
    ) -> Self {
        ClientApi {
            node,
            limits,
            info,
            connections: Arc::new(Semaphore::new(limits.max_client_connections)),
            metrics,
            cluster,
            next_client_id: AtomicU64::new(1),
        }
    }
}

/// Decrements the open-connections gauge when a connection's task ends, however it ends.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> OpenConnection {
        metrics.client_connections.inc();
        metrics.client_connections_accepted.inc();
        OpenConnection(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.client_connections.dec();
    }
}

/// Accepts clients until the task is aborted.
pub async fn run_listener(listener: TcpListener, api: Arc<ClientApi>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE: wait a little rather than spin.
                tracing::warn!(%error, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = api.connections.clone().try_acquire_owned() else {
            api.metrics.client_connections_refused.inc();
            // Never wait on a refused client: a fresh socket's send buffer takes these few bytes, and a
            // client that cannot take them loses nothing but the explanation.
            let _ = stream.try_write(MAX_CLIENTS_REACHED);
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new(api.metrics.clone());
            if let Err(error) = serve_client(stream, &api).await {
                tracing::debug!(%addr, %error, "client connection ended");
            }
        });
    }
}

/// One entry of a connection's reply FIFO, with the protocol version it is to be encoded in (HELLO may
/// change it between two requests of one pipeline).
pub(crate) enum Pending {
    Ready(resp::Frame, resp::ProtocolVersion),
    Waiting(oneshot::Receiver<Reply>, resp::ProtocolVersion),
    /// Write this, then close the connection.
    Last(resp::Frame, resp::ProtocolVersion),
    /// A state-machine reply known at once (INFO's text, a protocol error); write it, then close if `close`.
    Known(Reply, resp::ProtocolVersion, bool),
}

/// One FIFO entry: the reply to come, and the command it answers (a table name, for the commands metric;
/// `None` for a protocol error, which answers no command).
pub(crate) struct Queued(pub(crate) Pending, pub(crate) Option<&'static str>);

/// The command's name as the command table spells it, or `unknown`: never the client's own bytes, so the
/// metric's label set stays bounded whatever clients send.
fn command_label(argv: &[bytes::Bytes]) -> &'static str {
    argv.first().and_then(|name| resp::table::lookup(name)).map_or("unknown", |row| row.name)
}

/// How the reader stopped.
enum ReadEnd {
    /// The client sent EOF, QUIT, or a protocol error (answered): let the writer finish.
    Finished,
    /// The writer is gone (it closed the connection, or the client vanished).
    WriterGone,
    /// Nothing arrived within the idle timeout.
    Idle,
}

async fn serve_client(stream: TcpStream, api: &ClientApi) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let client_id = api.next_client_id.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = stream.into_split();
    let (fifo, replies) = mpsc::channel(api.limits.max_pipelined_commands);
    let max_output = api.limits.max_client_output_bytes;
    let mut writer_task = tokio::spawn(write_replies(writer, replies, api.metrics.clone(), max_output));
    let end = read_requests(reader, &fifo, api, client_id).await?;
    drop(fifo);
    let flush_bound = match end {
        ReadEnd::Idle => {
            api.metrics.client_connections_closed.with_label_values(&["idle"]).inc();
            Duration::ZERO
        }
        ReadEnd::Finished | ReadEnd::WriterGone => FLUSH_AFTER_EOF,
    };
    match tokio::time::timeout(flush_bound, &mut writer_task).await {
        Ok(result) => result.unwrap_or(Ok(())),
        Err(_) => {
            writer_task.abort();
            if flush_bound > Duration::ZERO {
                api.metrics.client_connections_closed.with_label_values(&["flush_timeout"]).inc();
            }
            Ok(())
        }
    }
}

/// Reads, parses and submits requests until the client stops, the writer goes, or the idle timeout.
async fn read_requests(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    fifo: &mpsc::Sender<Queued>,
    api: &ClientApi,
    client_id: u64,
) -> std::io::Result<ReadEnd> {
    let mut connection = resp::Connection::new(client_id, api.limits.resp());
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut held = HeldBytes::new(api.metrics.client_input_buffer_bytes.clone());
    let idle_timeout = api.limits.client_idle_timeout();
    loop {
        loop {
            let argv = match connection.parse(&mut buf) {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(error) => {
                    // After a framing error nobody can tell where the next request starts: close.
                    api.metrics.client_connections_closed.with_label_values(&["protocol_error"]).inc();
                    let known = Pending::Known(error.to_reply(), connection.protocol(), true);
                    let _ = fifo.send(Queued(known, None)).await;
                    return Ok(ReadEnd::Finished);
                }
            };
            held.set(buf.len());
            let command = Some(command_label(&argv));
            let action = connection.handle(argv);
            let version = connection.protocol();
            let pending = match action {
                resp::Action::Reply(frame) => Pending::Ready(frame, version),
                resp::Action::ReplyAndClose(frame) => {
                    let _ = fifo.send(Queued(Pending::Last(frame, version), command)).await;
                    return Ok(ReadEnd::Finished);
                }
                resp::Action::Execute { command, consistency } => {
                    Pending::Waiting(api.node.submit(command, consistency).await, version)
                }
                resp::Action::Info { section } => {
                    Pending::Known(info_reply(api, section.as_deref()).await, version, false)
                }
                // A change may take seconds: run it on its own task, answered in order like any reply.
                resp::Action::Cluster { argv } => {
                    let (reply, receiver) = oneshot::channel();
                    let cluster = api.cluster.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(cluster.execute(&argv).await);
                    });
                    Pending::Waiting(receiver, version)
                }
            };
            // Waits while `max_pipelined_commands` are unanswered: the socket is not read meanwhile.
            if fifo.send(Queued(pending, command)).await.is_err() {
                return Ok(ReadEnd::WriterGone);
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let read = async {
            match idle_timeout {
                Some(timeout) => tokio::time::timeout(timeout, reader.read_buf(&mut buf)).await.ok(),
                None => Some(reader.read_buf(&mut buf).await),
            }
        };
        let read = tokio::select! {
            read = read => read,
            // The writer closed the connection (a client that does not read its replies).
            () = fifo.closed() => return Ok(ReadEnd::WriterGone),
        };
        match read {
            None => return Ok(ReadEnd::Idle),
            Some(Ok(0)) => return Ok(ReadEnd::Finished),
            Some(Ok(_)) => {
                crate::latency_trace::mark("client_read");
                held.set(buf.len())
            }
            Some(Err(error)) => return Err(error),
        }
    }
}

async fn info_reply(api: &ClientApi, section: Option<&str>) -> Reply {
    match api.node.status().await {
        Some(status) => Reply::Bulk(info::render(&api.info, &status, section).into()),
        None => Reply::error(SHUTTING_DOWN),
    }
}
