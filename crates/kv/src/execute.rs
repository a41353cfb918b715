//! What each command does to the key space. Pure functions of (store, command, now): the caller supplies
//! the leader-stamped time and decides about memory limits and rollback.

use bytes::{Bytes, BytesMut};

use crate::command::{Command, ExpireCommand, ExpireCondition, SetCondition, SetExpiry, TtlUnit};
use crate::parse::parse_strict_i64;
use crate::reply::{errors, Reply};
use crate::store::{Key, Store, Value, MAX_DEADLINE_MS, MAX_STRING_BYTES};

/// Answers a read-only command at `now_ms`, or `None` if the command writes.
pub(crate) fn read(store: &Store, command: &Command, now_ms: u64) -> Option<Reply> {
    let get = |key: &Bytes| store.get_live(&Key::new(key.clone()), now_ms);
    let reply = match command {
        Command::Get { key } => get(key).map_or(Reply::Nil, |v| Reply::Bulk(v.data.clone())),
        Command::Exists { keys } => {
            Reply::Integer(keys.iter().filter(|key| get(key).is_some()).count() as i64)
        }
        Command::Strlen { key } => Reply::Integer(get(key).map_or(0, |v| v.data.len() as i64)),
        Command::MGet { keys } => Reply::Array(
            keys.iter().map(|key| get(key).map_or(Reply::Nil, |v| Reply::Bulk(v.data.clone()))).collect(),
        ),
        Command::Ttl { key, unit } => Reply::Integer(match get(key) {
            None => -2,
            Some(Value { expires_at_ms: None, .. }) => -1,
            Some(Value { expires_at_ms: Some(deadline), .. }) => {
                let remaining_ms = deadline.saturating_sub(now_ms);
                match unit {
                    TtlUnit::Milliseconds => remaining_ms as i64,
                    // Redis rounds to the nearest second.
                    TtlUnit::Seconds => (remaining_ms.saturating_add(500) / 1000) as i64,
                }
            }
        }),
        Command::DbSize => Reply::Integer(store.live_len(now_ms) as i64),
        Command::Scan { cursor, pattern, count, type_matches } => {
            let (next, keys) = store.scan(*cursor, *count, pattern.as_deref(), *type_matches, now_ms);
            Reply::Array(vec![
                Reply::Bulk(Bytes::from(next.to_string())),
                Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
            ])
        }
        Command::Multi(commands) if command.is_read() => Reply::Array(
            commands
                .iter()
                .map(|c| match c {
                    Command::Multi(_) => nested_multi_error(),
                    _ => read(store, c, now_ms).unwrap_or_else(nested_multi_error),
                })
                .collect(),
        ),
        _ => return None,
    };
    Some(reply)
}

fn nested_multi_error() -> Reply {
    Reply::error("ERR MULTI calls can not be nested")
}

/// A store being changed by one log entry, with an undo record so that a write refused for memory (or a
/// whole transaction) can be taken back exactly.
pub(crate) struct Txn<'a> {
    store: &'a mut Store,
    now_ms: u64,
    /// The longest value APPEND may build (`KvConfig::max_value_bytes`, at most `MAX_STRING_BYTES`).
    max_value_bytes: usize,
    /// For every change made so far, the key and the value it had just before (undone newest first).
    undo: Vec<(Key, Option<Value>)>,
}

