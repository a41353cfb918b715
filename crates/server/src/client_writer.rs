//! The writer half of a client connection: takes the reply FIFO in order, encodes each reply, and writes
//! them out, many per write.
//!
//! It keeps taking replies while the socket cannot take more, so that a client that never reads its
//! replies shows up as unsent bytes rather than as a stuck task: when a reply is ready while more than
//! `max_client_output_bytes` of earlier replies are still unsent (and the socket takes none of them), the
//! connection is closed, as Redis's `client-output-buffer-limit` does. Unsent bytes are thus at most the
//! limit plus one reply. With the limit at 0 the writer takes no more replies once [`BACKPRESSURE_BYTES`]
//! are unsent, so the FIFO fills and the reader stops reading the socket instead (TCP back-pressure).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use kv::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Pending, Queued};
use crate::metrics::{HeldBytes, Metrics};
use crate::node_loop::SHUTTING_DOWN;

/// Replies that are ready are gathered into one write up to this many bytes.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Without an output limit: unsent bytes past which no more replies are taken.
pub const BACKPRESSURE_BYTES: usize = 1 << 20;

/// One reply ready to encode.
struct Answer {
    body: Body,
    version: resp::ProtocolVersion,
    command: Option<&'static str>,
    /// Close the connection once this is written (QUIT, a protocol error).
    close: bool,
}

enum Body {
    Frame(resp::Frame),
    Reply(Reply),
}

impl Answer {
    fn of(Queued(pending, command): Queued, reply: Option<Reply>) -> Answer {
        let (body, version, close) = match pending {
            Pending::Ready(frame, version) => (Body::Frame(frame), version, false),
            Pending::Last(frame, version) => (Body::Frame(frame), version, true),
            Pending::Known(reply, version, close) => (Body::Reply(reply), version, close),
            Pending::Waiting(_, version) => {
                (Body::Reply(reply.unwrap_or_else(|| Reply::error(SHUTTING_DOWN))), version, false)
            }
        };
        Answer { body, version, command, close }
    }

    fn is_error(&self) -> bool {
        match &self.body {
            Body::Frame(frame) => matches!(frame, resp::Frame::Error(_)),
            Body::Reply(reply) => matches!(reply, Reply::Error(_)),
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        match &self.body {
            Body::Frame(frame) => resp::encode_frame(frame, self.version, out),
            Body::Reply(reply) => resp::encode_reply(reply, self.version, out),
        }
    }
}

/// The FIFO's next reply without waiting: `Some(None)` when the FIFO is closed and empty, `None` when
/// nothing is ready yet. An entry whose reply is not ready stays in `head`.
fn try_next(head: &mut Option<Queued>, replies: &mut mpsc::Receiver<Queued>) -> Option<Option<Answer>> {
    if head.is_none() {
        match replies.try_recv() {
            Ok(queued) => *head = Some(queued),
            Err(mpsc::error::TryRecvError::Empty) => return None,
            Err(mpsc::error::TryRecvError::Disconnected) => return Some(None),
        }
    }
    let reply = match head.as_mut().map(|q| &mut q.0) {
        Some(Pending::Waiting(receiver, _)) => match receiver.try_recv() {
            Ok(reply) => Some(reply),
            Err(oneshot::error::TryRecvError::Empty) => return None,
            Err(oneshot::error::TryRecvError::Closed) => None,
        },
        _ => None,
    };
    Some(Some(Answer::of(head.take().expect("head was just filled"), reply)))
}

/// The FIFO's next reply, waiting for it. Cancel-safe: what was taken from the FIFO stays in `head`.
async fn next(head: &mut Option<Queued>, replies: &mut mpsc::Receiver<Queued>) -> Option<Answer> {
    if head.is_none() {
        *head = Some(replies.recv().await?);
    }
    let reply = match head.as_mut().map(|q| &mut q.0) {
        Some(Pending::Waiting(receiver, _)) => receiver.await.ok(),
        _ => None,
    };
    Some(Answer::of(head.take().expect("head was just filled"), reply))
}

/// Writes the connection's replies in order until the FIFO closes and all is written (`Ok`), the
/// connection fails, or the client stopped reading past `max_output_bytes` (`Err`, connection closed).
pub(crate) async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Queued>,
    metrics: Arc<Metrics>,
    max_output_bytes: usize,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut held = HeldBytes::new(metrics.client_output_buffer_bytes.clone());
    let mut head: Option<Queued> = None;
    let mut fifo_done = false;
    let mut closing = false;
    loop {
        // Gather what is ready into one write.
        while !fifo_done && !closing && out.len() < WRITE_BATCH_BYTES {
            match try_next(&mut head, &mut replies) {
                None => break,
                Some(None) => fifo_done = true,
                Some(Some(answer)) => {
                    closing = take(answer, &mut out, &mut writer, &metrics, max_output_bytes)?
                }
            }
        }
        held.set(out.len());
        if out.is_empty() && (fifo_done || closing) {
            break;
        }
        let may_take = !fifo_done && !closing && (max_output_bytes > 0 || out.len() < BACKPRESSURE_BYTES);
        tokio::select! {
            biased;
            written = writer.write(&out), if !out.is_empty() => match written? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => {
                    crate::latency_trace::mark("client_write");
                    out.advance(n)
                }
            },
            answer = next(&mut head, &mut replies), if may_take => match answer {
                None => fifo_done = true,
                Some(answer) => closing = take(answer, &mut out, &mut writer, &metrics, max_output_bytes)?,
            },
        }
        held.set(out.len());
    }
    writer.shutdown().await
}

/// Encodes one reply after the unsent ones; returns whether the connection closes after it. Fails when
/// more than `max_output_bytes` are still unsent and the socket takes none of them now.
fn take(
    answer: Answer,
    out: &mut BytesMut,
    writer: &mut OwnedWriteHalf,
    metrics: &Metrics,
    max_output_bytes: usize,
) -> std::io::Result<bool> {
    if max_output_bytes > 0 && out.len() > max_output_bytes {
        // A slow reader is not a non-reader: give the socket one chance to take what it can.
        while !out.is_empty() {
            match writer.try_write(out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        if out.len() > max_output_bytes {
            metrics.client_connections_closed.with_label_values(&["output_buffer"]).inc();
            tracing::info!(
                unsent_bytes = out.len(),
                max_client_output_bytes = max_output_bytes,
                "closing a client that does not read its replies"
            );
            return Err(std::io::Error::other(
                "the client does not read its replies (max_client_output_bytes)",
            ));
        }
    }
    if let Some(name) = answer.command {
        metrics.record_command(name, answer.is_error());
    }
    answer.encode(out);
    Ok(answer.close)
}
