//! One peer's outgoing bytes, shared by the node loop (which adds frames) and that peer's connection task
//! (which writes what the socket did not take at once).
//!
//! Why not a channel to the connection task: on the write path of every request a leader sends
//! AppendEntries and a follower sends its acknowledgement, and handing each frame to another task cost a
//! task wake-up (often a thread wake-up) before the frame reached the socket — measured as the largest
//! share of one-client write latency after the two fsyncs. So the node loop writes a frame straight into the
//! socket when nothing is queued before it (a non-blocking `try_write`; on loopback the socket buffer
//! nearly always takes it), and only what the socket refuses waits here for the connection task. Frames
//! keep their order: nothing is written directly while older bytes wait or the task is writing.
//!
//! The backlog is bounded like the channel it replaces (`max_peer_queue_messages`, `max_peer_queue_bytes`);
//! a frame over a bound is dropped (Raft tolerates loss), except the unwritten rest of a frame the socket
//! took in part, which must follow or the stream would be corrupt.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use prometheus::{IntCounter, IntGauge};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Why a frame was not taken (the `reason` label of `raftkv_peer_dropped_messages_total`).
pub type DropReason = &'static str;

/// The bounds of one backlog.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// The metrics one outbox keeps up to date, resolved once per peer (not per frame).
#[derive(Clone)]
pub struct OutboxMetrics {
    pub queued_bytes: IntGauge,
    pub queued_messages: IntGauge,
    pub sent_messages: IntCounter,
    pub sent_bytes: IntCounter,
}

#[derive(Default)]
struct State {
    /// The connection while it is up; `None` while connecting (frames then wait in the backlog).
    stream: Option<Arc<TcpStream>>,
    /// Bytes not yet handed to the socket, whole frames except perhaps a first partial one's rest.
    backlog: BytesMut,
    backlog_messages: usize,
    /// The connection task took bytes from the backlog and is writing them: nothing may be written
    /// directly meanwhile, or it would overtake them.
    task_writing: bool,
    /// The node no longer sends to this peer: the task ends once the backlog is written.
    closed: bool,
}

/// See the module docs.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the connection task when the backlog gains bytes or the outbox closes.
    wake: Notify,
    limits: OutboxLimits,
    metrics: OutboxMetrics,
}

