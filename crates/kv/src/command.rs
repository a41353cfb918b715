//! The commands the state machine understands, as data. A `Command` is what the parser produces from a
//! client's argv and what a log entry carries (inside a [`crate::Request`]); it holds relative times
//! (`EX 10`) exactly as the client said them, and the state machine turns them into absolute deadlines
//! with the leader-stamped time of the entry that applies them, so every replica computes the same one.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One state-machine command. Keys and values are binary-safe.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Command {
    /// `GET key` → bulk or nil.
    Get { key: Bytes },
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]` → `OK`, or nil when the condition
    /// failed; with `GET`, the old value (or nil) instead.
    Set { key: Bytes, value: Bytes, condition: SetCondition, get: bool, expiry: SetExpiry },
    /// `DEL key...` (and `UNLINK`) → number of keys removed.
    Del { keys: Vec<Bytes> },
    /// `EXISTS key...` → number of keys present (a key named twice counts twice, as in Redis).
    Exists { keys: Vec<Bytes> },
    /// `INCR`/`DECR`/`INCRBY`/`DECRBY` → the new value. An absent key counts as 0; the TTL is kept.
    IncrBy { key: Bytes, delta: i64 },
    /// `APPEND key value` → the new length. The TTL is kept.
    Append { key: Bytes, value: Bytes },
    /// `STRLEN key` → length, 0 when absent.
    Strlen { key: Bytes },
    /// `MGET key...` → an array of bulk-or-nil.
    MGet { keys: Vec<Bytes> },
    /// `MSET key value [key value ...]` → `OK`; clears the TTL of every key it sets.
    MSet { pairs: Vec<(Bytes, Bytes)> },
    /// `GETSET key value` → the old value or nil; clears the TTL.
    GetSet { key: Bytes, value: Bytes },
    /// `EXPIRE key s [NX|XX|GT|LT]` and `PEXPIRE key ms [...]`, already converted to milliseconds (may be
    /// negative: a deadline not in the future deletes the key). → 1 if the timeout was set, else 0.
    Expire { key: Bytes, ttl_ms: i64, condition: ExpireCondition, command: ExpireCommand },
    /// `TTL key` / `PTTL key` → remaining time, -1 without a timeout, -2 when absent.
    Ttl { key: Bytes, unit: TtlUnit },
    /// `PERSIST key` → 1 if a timeout was removed, else 0.
    Persist { key: Bytes },
    /// `DBSIZE` → number of live keys.
    DbSize,
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]` → `[next cursor, [keys...]]`. See the `store` module
    /// for the ordering and the guarantee. `count` is at least 1; `type_matches` is false when a `TYPE`
    /// other than `string` was asked for (every value is a string, so the scan then returns no keys).
    Scan { cursor: u64, pattern: Option<Bytes>, count: u64, type_matches: bool },
    /// Compare-and-set, for the simulator's linearizability checks (not a Redis command; the parser
    /// accepts `CAS key new` for "only if absent" and `CAS key expected new`). Sets `new` (clearing any TTL)
    /// if the key's current value equals `expected`, where `None` means absent. → 1 if it swapped, else 0.
    Cas { key: Bytes, expected: Option<Bytes>, new: Bytes },
    /// MULTI ... EXEC: every command runs, in order, in one log entry; nothing else interleaves. The reply
    /// is an array of the per-command replies (a runtime error in one does not stop the others, as in
    /// Redis). A transaction never contains another one; decoding refuses that.
    Multi(#[serde(with = "crate::depth::multi")] Vec<Command>),
}

/// SET's existence condition.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum SetCondition {
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// SET's expiry option, as the client gave it; made absolute at apply time.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No option: any previous TTL is cleared.
    #[default]
    None,
    /// `KEEPTTL`: keep the key's current TTL.
    Keep,
    /// `EX`/`PX`: this many milliseconds after the entry's leader time (always > 0).
    RelativeMs(u64),
    /// `EXAT`/`PXAT`: this absolute Unix time in milliseconds (always > 0).
    AtMs(u64),
}

