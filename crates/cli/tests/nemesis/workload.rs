//! The clients: five per key, each its own thread and connection, doing GET/SET/APPEND on register keys
//! and GET/INCR on counter keys, and recording every operation in one history in real-time order.
//!
//! Keys rotate: every few seconds each slot moves on to a fresh key, so that no key's history grows too
//! long for the checker to decide (the search is exponential in the worst case).
//!
//! Outcomes follow Jepsen: `:ok` when the node acknowledged; `:fail` only when the operation certainly did
//! not happen (a read that errs, or a write refused with an error that says "was not applied");
//! `:info` (unknown) otherwise — a timeout, a dropped connection, any other error. A process whose
//! operation ended `:info` never invokes again (its operation may still take effect at any later moment),
//! so the thread continues as a new process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lincheck::{Call, History};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What is done on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// GET, SET and APPEND of unique tokens: reads show which writes happened, in which order.
    Register,
    /// GET and INCR.
    Counter,
}

/// The keys in use at any time, one slot each.
pub const SLOTS: [KeyKind; 3] = [KeyKind::Register, KeyKind::Register, KeyKind::Counter];
pub const CLIENTS_PER_KEY: usize = 5;
/// How long a client waits for a reply before the outcome is unknown: above the nodes' own client timeout
/// (3 s in the harness), so a live node answers first, but a paused one does not hang the client.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// At most this many operations per client (a bound; time ends the run long before).
const MAX_OPS_PER_CLIENT: u64 = 1_000_000;
/// Process ids of one client thread are `thread + PROCESS_STRIDE * life`.
const PROCESS_STRIDE: i64 = 100;

/// The history and the EDN lines that spell it, appended under one lock so both are in real-time order:
/// an invocation is recorded before its request is sent, a completion after its reply arrived.
pub struct Recorder {
    started: Instant,
    pub history: History,
    pub edn: Vec<String>,
    /// Replies of a type the command never answers with: a server bug, reported at the end.
    pub unexpected: Vec<String>,
}

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        Recorder { started, history: History::new(), edn: Vec::new(), unexpected: Vec::new() }
    }

    pub fn invoke(&mut self, process: i64, key: &str, call: Call) {
        let value = match &call {
            Call::Write(Some(v)) | Call::Append(v) => edn_string(v),
            _ => "nil".to_string(),
        };
        self.line(process, "invoke", call.name(), key, &value);
        self.history.invoke(process, key, call).expect("a client invokes only with nothing open");
    }

    /// `:ok`, with the value read (GET) or the new integer (INCR); `None` for the other calls.
    pub fn ok(&mut self, process: i64, value: Option<String>) {
        let op = &self.history.ops()[self.history.open_op(process).expect("an open operation")];
        let (f, key) = (op.call.name(), op.key.clone());
        let shown = match (&op.call, &value) {
            (Call::Read, Some(v)) => edn_string(v),
            (Call::Read, None) => "nil".to_string(),
            (Call::Incr, Some(n)) => n.clone(),
            (Call::Write(Some(v)) | Call::Append(v), _) => edn_string(v),
            _ => "nil".to_string(),
        };
        self.line(process, "ok", f, &key, &shown);
        self.history.complete_ok(process, value).expect("an open operation");
    }

    pub fn fail(&mut self, process: i64, error: &str) {
        self.end(process, "fail", error);
        self.history.complete_fail(process).expect("an open operation");
    }

    pub fn info(&mut self, process: i64, error: &str) {
        self.end(process, "info", error);
        self.history.complete_info(process).expect("an open operation");
    }

    /// Time since the run started (the `:time` of events, in nanoseconds).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A nemesis event, for whoever reads the history (the checker skips non-integer processes).
    pub fn nemesis(&mut self, f: &str, value: &str) {
        let time = self.started.elapsed().as_nanos();
        self.edn.push(format!("{{:process :nemesis, :type :info, :f :{f}, :value {value:?}, :time {time}}}"));
    }

    fn end(&mut self, process: i64, kind: &str, error: &str) {
        let op = &self.history.ops()[self.history.open_op(process).expect("an open operation")];
        let (f, key) = (op.call.name(), op.key.clone());
        let value = match &op.call {
            Call::Write(Some(v)) | Call::Append(v) => edn_string(v),
            _ => "nil".to_string(),
        };
        let time = self.started.elapsed().as_nanos();
        self.edn.push(format!(
            "{{:process {process}, :type :{kind}, :f :{f}, :key {}, :value {value}, :error {}, :time {time}}}",
            edn_string(&key),
            edn_string(error)
        ));
    }

    fn line(&mut self, process: i64, kind: &str, f: &str, key: &str, value: &str) {
        let time = self.started.elapsed().as_nanos();
        self.edn.push(format!(
            "{{:process {process}, :type :{kind}, :f :{f}, :key {}, :value {value}, :time {time}}}",
            edn_string(key)
        ));
    }
}

fn edn_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What every client thread shares.
pub struct Workload {
    /// Each node's client address, by id from 1 (index 0 is node 1).
    pub nodes: Vec<(String, u16)>,
    pub recorder: Arc<Mutex<Recorder>>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
    /// Each slot moves to a fresh key this often.
    pub rotate_every: Duration,
    /// Clients stop by this time even if never told to.
    pub deadline: Instant,
}

/// The key slot `slot` uses at `elapsed` into the run.
pub fn key_at(slot: usize, elapsed: Duration, rotate_every: Duration) -> String {
    let generation = elapsed.as_millis() / rotate_every.as_millis().max(1);
    let kind = match SLOTS[slot] {
        KeyKind::Register => "r",
        KeyKind::Counter => "c",
    };
    format!("{kind}{slot}-{generation}")
}