impl Outbox {
    pub fn new(limits: OutboxLimits, metrics: OutboxMetrics) -> Arc<Outbox> {
        Arc::new(Outbox { state: Mutex::default(), wake: Notify::new(), limits, metrics })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one encoded frame: straight into the socket if nothing waits before it, else into the
    /// backlog. `Err` says why it was dropped.
    pub fn push(&self, frame: &[u8]) -> Result<(), DropReason> {
        let mut state = self.lock();
        let mut rest = frame;
        if !state.task_writing && state.backlog.is_empty() {
            if let Some(stream) = &state.stream {
                match stream.try_write(frame) {
                    Ok(n) if n == frame.len() => {
                        crate::latency_trace::mark("peer_written");
                        self.metrics.sent_messages.inc();
                        self.metrics.sent_bytes.inc_by(n as u64);
                        return Ok(());
                    }
                    Ok(n) => rest = &frame[n..],
                    // Would block, or the connection failed: the task finds out which when it writes.
                    Err(_) => {}
                }
            }
        }
        let partial = rest.len() < frame.len();
        if !partial {
            if state.backlog_messages >= self.limits.max_messages {
                return Err("queue_full");
            }
            if !state.backlog.is_empty() && state.backlog.len() + frame.len() > self.limits.max_bytes {
                return Err("queue_bytes");
            }
        }
        state.backlog.extend_from_slice(rest);
        state.backlog_messages += 1;
        // Raised and lowered by deltas: peers outside the known members share one label (`other`).
        self.metrics.queued_bytes.add(rest.len() as i64);
        self.metrics.queued_messages.inc();
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// The node stops sending to this peer; its task ends after writing what waits.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Writes through `stream` (just connected) until the outbox closes and its backlog is written
    /// (`Ok`) or the connection fails (`Err`; what was not written is dropped, and Raft resends).
    pub async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let stream = Arc::new(stream);
        self.lock().stream = Some(stream.clone());
        let result = self.write_backlog(&stream).await;
        let mut state = self.lock();
        state.stream = None;
        state.task_writing = false;
        if result.is_err() {
            // The stream may have ended inside a frame: a new connection starts at a frame boundary.
            self.take_backlog(&mut state);
        }
        result
    }

    async fn write_backlog(&self, stream: &TcpStream) -> std::io::Result<()> {
        loop {
            let taken = {
                let mut state = self.lock();
                state.task_writing = false;
                if state.backlog.is_empty() {
                    if state.closed {
                        return Ok(());
                    }
                    None
                } else {
                    state.task_writing = true;
                    Some(self.take_backlog(&mut state))
                }
            };
            match taken {
                // A notification sent since the lock was released is kept for this wait.
                None => self.wake.notified().await,
                Some((bytes, messages)) => {
                    write_all(stream, &bytes).await?;
                    crate::latency_trace::mark("peer_written");
                    self.metrics.sent_messages.inc_by(messages as u64);
                    self.metrics.sent_bytes.inc_by(bytes.len() as u64);
                }
            }
        }
    }
}

impl Outbox {
    /// Empties the backlog, returning its bytes and how many messages they hold.
    fn take_backlog(&self, state: &mut State) -> (bytes::Bytes, usize) {
        let bytes = state.backlog.split().freeze();
        let messages = std::mem::take(&mut state.backlog_messages);
        self.metrics.queued_bytes.sub(bytes.len() as i64);
        self.metrics.queued_messages.sub(messages as i64);
        (bytes, messages)
    }
}

/// `write_all` over a shared stream (the node loop writes to it too, never at the same time).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn outbox(max_messages: usize, max_bytes: usize) -> Arc<Outbox> {
        let gauge = |name: &str| IntGauge::new(name, "test").unwrap();
        let counter = |name: &str| IntCounter::new(name, "test").unwrap();
        let metrics = OutboxMetrics {
            queued_bytes: gauge("queued_bytes"),
            queued_messages: gauge("queued_messages"),
            sent_messages: counter("sent_messages"),
            sent_bytes: counter("sent_bytes"),
        };
        Outbox::new(OutboxLimits { max_messages, max_bytes }, metrics)
    }

    #[test]
    fn while_disconnected_frames_wait_within_the_bounds_and_the_rest_are_dropped() {
        let outbox = outbox(3, 10);
        assert_eq!(outbox.push(b"12345678"), Ok(()), "an empty backlog takes any frame");
        assert_eq!(outbox.push(b"12345"), Err("queue_bytes"));
        assert_eq!(outbox.push(b"1"), Ok(()));
        assert_eq!(outbox.push(b"1"), Ok(()));
        assert_eq!(outbox.push(b""), Err("queue_full"));
        assert_eq!(outbox.metrics.queued_bytes.get(), 10);
        assert_eq!(outbox.metrics.queued_messages.get(), 3);
    }

    #[tokio::test]
    async fn frames_queued_before_the_connection_go_first_then_the_rest_in_order() {
        let outbox = outbox(100, 1 << 20);
        outbox.push(b"a").unwrap();
        outbox.push(b"b").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sender = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        let serving = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.serve(sender).await }
        });
        for frame in [b"c", b"d", b"e"] {
            outbox.push(frame).unwrap();
            tokio::task::yield_now().await;
        }
        outbox.close();
        serving.await.unwrap().unwrap();
        let mut received = Vec::new();
        receiver.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"abcde");
        assert_eq!((outbox.metrics.sent_messages.get(), outbox.metrics.sent_bytes.get()), (5, 5));
        assert_eq!(outbox.metrics.queued_bytes.get(), 0);
    }
}
