//! A test-only fault switch on the peer transport: the set of peers whose frames this node drops, in both
//! directions, as if the network between them were cut (issue 8, the fault-injection test when network
//! namespaces are not available).
//!
//! The switch can only be set through the admin route `POST /fault/drop-peers` (see
//! [`crate::admin`]), which exists only in a build with the `fault-injection` feature; no default or
//! release build has it. Without the feature, [`PeerFaults`] holds nothing and [`PeerFaults::drops`] is
//! always false, so the transport's checks cost nothing.
//!
//! Dropping messages is a fault Raft must tolerate anyway (§5.1 of the Raft paper: RPCs may be lost); the
//! TCP connections stay up, so a healed link resumes at once, without reconnecting.

#[cfg(feature = "fault-injection")]
use std::collections::BTreeSet;
#[cfg(feature = "fault-injection")]
use std::sync::Mutex;

use raft::NodeId;

/// The peers this node currently cuts itself off from.
#[derive(Debug, Default)]
pub struct PeerFaults {
    #[cfg(feature = "fault-injection")]
    dropped: Mutex<BTreeSet<NodeId>>,
}

impl PeerFaults {
    /// True if messages to or from `peer` are to be dropped.
    #[cfg(feature = "fault-injection")]
    pub fn drops(&self, peer: NodeId) -> bool {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner()).contains(&peer)
    }

    /// Always false: the switch exists only with the `fault-injection` feature.
    #[cfg(not(feature = "fault-injection"))]
    #[inline]
    pub fn drops(&self, _peer: NodeId) -> bool {
        false
    }

    /// Drops messages to and from exactly `peers` from now on (empty: none, the network is whole again).
    #[cfg(feature = "fault-injection")]
    pub fn set_dropped(&self, peers: BTreeSet<NodeId>) {
        *self.dropped.lock().unwrap_or_else(|p| p.into_inner()) = peers;
    }
}

/// Parses the body of `POST /fault/drop-peers`: node ids separated by commas or white space; empty heals.
#[cfg(feature = "fault-injection")]
pub fn parse_peer_list(text: &str) -> Result<BTreeSet<NodeId>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<NodeId>().map_err(|_| format!("not a node id: {part:?}")))
        .collect()
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn a_peer_list_is_ids_separated_by_commas_or_spaces_and_empty_heals() {
        assert_eq!(parse_peer_list("1,3 5\n"), Ok(BTreeSet::from([1, 3, 5])));
        assert_eq!(parse_peer_list(""), Ok(BTreeSet::new()));
        assert!(parse_peer_list("1,x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn the_switch_drops_exactly_the_listed_peers() {
        let faults = PeerFaults::default();
        faults.set_dropped(BTreeSet::from([2]));
        assert!(faults.drops(2));
        assert!(!faults.drops(3));
        faults.set_dropped(BTreeSet::new());
        assert!(!faults.drops(2));
    }
}
