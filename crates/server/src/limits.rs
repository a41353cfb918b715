//! Every bound a node puts on what clients and peers can make it hold (TigerBeetle's "a limit on
//! everything"): the `[limits]` table of the TOML file, and one `raftkv serve` flag each. The README's
//! "Limits" table lists them with the error each gives when hit.
//!
//! Together they bound a node's memory: a connection holds at most one request being read
//! (`max_request_bytes`), `max_pipelined_commands` commands in flight and `max_client_output_bytes` of
//! unsent replies plus one; there are at most `max_client_connections` of them; each peer's queue holds at
//! most `max_peer_queue_messages` and `max_peer_queue_bytes` (plus one message); a peer frame is at most
//! `max_peer_frame_bytes`; and the leader's log holds at most `max_uncommitted_bytes` of proposals not yet
//! committed (plus one). The node's own counters of these buffers are metrics
//! (`raftkv_client_input_buffer_bytes`, `raftkv_client_output_buffer_bytes`, `raftkv_peer_queue_bytes`).

use serde::Deserialize;

use crate::config::ConfigError;

const MIB: usize = 1 << 20;

/// Room in a peer frame beyond the largest request: the entry's own framing (session, leader time,
/// command tags) and the AppendEntries around it. Also at least one AppendEntries batch and one snapshot
/// chunk (the core's defaults are 1 MiB each).
pub const PEER_FRAME_HEADROOM_BYTES: usize = MIB;

/// The bounds; field names are the TOML keys under `[limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Client connections open at once; one more is answered `-ERR max number of clients reached` and
    /// closed (Redis's `maxclients`).
    pub max_client_connections: usize,
    /// Longest bulk string (one argument) a client may send (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Largest request as sent, and most argument bytes one MULTI may queue: each becomes one log entry
    /// (Redis's `client-query-buffer-limit`).
    pub max_request_bytes: usize,
    /// Most arguments in one request, the command name included.
    pub max_arguments_per_command: usize,
    /// Longest key.
    pub max_key_bytes: usize,
    /// Longest value, given or built by APPEND. Decided by the state machine for APPEND, so give every
    /// node of a cluster the same value.
    pub max_value_bytes: usize,
    /// Commands read from one connection and not yet answered. At the limit the node stops reading that
    /// connection (TCP back-pressure) until replies go out; nothing is refused.
    pub max_pipelined_commands: usize,
    /// A connection whose unsent replies exceed this when another reply is ready is closed (a client
    /// that does not read its replies; Redis's `client-output-buffer-limit`). 0: no limit.
    pub max_client_output_bytes: usize,
    /// Close a client connection that sent nothing for this many seconds (Redis's `timeout`). 0: never.
    pub client_idle_timeout_secs: u64,
    /// Messages queued for one peer; more are dropped (Raft resends what matters) and counted in
    /// `raftkv_peer_dropped_messages_total{reason="queue_full"}`.
    pub max_peer_queue_messages: usize,
    /// Frame bytes queued for one peer; a message that would pass this (unless the queue is empty) is
    /// dropped and counted with `reason="queue_bytes"`.
    pub max_peer_queue_bytes: usize,
    /// Largest peer frame accepted; a peer that sends a larger one is disconnected. Must exceed
    /// `max_request_bytes` by [`PEER_FRAME_HEADROOM_BYTES`], so every accepted write can be replicated.
    pub max_peer_frame_bytes: usize,
    /// A leader refuses new writes (`-TRYAGAIN the leader is overloaded`) while this many bytes of its
    /// proposals are uncommitted; the consensus core's `max_uncommitted_bytes`.
    pub max_uncommitted_bytes: usize,
    /// Admin HTTP connections open at once; more are closed at once.
    pub max_admin_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let client = resp::Limits::default();
        Limits {
            max_client_connections: 10_000,
            max_bulk_bytes: client.max_bulk_bytes,
            max_request_bytes: client.max_request_bytes,
            max_arguments_per_command: client.max_arguments,
            max_key_bytes: 64 * 1024,
            max_value_bytes: client.max_value_bytes,
            max_pipelined_commands: 4_096,
            max_client_output_bytes: 256 * MIB,
            client_idle_timeout_secs: 0,
            max_peer_queue_messages: 65_536,
            max_peer_queue_bytes: 128 * MIB,
            max_peer_frame_bytes: client.max_request_bytes + PEER_FRAME_HEADROOM_BYTES,
            max_uncommitted_bytes: raft::Config::new(1).max_uncommitted_bytes,
            max_admin_connections: 64,
        }
    }
}

impl Limits {
    /// What the RESP layer enforces per connection.
    pub fn resp(&self) -> resp::Limits {
        resp::Limits {
            max_bulk_bytes: self.max_bulk_bytes,
            max_arguments: self.max_arguments_per_command,
            max_request_bytes: self.max_request_bytes,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            ..resp::Limits::default()
        }
    }

    /// The idle timeout, if any.
    pub fn client_idle_timeout(&self) -> Option<std::time::Duration> {
        (self.client_idle_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(self.client_idle_timeout_secs))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(why));
        let at_least_one = [
            ("max_client_connections", self.max_client_connections),
            ("max_bulk_bytes", self.max_bulk_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_arguments_per_command", self.max_arguments_per_command),
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_pipelined_commands", self.max_pipelined_commands),
            ("max_peer_queue_messages", self.max_peer_queue_messages),
            ("max_peer_queue_bytes", self.max_peer_queue_bytes),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
            ("max_admin_connections", self.max_admin_connections),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be at least 1"));
        }
        for (name, value) in
            [("max_key_bytes", self.max_key_bytes), ("max_value_bytes", self.max_value_bytes)]
        {
            if value > kv::MAX_STRING_BYTES {
                return invalid(format!("{name} can be at most {} (512 MiB)", kv::MAX_STRING_BYTES));
            }
        }
        let needed = self.max_request_bytes.saturating_add(PEER_FRAME_HEADROOM_BYTES);
        if self.max_peer_frame_bytes < needed {
            return invalid(format!(
                "max_peer_frame_bytes ({}) must be at least max_request_bytes + 1 MiB ({needed}), or a \
                 write a client may send could never reach the followers",
                self.max_peer_frame_bytes
            ));
        }
        if self.max_peer_frame_bytes > u32::MAX as usize {
            return invalid(format!("max_peer_frame_bytes can be at most {} (a u32 length)", u32::MAX));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_agree_with_the_layers_below() {
        let limits = Limits::default();
        limits.validate().unwrap();
        assert_eq!(limits.resp().max_bulk_bytes, 512 << 20);
        assert_eq!(limits.max_uncommitted_bytes, 64 << 20);
    }

    #[test]
    fn a_peer_frame_too_small_for_the_largest_request_is_refused() {
        let limits =
            Limits { max_request_bytes: 4 << 20, max_peer_frame_bytes: 4 << 20, ..Limits::default() };
        let error = limits.validate().unwrap_err().to_string();
        assert!(error.contains("max_peer_frame_bytes (4194304) must be at least"), "{error}");
        let zero = Limits { max_pipelined_commands: 0, ..Limits::default() };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "invalid configuration: max_pipelined_commands must be at least 1"
        );
    }
}
