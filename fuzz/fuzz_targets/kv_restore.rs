//! The state machine's snapshot reader, `kv::KvStateMachine::restore`, on arbitrary bytes.
//!
//! Checks, beyond "no panic, no hang, no allocation the input did not pay for" (the reader promises
//! all three in its format spec): a stream it accepts gives a state machine whose invariants hold, and
//! writing that state machine's snapshot gives back exactly the bytes read, since the format is strict
//! (the reader accepts exactly what the writer produces) and deterministic.

#![no_main]

use kv::{KvConfig, KvStateMachine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(machine) = KvStateMachine::restore(KvConfig::default(), data) else { return };
    if let Err(broken) = machine.check_invariants() {
        panic!("restore accepted a snapshot that breaks an invariant: {broken}");
    }
    assert_eq!(machine.snapshot().to_bytes(), data, "an accepted snapshot is not what the writer writes");
});
