//! `GET /status`: the node's state as JSON, built from the same [`NodeStatus`] that INFO renders, plus the
//! members' configured addresses.

use serde::Serialize;

use raft::NodeId;

use crate::config::Member;
use crate::info::{role_name, StaticInfo};
use crate::node_loop::{FollowerStatus, NodeStatus};

/// The JSON document. Field names are the API: change them only with the README.
#[derive(Serialize, Debug)]
pub struct StatusView {
    pub id: NodeId,
    /// Hexadecimal, as INFO shows it (a u64 does not survive JavaScript's numbers).
    pub cluster_id: String,
    pub role: &'static str,
    pub term: u64,
    /// The leader this node knows, with its addresses, or `null`.
    pub leader: Option<MemberView>,
    pub vote: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// The index the log starts after: the latest snapshot's (0 until the log is ever compacted).
    pub snapshot_index: u64,
    /// The members of the configuration in force, with the addresses this node knows for them.
    pub members: Vec<MemberView>,
    /// The configuration in force, by role; `outgoing_voters` is non-empty while a joint change is in
    /// progress.
    pub configuration: ConfigurationView,
    /// On a leader handing over leadership: to whom.
    pub leadership_transfer_target: Option<NodeId>,
    /// On the leader: each follower's replication progress; empty on other roles.
    pub followers: Vec<FollowerView>,
    pub pending_requests: usize,
    pub keys: usize,
    pub incarnation: u64,
    pub uptime_seconds: u64,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: NodeId,
    pub voter: bool,
    pub peer_addr: Option<String>,
    pub client_addr: Option<String>,
    pub admin_addr: Option<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct ConfigurationView {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// C_old's voters while a joint change C_old,new is in progress; empty otherwise.
    pub outgoing_voters: Vec<NodeId>,
    pub joint: bool,
    /// The log index of the entry this configuration came from.
    pub index: u64,
    /// True while a change is under way (its entry uncommitted, or still joint).
    pub change_in_progress: bool,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct FollowerView {
    pub id: NodeId,
    pub match_index: u64,
    pub next_index: u64,
    /// Milliseconds since any message from this follower arrived; `null` if none has in this process.
    pub last_contact_ms_ago: Option<u64>,
}

pub fn view(info: &StaticInfo, status: &NodeStatus) -> StatusView {
    let is_voter = |id: NodeId| status.voters.contains(&id) || status.outgoing_voters.contains(&id);
    let member = |id: NodeId| member_view(id, is_voter(id), info.member(id).as_ref());
    let mut ids: Vec<NodeId> =
        status.voters.iter().chain(&status.outgoing_voters).chain(&status.learners).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    StatusView {
        id: status.node_id,
        cluster_id: format!("{:#x}", info.cluster_id),
        role: role_name(status.role),
        term: status.term,
        leader: status.leader_id.map(member),
        vote: status.vote,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        last_index: status.last_index,
        snapshot_index: status.snapshot_index,
        members: ids.into_iter().map(member).collect(),
        configuration: ConfigurationView {
            voters: status.voters.clone(),
            learners: status.learners.clone(),
            outgoing_voters: status.outgoing_voters.clone(),
            joint: !status.outgoing_voters.is_empty(),
            index: status.configuration_index,
            change_in_progress: status.conf_change_in_progress,
        },
        leadership_transfer_target: status.transfer_target,
        followers: status.followers.iter().map(follower_view).collect(),
        pending_requests: status.pending_requests,
        keys: status.keys,
        incarnation: status.incarnation,
        uptime_seconds: info.started.elapsed().as_secs(),
    }
}

fn member_view(id: NodeId, voter: bool, configured: Option<&Member>) -> MemberView {
    MemberView {
        id,
        voter,
        peer_addr: configured.map(|m| m.peer_addr.clone()),
        client_addr: configured.and_then(|m| m.client_addr.clone()),
        admin_addr: configured.and_then(|m| m.admin_addr.clone()),
    }
}

fn follower_view(follower: &FollowerStatus) -> FollowerView {
    FollowerView {
        id: follower.id,
        match_index: follower.match_index,
        next_index: follower.next_index,
        last_contact_ms_ago: follower.since_last_contact.map(|d| d.as_millis() as u64),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use raft::Role;

    use super::*;

    fn member(id: NodeId) -> Member {
        Member {
            id,
            peer_addr: format!("10.0.0.{id}:7101"),
            client_addr: Some(format!("10.0.0.{id}:7001")),
            admin_addr: (id != 3).then(|| format!("10.0.0.{id}:8001")),
        }
    }

    #[test]
    fn a_leader_names_itself_its_members_and_its_followers_progress() {
        let info = StaticInfo {
            started: Instant::now(),
            client_addr: "10.0.0.1:7001".into(),
            peer_addr: "10.0.0.1:7101".into(),
            admin_addr: Some("10.0.0.1:8001".into()),
            cluster_id: 0x4d,
            book: std::sync::Arc::new(crate::address_book::AddressBook::new([
                member(1),
                member(2),
                member(3),
            ])),
        };
        let status = NodeStatus {
            node_id: 1,
            role: Role::Leader,
            term: 4,
            leader_id: Some(1),
            vote: Some(1),
            commit_index: 10,
            applied_index: 9,
            last_index: 11,
            followers: vec![
                FollowerStatus { id: 2, match_index: 11, next_index: 12, since_last_contact: None },
                FollowerStatus {
                    id: 3,
                    match_index: 7,
                    next_index: 8,
                    since_last_contact: Some(Duration::from_millis(40)),
                },
            ],
            keys: 5,
            incarnation: 2,
            ..NodeStatus::example()
        };
        let view = view(&info, &status);
        assert_eq!(view.role, "leader");
        assert_eq!(view.cluster_id, "0x4d");
        let leader = view.leader.as_ref().expect("a leader");
        assert_eq!((leader.id, leader.admin_addr.as_deref()), (1, Some("10.0.0.1:8001")));
        assert_eq!(view.members.len(), 3);
        assert_eq!(view.members[2].admin_addr, None);
        assert_eq!(view.followers[1].last_contact_ms_ago, Some(40));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["followers"][0]["match_index"], 11);
        assert_eq!(json["followers"][0]["last_contact_ms_ago"], serde_json::Value::Null);
        assert_eq!(json["members"][1]["client_addr"], "10.0.0.2:7001");
    }
}
