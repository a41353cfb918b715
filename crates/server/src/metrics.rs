//! The node's Prometheus metrics: one registry per process, shared (as `Arc<Metrics>`) by the node loop,
//! the peer transport, the client API and the admin endpoint. Every handle is an atomic, so recording
//! costs no lock and no channel round trip to the node loop.
//!
//! Gauges that mirror the consensus state (term, role, indexes) are set when `/metrics` is scraped, from
//! the same [`NodeStatus`] that INFO and `/status` read, so they can never disagree with those. Counters
//! and histograms are recorded where the event happens.

use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use raft::{NodeId, Role};

use crate::info::role_name;
use crate::node_loop::NodeStatus;

/// Every metric of one node. Names follow Prometheus conventions: `_total` counters, base units
/// (seconds, bytes), and a `raftkv_` prefix.
pub struct Metrics {
    registry: Registry,
    /// The peers this node knows; any other id is reported as `peer="other"`, so a stranger claiming
    /// random ids in its handshake cannot grow the label set without bound.
    known_peers: Vec<NodeId>,

    pub term: IntGauge,
    pub role: IntGaugeVec,
    pub leader_id: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub last_index: IntGauge,
    pub follower_match_index: IntGaugeVec,
    pub pending_requests: IntGauge,

    pub leader_changes: IntCounter,
    pub elections_started: IntCounter,
    pub applied_entries: IntCounter,

    pub proposals: IntCounterVec,
    pub proposal_seconds: Histogram,
    pub reads: IntCounterVec,
    pub read_index_seconds: Histogram,
    pub read_confirmations: IntCounterVec,

    pub fsync_seconds: Histogram,
    pub wal_batch_entries: Histogram,

    pub peer_sent_messages: IntCounterVec,
    pub peer_sent_bytes: IntCounterVec,
    pub peer_received_messages: IntCounterVec,
    pub peer_received_bytes: IntCounterVec,
    pub peer_dropped_messages: IntCounterVec,
    pub peer_queue_bytes: IntGaugeVec,
    pub peer_queue_messages: IntGaugeVec,
    pub peer_connections_closed: IntCounterVec,

    pub client_connections: IntGauge,
    pub client_connections_accepted: IntCounter,
    pub client_connections_refused: IntCounter,
    pub client_connections_closed: IntCounterVec,
    pub client_input_buffer_bytes: IntGauge,
    pub client_output_buffer_bytes: IntGauge,
    pub commands: IntCounterVec,

    pub node_loop_longest_pause: Gauge,
    pub snapshots_taken: IntCounter,
    pub snapshots_installed: IntCounter,
}

/// Latency buckets from 100 µs to about 26 s (×2 each): fsyncs on a fast disk sit at the bottom,
/// requests that wait out an election near the top.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_1, 2.0, 19).expect("constant bucket parameters are valid")
}

/// Why a message to a peer may be dropped before sending (`reason` of `peer_dropped_messages_total`).
pub const DROP_REASONS: [&str; 4] = ["queue_full", "queue_bytes", "too_large", "no_address"];

/// Every role a node can have, so the one-hot `raftkv_role` gauge always has all four series.
const ROLES: [Role; 4] = [Role::Follower, Role::PreCandidate, Role::Candidate, Role::Leader];

