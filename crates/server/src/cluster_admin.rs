//! Cluster administration: `RAFT.MEMBER LIST | ADD id addrs [LEARNER] | PROMOTE id | REMOVE id` and
//! `RAFT.TRANSFER-LEADER id`, on any node (the admin HTTP routes run the same code).
//!
//! Only the leader changes the configuration (dissertation §4), so a node that does not lead forwards a
//! changing command to the leader it knows, over the leader's client port, wrapped as
//! `RAFT.FORWARDED <command...>`: the leader runs it there and never forwards it again (one hop, so two
//! nodes with stale ideas of who leads cannot bounce a command between them). `LIST` is answered from
//! the node's own view of the configuration.
//!
//! Each changing command waits, bounded, until its change is over — committed, and the joint
//! configuration left — and checks that the configuration in force then is the one asked for (a leader
//! change may cut an uncommitted change from the log). A change that is still under way when the bound
//! runs out is reported as in progress, never as done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kv::{Command, Reply};
use node::Consistency;
use raft::{ConfChange, ConfChangeError, NodeId, Role, TransferError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::address_book::{member_key, member_value, AddressBook};
use crate::config::Member;
use crate::node_loop::{NodeHandle, NodeStatus};

/// The wrapper a forwarding node puts around a command for the leader: run it here, never forward.
pub const FORWARDED: &str = "RAFT.FORWARDED";

/// How long a change may take to commit (and leave the joint configuration) before the answer says it
/// is still in progress.
const CHANGE_BOUND: Duration = Duration::from_secs(10);
/// How long ADD (as a voter) and PROMOTE wait for a learner to catch up before giving up.
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);
/// How long forwarding to the leader may take, the leader's own wait included.
const FORWARD_BOUND: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(50);

/// One parsed cluster command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCommand {
    List,
    Add { member: Member, learner: bool },
    Promote(NodeId),
    Remove(NodeId),
    TransferLeader(NodeId),
}

/// Parses a whole argv (name included). `Ok((command, forwarded))`, or the error text to answer.
pub fn parse(argv: &[Bytes]) -> Result<(ClusterCommand, bool), String> {
    let words: Vec<String> = argv.iter().map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    let (forwarded, words) = match words.split_first() {
        Some((first, rest)) if first.eq_ignore_ascii_case(FORWARDED) => (true, rest),
        _ => (false, &words[..]),
    };
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
    let id = |text: &str| -> Result<NodeId, String> {
        match text.parse::<NodeId>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err(format!("ERR {text:?} is not a node id (ids start at 1)")),
        }
    };
    let command = match upper.as_slice() {
        ["RAFT.MEMBER", "LIST"] => ClusterCommand::List,
        ["RAFT.MEMBER", "ADD", _, _] | ["RAFT.MEMBER", "ADD", _, _, "LEARNER"] => {
            let id = id(&words[2])?;
            let member = Member::parse(&format!("{id}={}", words[3])).map_err(|e| format!("ERR {e}"))?;
            ClusterCommand::Add { member, learner: upper.len() == 5 }
        }
        ["RAFT.MEMBER", "PROMOTE", _] => ClusterCommand::Promote(id(&words[2])?),
        ["RAFT.MEMBER", "REMOVE", _] => ClusterCommand::Remove(id(&words[2])?),
        ["RAFT.TRANSFER-LEADER", _] => ClusterCommand::TransferLeader(id(&words[1])?),
        ["RAFT.MEMBER", ..] => {
            return Err(
                "ERR usage: RAFT.MEMBER LIST | ADD id peer_addr[,client_addr[,admin_addr]] [LEARNER] \
                        | PROMOTE id | REMOVE id"
                    .into(),
            )
        }
        ["RAFT.TRANSFER-LEADER", ..] => return Err("ERR usage: RAFT.TRANSFER-LEADER id".into()),
        _ => {
            let name = words.first().map_or("", String::as_str);
            return Err(format!(
                "ERR unknown command '{name}'; cluster commands: RAFT.MEMBER, RAFT.TRANSFER-LEADER"
            ));
        }
    };
    Ok((command, forwarded))
}

/// What cluster commands need: the node loop and the address book.
#[derive(Clone)]
pub struct ClusterAdmin {
    pub node: NodeHandle,
    pub book: Arc<AddressBook>,
    /// The minimum election timeout: a leadership transfer is abandoned after one.
    pub election_timeout: Duration,
}

