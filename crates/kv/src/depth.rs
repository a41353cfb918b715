//! Bounded nesting for the two recursive types that are decoded from bytes (`Command::Multi` and
//! `Reply::Array`). Serde's derived decoders recurse once per nesting level, so a crafted log entry or
//! snapshot with a million nested arrays would overflow the stack (an abort, not even a panic). Each
//! recursive field decodes through one of these modules, which counts the nesting on this thread and fails
//! cleanly past the limit. Encoding needs no guard: we only encode values we built.

use std::cell::Cell;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    static MULTI_DEPTH: Cell<u32> = const { Cell::new(0) };
    static REPLY_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Increments a depth counter for as long as it lives.
struct DepthGuard(&'static std::thread::LocalKey<Cell<u32>>);

impl DepthGuard {
    fn enter(key: &'static std::thread::LocalKey<Cell<u32>>, limit: u32) -> Option<DepthGuard> {
        let depth = key.with(|d| {
            let depth = d.get() + 1;
            d.set(depth);
            depth
        });
        let guard = DepthGuard(key);
        (depth <= limit).then_some(guard)
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.0.with(|d| d.set(d.get() - 1));
    }
}

/// `Command::Multi(Vec<Command>)`: a transaction holds plain commands only, never another transaction.
pub(crate) mod multi {
    use super::*;
    use crate::command::Command;

    pub fn serialize<S: Serializer>(commands: &[Command], serializer: S) -> Result<S::Ok, S::Error> {
        commands.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Command>, D::Error> {
        let Some(_guard) = DepthGuard::enter(&MULTI_DEPTH, 1) else {
            return Err(D::Error::custom("MULTI nested inside MULTI"));
        };
        Vec::<Command>::deserialize(deserializer)
    }
}

/// `Reply::Array(Vec<Reply>)`, at most [`crate::MAX_REPLY_DEPTH`] deep.
pub(crate) mod reply_array {
    use super::*;
    use crate::reply::{Reply, MAX_REPLY_DEPTH};

    pub fn serialize<S: Serializer>(items: &[Reply], serializer: S) -> Result<S::Ok, S::Error> {
        items.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Reply>, D::Error> {
        let Some(_guard) = DepthGuard::enter(&REPLY_DEPTH, MAX_REPLY_DEPTH) else {
            return Err(D::Error::custom("reply arrays nested too deeply"));
        };
        Vec::<Reply>::deserialize(deserializer)
    }
}