/// EXPIRE's options (Redis 7). Each one set is a separate check that must pass, as in Redis's
/// `expireGenericCommand`; NX excludes the others and GT excludes LT (the parser enforces that).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ExpireCondition {
    /// `NX`: only if the key has no timeout.
    pub if_no_ttl: bool,
    /// `XX`: only if the key has a timeout.
    pub if_has_ttl: bool,
    /// `GT`: only if the new deadline is later than the current one (no timeout counts as infinite).
    pub if_later: bool,
    /// `LT`: only if the new deadline is earlier than the current one (no timeout counts as infinite).
    pub if_earlier: bool,
}

/// Which spelling of EXPIRE the client used; it only changes the error text.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ExpireCommand {
    Expire,
    Pexpire,
}

/// TTL answers in seconds, PTTL in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum TtlUnit {
    Seconds,
    Milliseconds,
}

impl Command {
    /// Whether the command only reads. Read commands may be served through ReadIndex (or a stale local
    /// read) with [`crate::KvStateMachine::read`] instead of a log entry; a transaction is a read when all
    /// its commands are.
    pub fn is_read(&self) -> bool {
        match self {
            Command::Get { .. }
            | Command::Exists { .. }
            | Command::Strlen { .. }
            | Command::MGet { .. }
            | Command::Ttl { .. }
            | Command::DbSize
            | Command::Scan { .. } => true,
            Command::Set { .. }
            | Command::Del { .. }
            | Command::IncrBy { .. }
            | Command::Append { .. }
            | Command::MSet { .. }
            | Command::GetSet { .. }
            | Command::Expire { .. }
            | Command::Persist { .. }
            | Command::Cas { .. } => false,
            Command::Multi(commands) => commands.iter().all(Command::is_read),
        }
    }

    /// The command's name in lower case, for logs and metrics (`incrby` covers INCR/DECR/DECRBY too).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Del { .. } => "del",
            Command::Exists { .. } => "exists",
            Command::IncrBy { .. } => "incrby",
            Command::Append { .. } => "append",
            Command::Strlen { .. } => "strlen",
            Command::MGet { .. } => "mget",
            Command::MSet { .. } => "mset",
            Command::GetSet { .. } => "getset",
            Command::Expire { command: ExpireCommand::Expire, .. } => "expire",
            Command::Expire { command: ExpireCommand::Pexpire, .. } => "pexpire",
            Command::Ttl { unit: TtlUnit::Seconds, .. } => "ttl",
            Command::Ttl { unit: TtlUnit::Milliseconds, .. } => "pttl",
            Command::Persist { .. } => "persist",
            Command::DbSize => "dbsize",
            Command::Scan { .. } => "scan",
            Command::Cas { .. } => "cas",
            Command::Multi(_) => "exec",
        }
    }

    /// Every key the command names, in order (for sharding or per-key histories).
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            Command::Get { key }
            | Command::Set { key, .. }
            | Command::IncrBy { key, .. }
            | Command::Append { key, .. }
            | Command::Strlen { key }
            | Command::GetSet { key, .. }
            | Command::Expire { key, .. }
            | Command::Ttl { key, .. }
            | Command::Persist { key }
            | Command::Cas { key, .. } => vec![key],
            Command::Del { keys } | Command::Exists { keys } | Command::MGet { keys } => {
                keys.iter().collect()
            }
            Command::MSet { pairs } => pairs.iter().map(|(k, _)| k).collect(),
            Command::DbSize | Command::Scan { .. } => Vec::new(),
            Command::Multi(commands) => commands.iter().flat_map(Command::keys).collect(),
        }
    }
}

