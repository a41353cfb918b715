//! The commands raftkv answers, as `COMMAND` describes them, and the arity checks of the ones the
//! connection layer handles itself. Arity follows Redis: `n` means exactly `n` words (the name
//! included), `-n` at least `n`.

use bytes::Bytes;

use crate::encode::Frame;

/// One row of `COMMAND`'s answer.
#[derive(Clone, Copy, Debug)]
pub struct CommandInfo {
    /// Lower case, as Redis reports it.
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub key_step: i64,
}

const fn info(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> CommandInfo {
    CommandInfo { name, arity, flags, first_key: keys.0, last_key: keys.1, key_step: keys.2 }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const WRITE: &[&str] = &["write", "denyoom"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const DELETE: &[&str] = &["write"];
const READ: &[&str] = &["readonly"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const CONNECTION: &[&str] = &["fast", "loading", "stale"];
const TRANSACTION: &[&str] = &["noscript", "loading", "stale", "fast"];

/// Every command raftkv answers: the state machine's (parsed by `kv::parse`) and the connection's.
pub const COMMANDS: &[CommandInfo] = &[
    info("get", 2, READ_FAST, ONE_KEY),
    info("set", -3, WRITE, ONE_KEY),
    info("setex", 4, WRITE, ONE_KEY),
    info("psetex", 4, WRITE, ONE_KEY),
    info("del", -2, DELETE, ALL_KEYS),
    info("unlink", -2, &["write", "fast"], ALL_KEYS),
    info("exists", -2, READ_FAST, ALL_KEYS),
    info("incr", 2, WRITE_FAST, ONE_KEY),
    info("incrby", 3, WRITE_FAST, ONE_KEY),
    info("decr", 2, WRITE_FAST, ONE_KEY),
    info("decrby", 3, WRITE_FAST, ONE_KEY),
    info("append", 3, WRITE_FAST, ONE_KEY),
    info("strlen", 2, READ_FAST, ONE_KEY),
    info("mget", -2, READ_FAST, ALL_KEYS),
    info("mset", -3, WRITE, (1, -1, 2)),
    info("getset", 3, WRITE_FAST, ONE_KEY),
    info("expire", -3, &["write", "fast"], ONE_KEY),
    info("pexpire", -3, &["write", "fast"], ONE_KEY),
    info("ttl", 2, READ_FAST, ONE_KEY),
    info("pttl", 2, READ_FAST, ONE_KEY),
    info("persist", 2, &["write", "fast"], ONE_KEY),
    info("dbsize", 1, READ_FAST, NO_KEYS),
    info("scan", -2, READ, NO_KEYS),
    info("cas", -3, WRITE, ONE_KEY),
    info("ping", -1, CONNECTION, NO_KEYS),
    info("echo", 2, CONNECTION, NO_KEYS),
    info("quit", -1, &["allow_busy", "noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS),
    info("reset", 1, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS),
    info("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS),
    info("hello", -1, &["noscript", "loading", "stale", "fast", "no_auth"], NO_KEYS),
    info("select", 2, CONNECTION, NO_KEYS),
    info("client", -2, &["noscript", "loading", "stale"], NO_KEYS),
    info("config", -2, &["admin", "noscript", "loading", "stale"], NO_KEYS),
    info("command", -1, &["loading", "stale"], NO_KEYS),
    info("info", -1, &["loading", "stale"], NO_KEYS),
    info("readonly", 1, CONNECTION, NO_KEYS),
    info("readwrite", 1, CONNECTION, NO_KEYS),
    info("multi", 1, TRANSACTION, NO_KEYS),
    info("exec", 1, &["noscript", "loading", "stale"], NO_KEYS),
    info("discard", 1, TRANSACTION, NO_KEYS),
    info("unwatch", 1, TRANSACTION, NO_KEYS),
    info("raft.member", -2, &["admin", "noscript"], NO_KEYS),
    info("raft.transfer-leader", 2, &["admin", "noscript"], NO_KEYS),
];

/// The row for a command name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    COMMANDS.iter().find(|row| row.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether `words` (the name included) satisfies `arity`.
pub fn arity_ok(arity: i64, words: usize) -> bool {
    let words = i64::try_from(words).unwrap_or(i64::MAX);
    if arity >= 0 {
        words == arity
    } else {
        words >= -arity
    }
}

impl CommandInfo {
    /// The Redis 7 shape: name, arity, flags, first key, last key, step, ACL categories, tips, key
    /// specifications, subcommands (the last four empty).
    pub fn to_frame(&self) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(self.name.as_bytes())),
            Frame::Integer(self.arity),
            Frame::Array(self.flags.iter().map(|flag| Frame::Simple((*flag).to_owned())).collect()),
            Frame::Integer(self.first_key),
            Frame::Integer(self.last_key),
            Frame::Integer(self.key_step),
            Frame::Array(vec![]),
            Frame::Array(vec![]),
            Frame::Array(vec![]),
            Frame::Array(vec![]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        for (i, row) in COMMANDS.iter().enumerate() {
            assert_eq!(row.name, row.name.to_ascii_lowercase());
            assert!(COMMANDS[i + 1..].iter().all(|other| other.name != row.name), "{} twice", row.name);
        }
    }

    #[test]
    fn every_data_command_in_the_table_is_known_to_kv_and_every_connection_command_is_in_it() {
        for row in COMMANDS {
            if crate::is_connection_command(row.name.as_bytes()) {
                continue;
            }
            // The name alone is either a whole command (DBSIZE) or an arity error, never "unknown".
            if let Err(error) = kv::parse(&[Bytes::from_static(row.name.as_bytes())]) {
                assert!(!error.to_string().contains("unknown command"), "{}: {error}", row.name);
            }
        }
        for name in
            ["ping", "echo", "quit", "reset", "auth", "hello", "select", "client", "config", "command"]
                .into_iter()
                .chain(["info", "readonly", "readwrite", "multi", "exec", "discard", "unwatch"])
        {
            assert!(crate::is_connection_command(name.as_bytes()), "{name}");
            assert!(lookup(name.as_bytes()).is_some(), "{name} has no row");
        }
    }

    #[test]
    fn arity_rules() {
        assert!(arity_ok(2, 2));
        assert!(!arity_ok(2, 3));
        assert!(arity_ok(-2, 2));
        assert!(arity_ok(-2, 9));
        assert!(!arity_ok(-2, 1));
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(lookup(b"GeT").map(|row| row.name), Some("get"));
        assert!(lookup(b"nosuch").is_none());
    }
}