impl ClusterAdmin {
    /// Runs one cluster command (argv as the client sent it) and gives its answer. While no leader is
    /// known, or the one asked no longer leads (an election is under way), it waits and tries again,
    /// bounded: nothing was changed in those cases, so trying again is safe.
    pub async fn execute(&self, argv: &[Bytes]) -> Reply {
        let (command, forwarded) = match parse(argv) {
            Ok(parsed) => parsed,
            Err(text) => return Reply::error(text),
        };
        let deadline = Instant::now() + Duration::from_secs(2) + 4 * self.election_timeout;
        loop {
            let reply = self.execute_once(&command, argv, forwarded).await;
            let retry = matches!(&reply, Reply::Error(text) if is_redirect_failure(text));
            if !retry || forwarded || Instant::now() >= deadline {
                return reply;
            }
            tokio::time::sleep(4 * POLL).await;
        }
    }

    async fn execute_once(&self, command: &ClusterCommand, argv: &[Bytes], forwarded: bool) -> Reply {
        let Some(status) = self.node.status().await else { return Reply::error(SHUTTING_DOWN) };
        if *command == ClusterCommand::List {
            return list(&status, &self.book);
        }
        if status.role != Role::Leader {
            return self.forward(&status, argv, forwarded).await;
        }
        let result = match command.clone() {
            ClusterCommand::List => unreachable!("answered above"),
            ClusterCommand::Add { member, learner } => self.add(member, learner).await,
            ClusterCommand::Promote(id) => self.promote(id).await,
            ClusterCommand::Remove(id) => self.remove(id).await,
            ClusterCommand::TransferLeader(id) => self.transfer(id).await,
        };
        result.unwrap_or_else(Reply::Error)
    }

    /// Sends the command to the leader this node knows, wrapped so that it goes no further.
    async fn forward(&self, status: &NodeStatus, argv: &[Bytes], forwarded: bool) -> Reply {
        let Some(leader) = status.leader_id.filter(|_| !forwarded) else {
            return Reply::error(match status.leader_id {
                Some(leader) if forwarded => {
                    format!(
                        "TRYAGAIN node {} does not lead any more (leader: node {leader}); retry",
                        status.node_id
                    )
                }
                _ => format!("TRYAGAIN no leader is known to node {}; retry shortly", status.node_id),
            });
        };
        let Some(addr) = self.book.get(leader).and_then(|m| m.client_addr) else {
            return Reply::error(format!(
                "TRYAGAIN node {leader} leads, but its client address is unknown here"
            ));
        };
        let mut wrapped = vec![Bytes::from_static(FORWARDED.as_bytes())];
        wrapped.extend(argv.iter().cloned());
        match tokio::time::timeout(FORWARD_BOUND, ask(&addr, &wrapped)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => Reply::error(format!(
                "TRYAGAIN forwarding to the leader (node {leader} at {addr}) failed: {error}"
            )),
            Err(_) => Reply::error(format!(
                "TRYAGAIN the leader (node {leader}) did not answer within {FORWARD_BOUND:?}"
            )),
        }
    }

    async fn status(&self) -> Result<NodeStatus, String> {
        self.node.status().await.ok_or_else(|| SHUTTING_DOWN.to_string())
    }

    async fn conf_change(&self, change: ConfChange) -> Result<Result<u64, ConfChangeError>, String> {
        self.node.conf_change(change).await.ok_or_else(|| SHUTTING_DOWN.to_string())
    }

    /// ADD: record the addresses in the replicated book, add as a learner, wait for the commit; as a
    /// voter, then promote once caught up.
    async fn add(&self, member: Member, learner: bool) -> Result<Reply, String> {
        let id = member.id;
        let status = self.status().await?;
        if is_member(&status, id) {
            return Err(format!("ERR node {id} is already a member"));
        }
        if status.conf_change_in_progress {
            return Err(conf_change_error_text(ConfChangeError::ChangeInProgress {
                index: status.configuration_index,
            }));
        }
        self.record_addresses(&status, &member).await?;
        let index = self.conf_change(ConfChange::AddLearner(id)).await?.map_err(conf_change_error_text)?;
        self.wait_change_done(index, |s| s.learners.contains(&id) || s.voters.contains(&id)).await?;
        if learner {
            return Ok(Reply::Status(format!(
                "OK node {id} added as a learner (configuration entry {index})"
            )));
        }
        self.promote(id).await
    }

