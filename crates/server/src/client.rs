//! The client API: a RESP listener. Each connection has a reader task (parse, decide, submit to the node
//! loop) and a writer task that answers **in request order**: the reader pushes one entry per command
//! into a FIFO — a reply that is known at once, or the receiver of one the node will send — and the writer
//! takes them in order, waiting on each in turn. So many commands are in flight per connection
//! (pipelining) while replies keep their order, and the writer flushes whenever it would otherwise wait.
//!
//! A client that disconnects mid-command disturbs nothing: the node still answers into a oneshot nobody
//! listens to any more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use kv::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster_admin::ClusterAdmin;
use crate::info;
use crate::metrics::Metrics;
use crate::node_loop::{NodeHandle, SHUTTING_DOWN};

/// Commands in flight on one connection at most; the reader waits when the FIFO is full.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 4_096;
/// Encoded replies are written once this many bytes are buffered, or when the writer would wait.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What the client listener shares across connections.
pub struct ClientApi {
    pub node: NodeHandle,
    pub limits: resp::Limits,
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
        limits: resp::Limits,
        info: Arc<info::StaticInfo>,
        max_connections: usize,
        metrics: Arc<Metrics>,
        cluster: ClusterAdmin,
    ) -> Self {
        ClientApi {
            node,
            limits,
            info,
            connections: Arc::new(Semaphore::new(max_connections)),
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
        let (mut stream, addr) = match listener.accept().await {
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
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
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
enum Pending {
    Ready(resp::Frame, resp::ProtocolVersion),
    Waiting(oneshot::Receiver<Reply>, resp::ProtocolVersion),
    /// Write this, then close the connection.
    Last(resp::Frame, resp::ProtocolVersion),
    /// A state-machine reply known at once (INFO's text, a protocol error); write it, then close if `close`.
    Known(Reply, resp::ProtocolVersion, bool),
}

/// One FIFO entry: the reply to come, and the command it answers (a table name, for the commands metric;
/// `None` for a protocol error, which answers no command).
struct Queued(Pending, Option<&'static str>);

/// The command's name as the command table spells it, or `unknown`: never the client's own bytes, so the
/// metric's label set stays bounded whatever clients send.
fn command_label(argv: &[bytes::Bytes]) -> &'static str {
    argv.first().and_then(|name| resp::table::lookup(name)).map_or("unknown", |row| row.name)
}

async fn serve_client(stream: TcpStream, api: &ClientApi) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let client_id = api.next_client_id.fetch_add(1, Ordering::Relaxed);
    let (mut reader, writer) = stream.into_split();
    let (fifo, replies) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
    let mut connection = resp::Connection::new(client_id, api.limits);
    let writer_task = tokio::spawn(write_replies(writer, replies, api.metrics.clone()));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            let argv = match connection.parse(&mut buf) {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(error) => {
                    // After a framing error nobody can tell where the next request starts: close.
                    let known = Pending::Known(error.to_reply(), connection.protocol(), true);
                    let _ = fifo.send(Queued(known, None)).await;
                    break 'read;
                }
            };
            let command = Some(command_label(&argv));
            let action = connection.handle(argv);
            let version = connection.protocol();
            let pending = match action {
                resp::Action::Reply(frame) => Pending::Ready(frame, version),
                resp::Action::ReplyAndClose(frame) => {
                    let _ = fifo.send(Queued(Pending::Last(frame, version), command)).await;
                    break 'read;
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
            if fifo.send(Queued(pending, command)).await.is_err() {
                break 'read; // The writer failed: the client is gone.
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if reader.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    drop(fifo);
    writer_task.await.unwrap_or(Ok(()))
}

async fn info_reply(api: &ClientApi, section: Option<&str>) -> Reply {
    match api.node.status().await {
        Some(status) => Reply::Bulk(info::render(&api.info, &status, section).into()),
        None => Reply::error(SHUTTING_DOWN),
    }
}

async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Some(Queued(pending, command)) = replies.recv().await {
        let record = |is_error: bool| {
            if let Some(name) = command {
                metrics.record_command(name, is_error);
            }
        };
        let last = match pending {
            Pending::Ready(frame, version) => {
                record(matches!(frame, resp::Frame::Error(_)));
                resp::encode_frame(&frame, version, &mut out);
                false
            }
            Pending::Last(frame, version) => {
                record(matches!(frame, resp::Frame::Error(_)));
                resp::encode_frame(&frame, version, &mut out);
                true
            }
            Pending::Known(reply, version, close) => {
                record(matches!(reply, Reply::Error(_)));
                resp::encode_reply(&reply, version, &mut out);
                close
            }
            Pending::Waiting(mut receiver, version) => {
                let reply = match receiver.try_recv() {
                    Ok(reply) => Some(reply),
                    Err(oneshot::error::TryRecvError::Closed) => None,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        // About to wait: send what is ready first, so the client never waits on us.
                        flush(&mut writer, &mut out).await?;
                        receiver.await.ok()
                    }
                };
                let reply = reply.unwrap_or_else(|| Reply::error(SHUTTING_DOWN));
                record(matches!(reply, Reply::Error(_)));
                resp::encode_reply(&reply, version, &mut out);
                false
            }
        };
        if last {
            flush(&mut writer, &mut out).await?;
            return writer.shutdown().await;
        }
        if out.len() >= WRITE_BATCH_BYTES || replies.is_empty() {
            flush(&mut writer, &mut out).await?;
        }
    }
    flush(&mut writer, &mut out).await
}

async fn flush(writer: &mut OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    if !out.is_empty() {
        writer.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
