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

use crate::info;
use crate::node_loop::{NodeHandle, SHUTTING_DOWN};
use crate::resp_shim as resp;

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
    next_client_id: AtomicU64,
}

impl ClientApi {
    pub fn new(
        node: NodeHandle,
        limits: resp::Limits,
        info: Arc<info::StaticInfo>,
        max_connections: usize,
    ) -> Self {
        ClientApi {
            node,
            limits,
            info,
            connections: Arc::new(Semaphore::new(max_connections)),
            next_client_id: AtomicU64::new(1),
        }
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
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = serve_client(stream, &api).await {
                tracing::debug!(%addr, %error, "client connection ended");
            }
        });
    }
}

/// One entry of a connection's reply FIFO.
enum Pending {
    Ready(Reply),
    Waiting(oneshot::Receiver<Reply>),
    /// Write this, then close the connection.
    Last(Reply),
}

async fn serve_client(stream: TcpStream, api: &ClientApi) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let client_id = api.next_client_id.fetch_add(1, Ordering::Relaxed);
    let (mut reader, writer) = stream.into_split();
    let (fifo, replies) = mpsc::channel(MAX_IN_FLIGHT_PER_CONNECTION);
    let mut connection = resp::Connection::new(client_id, api.limits.clone());
    let writer_task = tokio::spawn(write_replies(writer, replies, connection.protocol()));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'read: loop {
        loop {
            let argv = match resp::parse_command(&mut buf, &api.limits) {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(error) => {
                    let reply = Reply::error(format!("ERR Protocol error: {error}"));
                    let _ = fifo.send(Pending::Last(reply)).await;
                    break 'read;
                }
            };
            if argv.is_empty() {
                continue; // An empty inline line, as Redis ignores it.
            }
            let pending = match connection.handle(argv) {
                resp::Action::Reply(reply) => Pending::Ready(reply),
                resp::Action::ReplyAndClose(reply) => {
                    let _ = fifo.send(Pending::Last(reply)).await;
                    break 'read;
                }
                resp::Action::Execute { command, consistency } => {
                    Pending::Waiting(api.node.submit(command, consistency).await)
                }
                resp::Action::Info { section } => Pending::Ready(info_reply(api, section.as_deref()).await),
            };
            if fifo.send(pending).await.is_err() {
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
    mut replies: mpsc::Receiver<Pending>,
    version: resp::ProtocolVersion,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Some(pending) = replies.recv().await {
        let (reply, last) = match pending {
            Pending::Ready(reply) => (reply, false),
            Pending::Last(reply) => (reply, true),
            Pending::Waiting(mut receiver) => {
                let reply = match receiver.try_recv() {
                    Ok(reply) => Some(reply),
                    Err(oneshot::error::TryRecvError::Closed) => None,
                    Err(oneshot::error::TryRecvError::Empty) => {
                        // About to wait: send what is ready first, so the client never waits on us.
                        flush(&mut writer, &mut out).await?;
                        receiver.await.ok()
                    }
                };
                (reply.unwrap_or_else(|| Reply::error(SHUTTING_DOWN)), false)
            }
        };
        resp::encode_reply(&reply, version, &mut out);
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