    /// Commits the addresses of every member (and the new one) before the configuration names it, so
    /// that whoever applies the log knows them all (see [`crate::address_book`]).
    async fn record_addresses(&self, status: &NodeStatus, new: &Member) -> Result<(), String> {
        let mut pairs: Vec<(Bytes, Bytes)> = self
            .book
            .all()
            .iter()
            .filter(|m| is_member(status, m.id) && m.id != new.id)
            .map(|m| (member_key(m.id), member_value(m)))
            .collect();
        pairs.push((member_key(new.id), member_value(new)));
        let receiver = self.node.submit(Command::MSet { pairs }, Consistency::Linearizable).await;
        match receiver.await {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Error(text)) => Err(format!("{text} (recording node {}'s addresses)", new.id)),
            Ok(other) => Err(format!("ERR recording node {}'s addresses answered {other:?}", new.id)),
            Err(_) => Err(SHUTTING_DOWN.to_string()),
        }
    }

    /// PROMOTE: retried while the learner is behind, until [`CATCH_UP_BOUND`].
    async fn promote(&self, id: NodeId) -> Result<Reply, String> {
        let started = Instant::now();
        let index = loop {
            match self.conf_change(ConfChange::PromoteLearner(id)).await? {
                Ok(index) => break index,
                Err(error @ (ConfChangeError::LearnerBehind { .. } | ConfChangeError::LeaderNotReady))
                    if started.elapsed() < CATCH_UP_BOUND =>
                {
                    tracing::debug!(id, %error, "waiting to promote");
                    tokio::time::sleep(4 * POLL).await;
                }
                Err(error) => return Err(conf_change_error_text(error)),
            }
        };
        self.wait_change_done(index, |s| s.voters.contains(&id) && s.outgoing_voters.is_empty()).await?;
        Ok(Reply::Status(format!("OK node {id} is a voter (configuration entry {index})")))
    }

    async fn remove(&self, id: NodeId) -> Result<Reply, String> {
        let index = self.conf_change(ConfChange::RemoveMember(id)).await?.map_err(conf_change_error_text)?;
        self.wait_change_done(index, |s| !is_member(s, id)).await?;
        Ok(Reply::Status(format!("OK node {id} removed (configuration entry {index})")))
    }

    /// Waits until the change whose first entry is `index` is over on this node (committed, not joint),
    /// then checks that the configuration is what was asked.
    async fn wait_change_done(&self, index: u64, wanted: impl Fn(&NodeStatus) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + CHANGE_BOUND;
        loop {
            let status = self.status().await?;
            if status.commit_index >= index && !status.conf_change_in_progress {
                return if wanted(&status) {
                    Ok(())
                } else {
                    Err(format!(
                        "ERR the change (entry {index}) did not take effect: a leader change cut it from the \
                         log; check RAFT.MEMBER LIST and retry"
                    ))
                };
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "INPROGRESS the change (entry {index}) is still in progress after {CHANGE_BOUND:?}; check \
                     RAFT.MEMBER LIST"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn transfer(&self, target: NodeId) -> Result<Reply, String> {
        let result = self.node.transfer_leadership(target).await.ok_or_else(|| SHUTTING_DOWN.to_string())?;
        match result {
            Ok(()) => {}
            Err(TransferError::AlreadyLeader { .. }) => {
                return Ok(Reply::Status(format!("OK node {target} already leads")));
            }
            Err(error @ TransferError::NotLeader { .. }) => return Err(format!("TRYAGAIN {error}; retry")),
            Err(error) => return Err(format!("ERR {error}")),
        }
        // The transfer is abandoned after an election timeout; wait a little longer than that.
        let bound = 3 * self.election_timeout + Duration::from_secs(1);
        let deadline = Instant::now() + bound;
        loop {
            let status = self.status().await?;
            if status.leader_id == Some(target) {
                return Ok(Reply::Status(format!("OK node {target} leads (term {})", status.term)));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "TRYAGAIN the transfer to node {target} did not complete within {bound:?}; retry"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

const SHUTTING_DOWN: &str = "TRYAGAIN the node is shutting down";

/// The answers that say the command reached no leader (so nothing changed): no leader known, the node
/// asked no longer leads, forwarding failed, or a brand-new leader is not ready yet.
fn is_redirect_failure(text: &str) -> bool {
    text.starts_with("TRYAGAIN no leader is known")
        || text.contains("does not lead any more")
        || text.starts_with("TRYAGAIN forwarding to the leader")
        || text.contains("its client address is unknown here")
        || text.starts_with("TRYAGAIN the leader has not committed an entry of its term")
}

fn is_member(status: &NodeStatus, id: NodeId) -> bool {
    status.voters.contains(&id) || status.outgoing_voters.contains(&id) || status.learners.contains(&id)
}

/// The client-facing text of a refused change (without RESP's `-`).
pub fn conf_change_error_text(error: ConfChangeError) -> String {
    match error {
        ConfChangeError::ChangeInProgress { index } => {
            format!("ERR a change is already in progress (entry {index}): retry when it commits")
        }
        ConfChangeError::NotLeader { leader_hint } => {
            let hint = leader_hint.map_or("none known".to_string(), |id| format!("node {id}"));
            format!("TRYAGAIN this node does not lead any more (leader: {hint}); retry")
        }
        ConfChangeError::LeaderNotReady => {
            "TRYAGAIN the leader has not committed an entry of its term yet; retry shortly".into()
        }
        ConfChangeError::LeadershipTransferInProgress { target } => {
            format!("TRYAGAIN leadership is being transferred to node {target}; retry shortly")
        }
        error @ ConfChangeError::LearnerBehind { .. } => format!("TRYAGAIN {error}; retry once it caught up"),
        error => format!("ERR {error}"),
    }
}

/// `LIST`: one line per member, then a line on any change in progress.
fn list(status: &NodeStatus, book: &AddressBook) -> Reply {
    let mut ids: Vec<NodeId> =
        status.voters.iter().chain(&status.outgoing_voters).chain(&status.learners).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let joint = !status.outgoing_voters.is_empty();
    let mut lines: Vec<Reply> = ids
        .into_iter()
        .map(|id| {
            let (incoming, outgoing) = (status.voters.contains(&id), status.outgoing_voters.contains(&id));
            let role = match (incoming, outgoing) {
                _ if status.learners.contains(&id) => "learner",
                (true, false) if joint => "voter(joining)",
                (false, true) => "voter(leaving)",
                _ => "voter",
            };
            let addresses = book.get(id).map_or("addresses unknown".to_string(), |m| {
                format!(
                    "peer={} client={} admin={}",
                    m.peer_addr,
                    m.client_addr.as_deref().unwrap_or("-"),
                    m.admin_addr.as_deref().unwrap_or("-")
                )
            });
            let leader = if status.leader_id == Some(id) { " leader" } else { "" };
            Reply::bulk(format!("{id} {role}{leader} {addresses}"))
        })
        .collect();
    let list = |ids: &[NodeId]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if joint {
        lines.push(Reply::bulk(format!(
            "joint configuration in progress (entry {}): outgoing voters {}, incoming voters {}",
            status.configuration_index,
            list(&status.outgoing_voters),
            list(&status.voters)
        )));
    } else if status.conf_change_in_progress {
        lines.push(Reply::bulk(format!(
            "configuration entry {} not committed yet",
            status.configuration_index
        )));
    }
    Reply::Array(lines)
}

/// Sends one command to a RESP server and reads its one-line answer (`+...` or `-...`).
async fn ask(addr: &str, argv: &[Bytes]) -> std::io::Result<Reply> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut out = BytesMut::new();
    resp::encode_command(argv, &mut out);
    stream.write_all(&out).await?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || answer.len() > 64 * 1024 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the answer ended early"));
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&answer[1..answer.len() - 2]).into_owned();
    Ok(match answer[0] {
        b'+' => Reply::Status(line),
        b'-' => Reply::Error(line),
        _ => Reply::error(format!("ERR unexpected answer from the leader: {line:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn commands_parse_in_any_case_and_forwarded_ones_are_marked() {
        let add = parse(&argv(&["raft.member", "add", "4", "127.0.0.1:7104,127.0.0.1:7004", "learner"]));
        let (command, forwarded) = add.unwrap();
        assert!(!forwarded);
        let ClusterCommand::Add { member, learner: true } = command else { panic!("{command:?}") };
        assert_eq!((member.id, member.client_addr.as_deref()), (4, Some("127.0.0.1:7004")));
        let forwarded = parse(&argv(&["RAFT.FORWARDED", "RAFT.MEMBER", "REMOVE", "2"])).unwrap();
        assert_eq!(forwarded, (ClusterCommand::Remove(2), true));
        assert_eq!(
            parse(&argv(&["RAFT.TRANSFER-LEADER", "3"])).unwrap().0,
            ClusterCommand::TransferLeader(3)
        );
    }

    #[test]
    fn bad_commands_get_a_usage_line() {
        assert!(parse(&argv(&["RAFT.MEMBER", "ADD", "0", "h:1"])).unwrap_err().contains("not a node id"));
        assert!(parse(&argv(&["RAFT.MEMBER", "FROB"])).unwrap_err().starts_with("ERR usage"));
        assert!(parse(&argv(&["RAFT.MEMBER", "ADD", "4", "h:1", "VOTER"]))
            .unwrap_err()
            .starts_with("ERR usage"));
        assert!(parse(&argv(&["RAFT.NOPE"])).unwrap_err().contains("unknown command"));
    }

    #[test]
    fn a_change_in_progress_says_which_entry_and_what_to_do() {
        let text = conf_change_error_text(ConfChangeError::ChangeInProgress { index: 42 });
        assert_eq!(text, "ERR a change is already in progress (entry 42): retry when it commits");
    }
}