impl<'a> Txn<'a> {
    pub fn new(store: &'a mut Store, now_ms: u64, max_value_bytes: usize) -> Txn<'a> {
        Txn { store, now_ms, max_value_bytes: max_value_bytes.min(MAX_STRING_BYTES), undo: Vec::new() }
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// Takes back every change, newest first, leaving the store as it was before this entry's command.
    pub fn rollback(self) {
        for (key, old) in self.undo.into_iter().rev() {
            match old {
                Some(value) => self.store.insert(key, value),
                None => self.store.remove(&key),
            };
        }
    }

    fn get(&self, key: &Key) -> Option<&Value> {
        self.store.get_live(key, self.now_ms)
    }

    fn put(&mut self, key: Key, value: Value) {
        let old = self.store.insert(key.clone(), value);
        self.undo.push((key, old));
    }

    /// Removes the key; true if it was live (an expired one is removed too, but did not "exist").
    fn delete(&mut self, key: &Key) -> bool {
        let Some(old) = self.store.remove(key) else { return false };
        let live = old.is_live(self.now_ms);
        self.undo.push((key.clone(), Some(old)));
        live
    }

    /// Applies one command at the entry's time and returns its reply.
    pub fn execute(&mut self, command: &Command) -> Reply {
        if let Some(reply) = read(self.store, command, self.now_ms) {
            return reply;
        }
        match command {
            Command::Set { key, value, condition, get, expiry } => {
                self.set(Key::new(key.clone()), value, *condition, *get, *expiry)
            }
            Command::Del { keys } => {
                Reply::Integer(keys.iter().filter(|key| self.delete(&Key::new((*key).clone()))).count() as i64)
            }
            Command::IncrBy { key, delta } => self.incr_by(Key::new(key.clone()), *delta),
            Command::Append { key, value } => self.append(Key::new(key.clone()), value),
            Command::MSet { pairs } => {
                for (key, value) in pairs {
                    self.put(Key::new(key.clone()), Value::persistent(value.clone()));
                }
                Reply::Ok
            }
            Command::GetSet { key, value } => {
                let key = Key::new(key.clone());
                let old = self.get(&key).map_or(Reply::Nil, |v| Reply::Bulk(v.data.clone()));
                self.put(key, Value::persistent(value.clone()));
                old
            }
            Command::Expire { key, ttl_ms, condition, command } => {
                self.expire(Key::new(key.clone()), *ttl_ms, *condition, *command)
            }
            Command::Persist { key } => {
                let key = Key::new(key.clone());
                match self.get(&key) {
                    Some(Value { data, expires_at_ms: Some(_) }) => {
                        let data = data.clone();
                        self.put(key, Value::persistent(data));
                        Reply::Integer(1)
                    }
                    _ => Reply::Integer(0),
                }
            }
            Command::Cas { key, expected, new } => {
                let key = Key::new(key.clone());
                let current = self.get(&key).map(|v| &v.data);
                if current == expected.as_ref() {
                    self.put(key, Value::persistent(new.clone()));
                    Reply::Integer(1)
                } else {
                    Reply::Integer(0)
                }
            }
            Command::Multi(commands) => {
                Reply::Array(
                    commands
                        .iter()
                        .map(|c| {
                            if matches!(c, Command::Multi(_)) {
                                nested_multi_error()
                            } else {
                                self.execute(c)
                            }
                        })
                        .collect(),
                )
            }
            Command::Get { .. }
            | Command::Exists { .. }
            | Command::Strlen { .. }
            | Command::MGet { .. }
            | Command::Ttl { .. }
            | Command::DbSize
            | Command::Scan { .. } => unreachable!("read commands are answered by `read` above"),
        }
    }

    fn set(
        &mut self,
        key: Key,
        value: &Bytes,
        condition: SetCondition,
        get: bool,
        expiry: SetExpiry,
    ) -> Reply {
        let old = self.get(&key).cloned();
        // Redis validates the expire time before anything else.
        let expires_at_ms = match expiry {
            SetExpiry::None => None,
            SetExpiry::Keep => old.as_ref().and_then(|v| v.expires_at_ms),
            SetExpiry::RelativeMs(ms) => {
                match self.now_ms.checked_add(ms).filter(|&d| d <= MAX_DEADLINE_MS) {
                    Some(deadline) => Some(deadline),
                    None => return Reply::error(errors::invalid_expire_time("set")),
                }
            }
            SetExpiry::AtMs(deadline) if deadline <= MAX_DEADLINE_MS => Some(deadline),
            SetExpiry::AtMs(_) => return Reply::error(errors::invalid_expire_time("set")),
        };
        let old_reply = || old.as_ref().map_or(Reply::Nil, |v| Reply::Bulk(v.data.clone()));
        let allowed = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => old.is_none(),
            SetCondition::IfPresent => old.is_some(),
        };
        if !allowed {
            return if get { old_reply() } else { Reply::Nil };
        }
        let reply = if get { old_reply() } else { Reply::Ok };
        if expires_at_ms.is_some_and(|deadline| deadline < self.now_ms) {
            // EXAT/PXAT in the past: Redis deletes the key instead of storing a dead one.
            self.delete(&key);
        } else {
            self.put(key, Value { data: value.clone(), expires_at_ms });
        }
        reply
    }

    fn incr_by(&mut self, key: Key, delta: i64) -> Reply {
        let (current, expires_at_ms) = match self.get(&key) {
            None => (0, None),
            Some(value) => match parse_strict_i64(&value.data) {
                Some(n) => (n, value.expires_at_ms),
                None => return Reply::error(errors::NOT_AN_INTEGER),
            },
        };
        let Some(new) = current.checked_add(delta) else { return Reply::error(errors::INCR_OVERFLOW) };
        self.put(key, Value { data: Bytes::from(new.to_string()), expires_at_ms });
        Reply::Integer(new)
    }

    fn append(&mut self, key: Key, suffix: &Bytes) -> Reply {
        let (data, expires_at_ms) = match self.get(&key) {
            None if suffix.len() > self.max_value_bytes => return Reply::error(errors::STRING_TOO_LONG),
            None => (suffix.clone(), None),
            Some(value) => {
                if value.data.len() + suffix.len() > self.max_value_bytes {
                    return Reply::error(errors::STRING_TOO_LONG);
                }
                let mut data = BytesMut::with_capacity(value.data.len() + suffix.len());
                data.extend_from_slice(&value.data);
                data.extend_from_slice(suffix);
                (data.freeze(), value.expires_at_ms)
            }
        };
        let len = data.len() as i64;
        self.put(key, Value { data, expires_at_ms });
        Reply::Integer(len)
    }

    fn expire(&mut self, key: Key, ttl_ms: i64, condition: ExpireCondition, command: ExpireCommand) -> Reply {
        let name = match command {
            ExpireCommand::Expire => "expire",
            ExpireCommand::Pexpire => "pexpire",
        };
        // The deadline in Redis's signed arithmetic; it may lie in the past (even before 1970).
        let Some(deadline) = i64::try_from(self.now_ms).ok().and_then(|now| now.checked_add(ttl_ms)) else {
            return Reply::error(errors::invalid_expire_time(name));
        };
        let Some(current) = self.get(&key).cloned() else { return Reply::Integer(0) };
        // No timeout counts as an infinite one for GT and LT.
        let current_deadline = current.expires_at_ms.map_or(i128::MAX, i128::from);
        let refused = (condition.if_no_ttl && current.expires_at_ms.is_some())
            || (condition.if_has_ttl && current.expires_at_ms.is_none())
            || (condition.if_later && i128::from(deadline) <= current_deadline)
            || (condition.if_earlier && i128::from(deadline) >= current_deadline);
        if refused {
            return Reply::Integer(0);
        }
        if deadline <= self.now_ms as i64 {
            self.delete(&key);
        } else {
            self.put(key, Value { data: current.data, expires_at_ms: Some(deadline as u64) });
        }
        Reply::Integer(1)
    }
}