/// The kind of a key named by [`key_at`].
pub fn kind_of(key: &str) -> KeyKind {
    if key.starts_with('c') {
        KeyKind::Counter
    } else {
        KeyKind::Register
    }
}

/// Starts `CLIENTS_PER_KEY` clients per slot; each draws its choices from its own seed derived from `seed`.
pub fn spawn_clients(workload: &Arc<Workload>, seed: u64) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for slot in 0..SLOTS.len() {
        for index in 0..CLIENTS_PER_KEY {
            let thread = slot * CLIENTS_PER_KEY + index;
            let workload = workload.clone();
            let seed = seed ^ (thread as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("client-{thread}"))
                    .spawn(move || run_client(&workload, slot, thread as i64, seed))
                    .expect("spawning a client thread"),
            );
        }
    }
    threads
}

fn run_client(workload: &Workload, slot: usize, thread: i64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut process = thread;
    let mut connection: Option<redis::Connection> = None;
    for n in 0..MAX_OPS_PER_CLIENT {
        if workload.stop.load(Ordering::Relaxed) || Instant::now() >= workload.deadline {
            return;
        }
        let Some(conn) = connection.as_mut() else {
            let (host, port) = &workload.nodes[rng.gen_range(0..workload.nodes.len())];
            connection = connect(host, *port);
            if connection.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = key_at(slot, workload.started.elapsed(), workload.rotate_every);
        let call = choose_call(&mut rng, SLOTS[slot], process, n);
        workload.recorder.lock().unwrap().invoke(process, &key, call.clone());
        let reply = execute(conn, &key, &call);
        let mut recorder = workload.recorder.lock().unwrap();
        match reply {
            Ok(value) => match completion(&call, &value) {
                Some(result) => recorder.ok(process, result),
                None => {
                    recorder.unexpected.push(format!("{} {key}: {value:?}", call.name()));
                    recorder.info(process, &format!("unexpected reply {value:?}"));
                    process += PROCESS_STRIDE;
                }
            },
            Err(error) => {
                let text = error.to_string();
                let lost_connection = error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error();
                if call == Call::Read || (!lost_connection && text.contains("was not applied")) {
                    recorder.fail(process, &text);
                } else {
                    recorder.info(process, &text);
                    process += PROCESS_STRIDE;
                }
                if lost_connection {
                    connection = None;
                }
            }
        }
        drop(recorder);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..10)));
    }
}

fn connect(host: &str, port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{host}:{port}/")).ok()?;
    let connection = client.get_connection_with_timeout(CONNECT_TIMEOUT).ok()?;
    connection.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
    connection.set_write_timeout(Some(REPLY_TIMEOUT)).ok()?;
    Some(connection)
}

/// Register keys: 40% GET, 45% APPEND, 15% SET; counter keys: 40% GET, 60% INCR. Written values are
/// unique tokens followed by a space (`S<process>.<n> `, `A<process>.<n> `), so a value read names every
/// write in it.
fn choose_call(rng: &mut ChaCha8Rng, kind: KeyKind, process: i64, n: u64) -> Call {
    let roll = rng.gen_range(0..100);
    match kind {
        KeyKind::Register if roll < 40 => Call::Read,
        KeyKind::Register if roll < 85 => Call::Append(format!("A{process}.{n} ")),
        KeyKind::Register => Call::Write(Some(format!("S{process}.{n} "))),
        KeyKind::Counter if roll < 40 => Call::Read,
        KeyKind::Counter => Call::Incr,
    }
}

fn execute(connection: &mut redis::Connection, key: &str, call: &Call) -> redis::RedisResult<redis::Value> {
    let command = match call {
        Call::Read => redis::cmd("GET").arg(key).clone(),
        Call::Write(Some(value)) => redis::cmd("SET").arg(key).arg(value).clone(),
        Call::Append(value) => redis::cmd("APPEND").arg(key).arg(value).clone(),
        Call::Incr => redis::cmd("INCR").arg(key).clone(),
        Call::Write(None) | Call::Cas { .. } => unreachable!("the workload never issues {call:?}"),
    };
    command.query(connection)
}

/// The `:ok` value of `reply` to `call`, or `None` if the reply has a type the command never answers with.
fn completion(call: &Call, reply: &redis::Value) -> Option<Option<String>> {
    use redis::Value;
    match (call, reply) {
        (Call::Read, Value::Nil) => Some(None),
        (Call::Read, Value::BulkString(bytes)) => Some(Some(String::from_utf8_lossy(bytes).into_owned())),
        (Call::Incr, Value::Int(n)) => Some(Some(n.to_string())),
        (Call::Write(_), Value::Okay) => Some(None),
        (Call::Write(_), Value::SimpleString(text)) if text == "OK" => Some(None),
        (Call::Append(_), Value::Int(_)) => Some(None),
        _ => None,
    }
}

/// Operations per (`:f`, outcome), for the report.
pub fn counts(history: &History) -> BTreeMap<(&'static str, &'static str), usize> {
    let mut counts = BTreeMap::new();
    for op in history.ops() {
        let outcome = match op.outcome {
            lincheck::Outcome::Ok(_) => "ok",
            lincheck::Outcome::Fail => "fail",
            lincheck::Outcome::Info => "info",
        };
        *counts.entry((op.call.name(), outcome)).or_default() += 1;
    }
    counts
}