impl Command {
    /// The command as a client could send it: `parse(&command.to_argv()) == Ok(command)` for every
    /// command except `Multi`, which is not one argv (it returns the EXEC-free list flattened, for logs
    /// only). Relative and absolute expiry come out in milliseconds (`PX`, `PXAT`).
    pub fn to_argv(&self) -> Vec<Bytes> {
        fn word(text: &str) -> Bytes {
            Bytes::copy_from_slice(text.as_bytes())
        }
        fn number(n: impl ToString) -> Bytes {
            Bytes::from(n.to_string())
        }
        let mut argv = Vec::new();
        match self {
            Command::Get { key } => argv.extend([word("GET"), key.clone()]),
            Command::Set { key, value, condition, get, expiry } => {
                argv.extend([word("SET"), key.clone(), value.clone()]);
                match condition {
                    SetCondition::Always => {}
                    SetCondition::IfAbsent => argv.push(word("NX")),
                    SetCondition::IfPresent => argv.push(word("XX")),
                }
                if *get {
                    argv.push(word("GET"));
                }
                match expiry {
                    SetExpiry::None => {}
                    SetExpiry::Keep => argv.push(word("KEEPTTL")),
                    SetExpiry::RelativeMs(ms) => argv.extend([word("PX"), number(ms)]),
                    SetExpiry::AtMs(ms) => argv.extend([word("PXAT"), number(ms)]),
                }
            }
            Command::Del { keys } => {
                argv.push(word("DEL"));
                argv.extend(keys.iter().cloned());
            }
            Command::Exists { keys } => {
                argv.push(word("EXISTS"));
                argv.extend(keys.iter().cloned());
            }
            Command::IncrBy { key, delta } => argv.extend([word("INCRBY"), key.clone(), number(delta)]),
            Command::Append { key, value } => argv.extend([word("APPEND"), key.clone(), value.clone()]),
            Command::Strlen { key } => argv.extend([word("STRLEN"), key.clone()]),
            Command::MGet { keys } => {
                argv.push(word("MGET"));
                argv.extend(keys.iter().cloned());
            }
            Command::MSet { pairs } => {
                argv.push(word("MSET"));
                for (key, value) in pairs {
                    argv.extend([key.clone(), value.clone()]);
                }
            }
            Command::GetSet { key, value } => argv.extend([word("GETSET"), key.clone(), value.clone()]),
            Command::Expire { key, ttl_ms, condition, command } => {
                match command {
                    ExpireCommand::Expire => {
                        argv.extend([word("EXPIRE"), key.clone(), number(ttl_ms / 1000)])
                    }
                    ExpireCommand::Pexpire => argv.extend([word("PEXPIRE"), key.clone(), number(ttl_ms)]),
                }
                let flags = [
                    (condition.if_no_ttl, "NX"),
                    (condition.if_has_ttl, "XX"),
                    (condition.if_later, "GT"),
                    (condition.if_earlier, "LT"),
                ];
                argv.extend(flags.into_iter().filter(|(set, _)| *set).map(|(_, flag)| word(flag)));
            }
            Command::Ttl { key, unit: TtlUnit::Seconds } => argv.extend([word("TTL"), key.clone()]),
            Command::Ttl { key, unit: TtlUnit::Milliseconds } => argv.extend([word("PTTL"), key.clone()]),
            Command::Persist { key } => argv.extend([word("PERSIST"), key.clone()]),
            Command::DbSize => argv.push(word("DBSIZE")),
            Command::Scan { cursor, pattern, count, type_matches } => {
                argv.extend([word("SCAN"), number(cursor)]);
                if let Some(pattern) = pattern {
                    argv.extend([word("MATCH"), pattern.clone()]);
                }
                argv.extend([word("COUNT"), number(count)]);
                if !type_matches {
                    argv.extend([word("TYPE"), word("none")]);
                }
            }
            Command::Cas { key, expected, new } => {
                argv.extend([word("CAS"), key.clone()]);
                argv.extend(expected.iter().cloned());
                argv.push(new.clone());
            }
            Command::Multi(commands) => {
                argv.push(word("MULTI"));
                for command in commands {
                    argv.extend(command.to_argv());
                }
                argv.push(word("EXEC"));
            }
        }
        argv
    }
}

impl fmt::Display for Command {
    /// `SET "k" "v" PX 100`-style, as `redis-cli` would show the words: arguments quoted, bytes outside
    /// printable ASCII escaped as `\xNN`. For traces and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.to_argv().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let is_word =
                !arg.is_empty() && arg.iter().all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(b));
            if is_word {
                f.write_str(&String::from_utf8_lossy(arg))?;
            } else {
                f.write_str("\"")?;
                for &byte in arg.iter() {
                    match byte {
                        b'"' | b'\\' => write!(f, "\\{}", byte as char)?,
                        b' '..=b'~' => write!(f, "{}", byte as char)?,
                        _ => write!(f, "\\x{byte:02x}")?,
                    }
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}