impl Metrics {
    /// Registers every metric. `peers` are the other members' ids (the label values of per-peer metrics).
    pub fn new(peers: impl IntoIterator<Item = NodeId>) -> Metrics {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let metrics = Metrics {
            known_peers: peers.into_iter().collect(),
            term: r.gauge("raftkv_term", "The node's current Raft term."),
            role: r.gauge_vec("raftkv_role", "1 for the node's current role, 0 for the others.", &["role"]),
            leader_id: r.gauge("raftkv_leader_id", "The id of the leader this node knows (0: none)."),
            commit_index: r.gauge("raftkv_commit_index", "Highest log index known to be committed."),
            applied_index: r.gauge("raftkv_applied_index", "Highest log index applied to the state machine."),
            last_index: r.gauge("raftkv_last_index", "Index of the last entry in this node's log."),
            follower_match_index: r.gauge_vec(
                "raftkv_follower_match_index",
                "On the leader: the highest index known replicated on each follower.",
                &["follower"],
            ),
            pending_requests: r.gauge("raftkv_pending_requests", "Client requests waiting for an answer."),
            leader_changes: r.counter(
                "raftkv_leader_changes_total",
                "Times this node learned of a new leader (itself included).",
            ),
            elections_started: r.counter(
                "raftkv_elections_started_total",
                "Elections this node started: terms in which it became a candidate and voted for itself.",
            ),
            applied_entries: r.counter(
                "raftkv_applied_entries_total",
                "Log entries applied to the state machine since the process started.",
            ),
            proposals: r.counter_vec(
                "raftkv_proposals_total",
                "Client writes this node sent into the log (proposed as leader, or forwarded to it), by \
                 outcome: applied, or failed (no leader, overloaded, timed out, shutting down).",
                &["result"],
            ),
            proposal_seconds: r.histogram(
                "raftkv_proposal_duration_seconds",
                "From a client write's arrival at the node loop until it was applied here and answered.",
            ),
            reads: r.counter_vec(
                "raftkv_reads_total",
                "Client reads, by consistency (linearizable through ReadIndex, or stale after READONLY) \
                 and outcome.",
                &["consistency", "result"],
            ),
            read_index_seconds: r.histogram(
                "raftkv_read_index_duration_seconds",
                "From a linearizable read's arrival until it was answered: the ReadIndex confirmation \
                 round plus waiting for this node to apply up to the read index.",
            ),
            read_confirmations: r.counter_vec(
                "raftkv_leader_read_confirmations_total",
                "Linearizable reads this node confirmed as leader, by path: `lease` (served at once inside \
                 the leader's lease, --read-mode lease) or `read_index` (a heartbeat round). A follower's \
                 forwarded batch counts once.",
                &["path"],
            ),
            fsync_seconds: r.histogram(
                "raftkv_fsync_duration_seconds",
                "Duration of each fdatasync of a data file (WAL segments, snapshots).",
            ),
            wal_batch_entries: r.histogram_with(
                "raftkv_wal_batch_entries",
                "Log entries made durable by one WAL write (group commit: one write and one fsync each).",
                exponential_buckets(1.0, 2.0, 13).expect("constant bucket parameters are valid"),
            ),
            peer_sent_messages: r.counter_vec(
                "raftkv_peer_sent_messages_total",
                "Messages written to each peer's connection.",
                &["peer"],
            ),
            peer_sent_bytes: r.counter_vec(
                "raftkv_peer_sent_bytes_total",
                "Frame bytes written to each peer's connection.",
                &["peer"],
            ),
            peer_received_messages: r.counter_vec(
                "raftkv_peer_received_messages_total",
                "Messages received from each peer.",
                &["peer"],
            ),
            peer_received_bytes: r.counter_vec(
                "raftkv_peer_received_bytes_total",
                "Frame bytes received from each peer.",
                &["peer"],
            ),
            peer_dropped_messages: r.counter_vec(
                "raftkv_peer_dropped_messages_total",
                "Messages to a peer dropped before sending: its queue was full (queue_full: messages, \
                 queue_bytes: bytes), the message was over max_peer_frame_bytes (too_large), or no address \
                 is known (no_address).",
                &["peer", "reason"],
            ),
            peer_queue_bytes: r.gauge_vec(
                "raftkv_peer_queue_bytes",
                "Frame bytes queued for each peer and not yet written to its connection.",
                &["peer"],
            ),
            peer_queue_messages: r.gauge_vec(
                "raftkv_peer_queue_messages",
                "Messages queued for each peer and not yet written to its connection.",
                &["peer"],
            ),
            peer_connections_closed: r.counter_vec(
                "raftkv_peer_connections_closed_total",
                "Incoming peer connections this node closed because of what the peer sent: a bad hello \
                 (hello), a frame over max_peer_frame_bytes (frame_too_large), or a frame that failed its \
                 checksum or did not decode (bad_frame).",
                &["reason"],
            ),
            client_connections: r.gauge("raftkv_client_connections", "Client connections open now."),
            client_connections_accepted: r
                .counter("raftkv_client_connections_accepted_total", "Client connections accepted."),
            client_connections_refused: r.counter(
                "raftkv_client_connections_refused_total",
                "Client connections refused because the connection limit was reached.",
            ),
            client_connections_closed: r.counter_vec(
                "raftkv_client_connections_closed_total",
                "Client connections the node closed itself: unsent replies over max_client_output_bytes \
                 (output_buffer), idle past client_idle_timeout_secs (idle), a protocol error or a limit of \
                 the request parser (protocol_error), or replies not taken within the flush bound after the \
                 client stopped sending (flush_timeout).",
                &["reason"],
            ),
            client_input_buffer_bytes: r.gauge(
                "raftkv_client_input_buffer_bytes",
                "Bytes read from client connections and not yet parsed into commands, over all connections.",
            ),
            client_output_buffer_bytes: r.gauge(
                "raftkv_client_output_buffer_bytes",
                "Reply bytes encoded and not yet written to client connections, over all connections.",
            ),
            commands: r.counter_vec(
                "raftkv_commands_total",
                "Client commands answered, by lower-case command name and whether the reply was an error.",
                &["command", "result"],
            ),
            node_loop_longest_pause: r.register(
                "raftkv_node_loop_longest_pause_seconds",
                Gauge::new(
                    "raftkv_node_loop_longest_pause_seconds",
                    "The longest time the node loop spent on one batch of events since the process started \
                     (nothing else is served meanwhile; snapshots are written on another thread).",
                )
                .expect("valid metric name"),
            ),
            snapshots_taken: r.counter(
                "raftkv_snapshots_taken_total",
                "Snapshots of the state machine this node wrote and compacted its log to.",
            ),
            snapshots_installed: r.counter(
                "raftkv_snapshots_installed_total",
                "Snapshots received from a leader (InstallSnapshot) and installed.",
            ),
            registry,
        };
        metrics.init_series();
        metrics
    }

