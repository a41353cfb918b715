//! `GET /snapshot`: a consistent snapshot of the whole state, streamed as one snapshot file in the
//! storage crate's format (what `raftkv backup` saves, like `etcdctl snapshot save`).
//!
//! The node takes a fresh frozen view of its state machine after a linearizable barrier (see
//! [`BackupSnapshot`]), not its newest snapshot file: the backup then holds every write acknowledged
//! before it was asked for, however long ago the last snapshot was taken. Taking the view is O(1); a
//! thread of its own encodes it ([`storage::SnapshotEncoder`]) into a channel of at most
//! [`CHUNKS_IN_FLIGHT`] chunks of [`CHUNK_BYTES`], which the HTTP body drains, so a slow client never makes
//! the node hold more than those chunks beyond the frozen view, and the node loop never waits.
//!
//! The answer is `200` with `application/octet-stream` and headers `x-raftkv-node-id`,
//! `x-raftkv-snapshot-index` and `x-raftkv-snapshot-term`; the body ends when the connection closes (or
//! with the chunked terminator for an HTTP/1.1 client). If encoding fails part-way the connection is cut,
//! and the client's checksum check refuses the truncated file. `503` with a one-line reason when no
//! consistent snapshot can be had (no leader, timeout, shutting down).

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::node_loop::{BackupSnapshot, NodeHandle};

/// Bytes per chunk handed to the HTTP body.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks encoded ahead of the client at most.
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// How long the barrier may take: the node's own client timeout bounds it first; this only guards against
/// a node loop that stopped answering.
const BARRIER_BOUND: Duration = Duration::from_secs(30);

/// The `GET /snapshot` handler's work.
pub async fn snapshot(node: &NodeHandle) -> Response {
    let backup = match tokio::time::timeout(BARRIER_BOUND, node.backup()).await {
        Ok(Ok(backup)) => backup,
        Ok(Err(reason)) => return super::unavailable(format!("no consistent snapshot: {reason}")),
        Err(_) => return super::unavailable(format!("no consistent snapshot within {BARRIER_BOUND:?}")),
    };
    let BackupSnapshot { node_id, meta, state } = backup;
    tracing::info!(node_id, index = meta.index, term = meta.term, "streaming a backup snapshot");
    let (chunks, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::HeaderName::from_static("x-raftkv-node-id"), node_id.to_string()),
        (header::HeaderName::from_static("x-raftkv-snapshot-index"), meta.index.to_string()),
        (header::HeaderName::from_static("x-raftkv-snapshot-term"), meta.term.to_string()),
    ];
    let spawned = std::thread::Builder::new().name("raftkv-backup".into()).spawn(move || {
        let mut writer = ChannelWriter { chunks, buf: Vec::with_capacity(CHUNK_BYTES) };
        let encoded = storage::SnapshotEncoder::new(&meta, &mut writer)
            .and_then(|mut encoder| state.write_to(&mut encoder).and_then(|()| encoder.finish()).map(drop));
        if let Err(error) = encoded {
            // The body ends with an error: the connection is cut before the trailer, never a whole-looking
            // file with bad contents.
            tracing::warn!(%error, "a backup stream stopped part-way");
            let _ = writer.chunks.blocking_send(Err(error));
        }
    });
    if let Err(error) = spawned {
        return super::unavailable(format!("cannot start the backup thread: {error}"));
    }
    (headers, Body::from_stream(ChunkStream(receiver))).into_response()
}

/// Buffers up to [`CHUNK_BYTES`] and hands each full chunk to the HTTP body, waiting while
/// [`CHUNKS_IN_FLIGHT`] are queued (backpressure from the client).
struct ChannelWriter {
    chunks: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.chunks
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the backup client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// The receiving end of the chunk channel as the stream an HTTP body is made of.
struct ChunkStream(mpsc::Receiver<io::Result<Bytes>>);

impl futures_core::Stream for ChunkStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
