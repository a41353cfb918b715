//! Who is reachable where: every member's peer, client and admin addresses.
//!
//! A Raft configuration names only ids, so a member added at run time must bring its addresses to every
//! node some other way. They travel **through the log**, as ordinary replicated writes: before the leader
//! appends `AddLearner(id)` it commits an `MSET` of the reserved keys [`member_key`]`(id)` (one per
//! member it knows, the new one included) whose values are `peer_addr,client_addr,admin_addr`. So:
//!
//! - every node learns the addresses by applying the log, in log order, before it can ever lead with the
//!   new member in its configuration (the write is committed before the configuration entry exists);
//! - snapshots carry them for free (they are keys of the state machine), so a node that catches up from
//!   a snapshot, or restarts, knows them too;
//! - nothing new reaches the log format, the snapshot format or the consensus core.
//!
//! The price, documented in the README: the keys live in the keyspace (`DBSIZE` and `SCAN` count them, and
//! a client that writes a key starting with [`RESERVED_KEY_PREFIX`] could break the book). A dedicated
//! state-machine record would remove that, at the cost of a new snapshot format version.
//!
//! The book merges two sources: the `--member` flags (and, for a node that joined with `--join`, what
//! the cluster told it), and the replicated keys, which win where both name a member (they are the
//! cluster's newest word on it). The node loop refreshes the replicated part from the state machine.

use std::collections::BTreeMap;
use std::sync::RwLock;

use bytes::Bytes;
use raft::NodeId;

use crate::config::Member;

/// Every reserved key starts with this: a NUL byte, which no shell-typed key has by accident.
pub const RESERVED_KEY_PREFIX: &[u8] = b"\0raftkv/";

/// The replicated key holding member `id`'s addresses.
pub fn member_key(id: NodeId) -> Bytes {
    let mut key = RESERVED_KEY_PREFIX.to_vec();
    key.extend_from_slice(format!("member/{id}").as_bytes());
    Bytes::from(key)
}

/// The value stored under [`member_key`]: `peer_addr,client_addr,admin_addr` (empty slots allowed).
pub fn member_value(member: &Member) -> Bytes {
    let text = format!(
        "{},{},{}",
        member.peer_addr,
        member.client_addr.as_deref().unwrap_or(""),
        member.admin_addr.as_deref().unwrap_or("")
    );
    Bytes::from(text)
}

/// Reads back a value of [`member_value`]; `None` for anything malformed (never trusted blindly: a
/// client could have written the key).
pub fn parse_member_value(id: NodeId, value: &[u8]) -> Option<Member> {
    let text = std::str::from_utf8(value).ok()?;
    Member::parse(&format!("{id}={text}")).ok()
}

/// The merged book, shared by the node loop (which refreshes it) and the tasks that read addresses.
#[derive(Default, Debug)]
pub struct AddressBook {
    inner: RwLock<Books>,
}

#[derive(Default, Debug)]
struct Books {
    /// From flags or TOML (this node's own entry as it advertises itself), or from a join's answer.
    configured: BTreeMap<NodeId, Member>,
    /// From the replicated keys, as of the last refresh.
    replicated: BTreeMap<NodeId, Member>,
}

impl AddressBook {
    pub fn new(configured: impl IntoIterator<Item = Member>) -> AddressBook {
        let configured = configured.into_iter().map(|m| (m.id, m)).collect();
        AddressBook { inner: RwLock::new(Books { configured, replicated: BTreeMap::new() }) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Books> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Books> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Member `id`'s addresses: the replicated ones if any, else the configured ones.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        let books = self.read();
        books.replicated.get(&id).or_else(|| books.configured.get(&id)).cloned()
    }

    /// Every member anyone told this node about, sorted by id.
    pub fn all(&self) -> Vec<Member> {
        let books = self.read();
        let mut merged = books.configured.clone();
        merged.extend(books.replicated.iter().map(|(&id, m)| (id, m.clone())));
        merged.into_values().collect()
    }

    /// The members named by the flags (or a join's answer) alone.
    pub fn configured_ids(&self) -> Vec<NodeId> {
        self.read().configured.keys().copied().collect()
    }

    /// The members named by the replicated keys, as of the last refresh.
    pub fn replicated_ids(&self) -> Vec<NodeId> {
        self.read().replicated.keys().copied().collect()
    }

    /// Adds members to the configured part (a join's answer), keeping this node's own entry.
    pub fn add_configured(&self, own_id: NodeId, members: impl IntoIterator<Item = Member>) {
        let mut books = self.write();
        for member in members {
            if member.id != own_id {
                books.configured.insert(member.id, member);
            }
        }
    }

    /// Replaces the replicated part; true if it changed.
    pub fn set_replicated(&self, replicated: BTreeMap<NodeId, Member>) -> bool {
        let mut books = self.write();
        if books.replicated == replicated {
            return false;
        }
        books.replicated = replicated;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, port: u16) -> Member {
        Member {
            id,
            peer_addr: format!("127.0.0.1:{port}"),
            client_addr: Some(format!("127.0.0.1:{}", port + 1)),
            admin_addr: None,
        }
    }

    #[test]
    fn a_member_value_round_trips_and_garbage_is_refused() {
        let m = member(4, 7104);
        assert_eq!(parse_member_value(4, &member_value(&m)), Some(m));
        assert_eq!(parse_member_value(4, b""), None);
        assert_eq!(parse_member_value(4, b"\xff"), None);
        assert!(member_key(12).starts_with(RESERVED_KEY_PREFIX));
        assert!(member_key(12).ends_with(b"member/12"));
    }

    #[test]
    fn replicated_addresses_win_over_configured_ones() {
        let book = AddressBook::new([member(1, 7101), member(2, 7102)]);
        let moved = member(2, 9102);
        assert!(book.set_replicated([(2, moved.clone()), (3, member(3, 7103))].into_iter().collect()));
        assert_eq!(book.get(2), Some(moved));
        assert_eq!(book.get(1), Some(member(1, 7101)));
        assert_eq!(book.all().iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        // The same replicated part again changes nothing (the guard is dropped before the write lock).
        let same = book.read().replicated.clone();
        assert!(!book.set_replicated(same));
    }
}