    /// Creates the series a scraper expects to see from the start (at zero), so that `rate()` works from
    /// the first increment and dashboards show every peer before it has sent anything.
    fn init_series(&self) {
        for role in ROLES {
            self.role.with_label_values(&[role_name(role)]).set(0);
        }
        for result in ["applied", "failed"] {
            self.proposals.with_label_values(&[result]);
        }
        for consistency in ["linearizable", "stale"] {
            for result in ["ok", "failed"] {
                self.reads.with_label_values(&[consistency, result]);
            }
        }
        for path in ["lease", "read_index"] {
            self.read_confirmations.with_label_values(&[path]);
        }
        for &peer in &self.known_peers {
            let label = peer.to_string();
            self.peer_sent_messages.with_label_values(&[&label]);
            self.peer_sent_bytes.with_label_values(&[&label]);
            self.peer_received_messages.with_label_values(&[&label]);
            self.peer_received_bytes.with_label_values(&[&label]);
            for reason in DROP_REASONS {
                self.peer_dropped_messages.with_label_values(&[&label, reason]);
            }
            self.peer_queue_bytes.with_label_values(&[&label]);
            self.peer_queue_messages.with_label_values(&[&label]);
        }
        for reason in ["output_buffer", "idle", "protocol_error", "flush_timeout"] {
            self.client_connections_closed.with_label_values(&[reason]);
        }
        for reason in ["hello", "frame_too_large", "bad_frame"] {
            self.peer_connections_closed.with_label_values(&[reason]);
        }
    }

    /// The label value for a peer: its id if known, else `other`.
    pub fn peer_label(&self, peer: NodeId) -> String {
        if self.known_peers.contains(&peer) {
            peer.to_string()
        } else {
            "other".to_string()
        }
    }

    /// The received-message and received-byte counters of one peer, to keep per connection (resolving a
    /// label costs an allocation and a map lookup, too much for every frame).
    pub fn received_counters(&self, peer: NodeId) -> (IntCounter, IntCounter) {
        let label = self.peer_label(peer);
        (
            self.peer_received_messages.with_label_values(&[&label]),
            self.peer_received_bytes.with_label_values(&[&label]),
        )
    }

