//! Clients for tests that change a cluster under load: one writes distinct keys and returns the
//! acknowledged ones; others record a Jepsen-style history of shared registers for `raftkv check`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis::Commands;

/// Clients that keep working through every node in turn until stopped: one writes `key-i = i` (each key
/// once; the acknowledged ones come back from `stop`), and [`HISTORY_CLIENTS`] more write and read three
/// shared registers, recording a Jepsen-style history for `raftkv check` (an error that proves nothing
/// was applied is `:fail`, any other error on a write `:info`, after which the client continues as a new
/// process, as Jepsen's clients do).
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u64>>,
    history_threads: Vec<JoinHandle<()>>,
    history: Arc<Mutex<Vec<String>>>,
}

pub const HISTORY_CLIENTS: u64 = 3;

/// One connection per node, opened on demand and dropped after an error.
struct Connections {
    ports: Vec<u16>,
    open: Vec<Option<redis::Connection>>,
}

impl Connections {
    fn new(ports: Vec<u16>) -> Connections {
        let open = ports.iter().map(|_| None).collect();
        Connections { ports, open }
    }

    fn get(&mut self, slot: usize) -> Option<&mut redis::Connection> {
        let slot = slot % self.ports.len();
        if self.open[slot].is_none() {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[slot])).unwrap();
            let connection = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
            connection.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            self.open[slot] = Some(connection);
        }
        self.open[slot].as_mut()
    }

    fn forget(&mut self, slot: usize) {
        let slot = slot % self.ports.len();
        self.open[slot] = None;
    }
}

impl Writer {
    pub fn start(ports: Vec<u16>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let writer_ports = ports.clone();
        let thread = std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut connections = Connections::new(writer_ports);
            let mut i = 0u64;
            // Bounded by the test's own steps; the count guards against a runaway loop.
            while !stopping.load(Ordering::SeqCst) && i < 1_000_000 {
                i += 1;
                // A node that is not running (yet, or any more) is skipped.
                let Some(connection) = connections.get(i as usize) else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                match connection.set::<_, _, ()>(format!("key-{i}"), i) {
                    Ok(()) => acknowledged.push(i),
                    Err(_) => {
                        connections.forget(i as usize);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            acknowledged
        });
        let history = Arc::new(Mutex::new(Vec::new()));
        let history_threads = (0..HISTORY_CLIENTS)
            .map(|client| {
                let (stopping, history, ports) = (stop.clone(), history.clone(), ports.clone());
                std::thread::spawn(move || record_history(client, ports, &stopping, &history))
            })
            .collect();
        Writer { stop, thread, history_threads, history }
    }

    /// Stops every client; the acknowledged keys and the recorded history.
    pub fn stop(self) -> (Vec<u64>, String) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.history_threads {
            thread.join().expect("a history client");
        }
        let acknowledged = self.thread.join().expect("the writer thread");
        let history = self.history.lock().unwrap().join("\n") + "\n";
        (acknowledged, history)
    }
}

fn record_history(client: u64, ports: Vec<u16>, stopping: &AtomicBool, history: &Mutex<Vec<String>>) {
    let mut connections = Connections::new(ports);
    let mut process = client;
    let record = |line: String| history.lock().unwrap().push(line);
    for op in 0..100_000u64 {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let slot = (op + client) as usize;
        let key = format!("r{}", op % 3);
        let Some(connection) = connections.get(slot) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if op % 2 == 0 {
            let value = format!("{client}-{op}");
            record(format!(
                "{{:process {process}, :type :invoke, :f :write, :key \"{key}\", :value \"{value}\"}}"
            ));
            let outcome = match connection.set::<_, _, ()>(&key, &value) {
                Ok(()) => ":ok",
                // Refused before it was proposed: certainly not applied.
                Err(e) if e.to_string().contains("TryAgain") && !e.to_string().contains("may or may not") => {
                    ":fail"
                }
                Err(_) => ":info",
            };
            record(format!(
                "{{:process {process}, :type {outcome}, :f :write, :key \"{key}\", :value \"{value}\"}}"
            ));
            if outcome != ":ok" {
                connections.forget(slot);
            }
            if outcome == ":info" {
                process += HISTORY_CLIENTS;
            }
        } else {
            record(format!("{{:process {process}, :type :invoke, :f :read, :key \"{key}\", :value nil}}"));
            match connection.get::<_, Option<String>>(&key) {
                Ok(value) => {
                    let value = value.map_or("nil".to_string(), |v| format!("\"{v}\""));
                    record(format!(
                        "{{:process {process}, :type :ok, :f :read, :key \"{key}\", :value {value}}}"
                    ));
                }
                Err(_) => {
                    // A read changes nothing, so a failed one simply did not happen.
                    record(format!(
                        "{{:process {process}, :type :fail, :f :read, :key \"{key}\", :value nil}}"
                    ));
                    connections.forget(slot);
                }
            }
        }
    }
}

/// `raftkv check` on a recorded history: exit 0 and a `linearizable` verdict.
pub fn assert_linearizable(dir: &std::path::Path, history: &str) {
    let path = dir.join("history.edn");
    std::fs::write(&path, history).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv")).arg("check").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().last().unwrap_or("").starts_with("linearizable"),
        "raftkv check on {} operations: {stdout}{}",
        history.lines().count() / 2,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "history of {} operations: {}",
        history.lines().count() / 2,
        stdout.lines().last().unwrap_or("")
    );
}
