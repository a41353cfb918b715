//! Keeps the peer transport matched to the configuration: refreshes the address book from the
//! replicated keys ([`crate::address_book`]), then connects to every member of the configuration in
//! force (both halves of a joint one, and learners) and drops every other peer — so a removed member
//! stops getting messages, and an added one starts as soon as the leader appends its configuration.

use std::collections::BTreeMap;

use kv::{Command, Reply};
use raft::NodeId;

use crate::address_book::{member_key, parse_member_value, AddressBook};
use crate::config::Member;
use crate::node_loop::ServerNode;

/// Refreshes `book` from the state machine, then sets the transport's peers. Runs on the node loop.
pub fn sync_peers(node: &mut ServerNode, book: &AddressBook) {
    let configuration = node.raft().configuration().clone();
    // Removed members stay in the book (a node may still name one as the leader it last heard of).
    let mut ids = configuration.members();
    ids.extend(book.configured_ids());
    ids.extend(book.replicated_ids());
    let machine = node.state_machine();
    let replicated: BTreeMap<NodeId, Member> = ids
        .iter()
        .filter_map(|&id| {
            let reply = machine.read(&Command::Get { key: member_key(id) }, machine.time_ms());
            match reply {
                Reply::Bulk(value) => parse_member_value(id, &value).map(|member| (id, member)),
                _ => None,
            }
        })
        .collect();
    if book.set_replicated(replicated) {
        tracing::info!(members = ?book.all().iter().map(|m| m.id).collect::<Vec<_>>(), "address book changed");
    }
    let own_id = node.id();
    // A node that is not a member yet (an empty data directory waiting to be added) has no configuration:
    // it answers whoever its flags (or its join) name, among them the leader that will add it.
    let wanted: Vec<NodeId> =
        if configuration.members().is_empty() { book.configured_ids() } else { ids_of(&configuration) };
    let peers: BTreeMap<NodeId, String> = wanted
        .into_iter()
        .filter(|&id| id != own_id)
        .filter_map(|id| book.get(id).map(|member| (id, member.peer_addr)))
        .collect();
    if peers != node.transport_mut().peers() {
        node.transport_mut().set_peers(&peers);
    }
}

fn ids_of(configuration: &raft::Configuration) -> Vec<NodeId> {
    configuration.members().into_iter().collect()
}