    pub fn record_dropped(&self, peer: NodeId, reason: &'static str) {
        self.peer_dropped_messages.with_label_values(&[&self.peer_label(peer), reason]).inc();
    }

    /// Counts one answered client command. `name` must come from a fixed table (or be `unknown`), never
    /// straight from the network, to keep the label set bounded.
    pub fn record_command(&self, name: &'static str, is_error: bool) {
        self.commands.with_label_values(&[name, if is_error { "error" } else { "ok" }]).inc();
    }

    /// Sets the gauges that mirror the node's state, from one consistent picture of it.
    pub fn set_status(&self, status: &NodeStatus) {
        self.term.set(saturating_i64(status.term));
        for role in ROLES {
            self.role.with_label_values(&[role_name(role)]).set(i64::from(role == status.role));
        }
        self.leader_id.set(saturating_i64(status.leader_id.unwrap_or(0)));
        self.commit_index.set(saturating_i64(status.commit_index));
        self.applied_index.set(saturating_i64(status.applied_index));
        self.last_index.set(saturating_i64(status.last_index));
        self.pending_requests.set(saturating_i64(status.pending_requests as u64));
        // Only the leader tracks followers; a deposed leader's series must disappear, not freeze.
        self.follower_match_index.reset();
        for follower in &status.followers {
            self.follower_match_index
                .with_label_values(&[&follower.id.to_string()])
                .set(saturating_i64(follower.match_index));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a metric family that breaks the format, which `new` never
        // registers; an empty page would then be the honest answer.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One holder's share of a byte gauge summed over many holders (connections, queues): `set` moves the
/// gauge by the change, and dropping the holder takes its share back out, however the holder ends.
pub struct HeldBytes {
    gauge: IntGauge,
    held: i64,
}

impl HeldBytes {
    pub fn new(gauge: IntGauge) -> HeldBytes {
        HeldBytes { gauge, held: 0 }
    }

    pub fn set(&mut self, bytes: usize) {
        let bytes = saturating_i64(bytes as u64);
        if bytes != self.held {
            self.gauge.add(bytes - self.held);
            self.held = bytes;
        }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.gauge.sub(self.held);
    }
}

pub fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Creates metrics and registers them in one step. Registration fails only on a duplicate or malformed
/// name, which is a bug in [`Metrics::new`] and shows on the first start: panic with the name.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, name: &str, metric: M) -> M {
        self.0.register(Box::new(metric.clone())).unwrap_or_else(|e| panic!("registering {name}: {e}"));
        metric
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(name, IntGauge::new(name, help).expect("valid metric name"))
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(name, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name"))
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(name, IntCounter::new(name, help).expect("valid metric name"))
    }
    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(name, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name"))
    }
    fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.histogram_with(name, help, latency_buckets())
    }
    fn histogram_with(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets);
        self.register(name, Histogram::with_opts(opts).expect("valid metric name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_renders_every_family_with_help_and_type() {
        let metrics = Metrics::new([2, 3]);
        let text = metrics.render();
        for name in [
            "raftkv_role",
            "raftkv_proposals_total",
            "raftkv_peer_sent_bytes_total",
            "raftkv_fsync_duration_seconds",
            "raftkv_wal_batch_entries",
            "raftkv_node_loop_longest_pause_seconds",
            "raftkv_snapshots_taken_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing in:\n{text}");
        }
        assert!(text.contains("raftkv_peer_sent_messages_total{peer=\"2\"} 0"));
    }

    #[test]
    fn unknown_peers_share_one_label() {
        let metrics = Metrics::new([2]);
        for peer in [99, 12345] {
            let (messages, bytes) = metrics.received_counters(peer);
            messages.inc();
            bytes.inc_by(10);
        }
        let text = metrics.render();
        assert!(text.contains("raftkv_peer_received_messages_total{peer=\"other\"} 2"), "{text}");
    }
}
