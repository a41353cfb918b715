//! `raftkv local` and `raftkv status` as a newcomer uses them: start, write, Ctrl-C, start again, read.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "harness/http.rs"]
mod http;

/// Kills the `raftkv local` process (and so, through SIGTERM handling or the parent-death signal, its
/// nodes) and removes the folder, also when the test fails.
struct LocalGuard {
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A base port whose client, peer and admin ranges (base..base+3, base+100..base+103, base+200..base+203)
/// are free right now.
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = probe.saturating_sub(300).max(20_000);
        let ports = (0..3).flat_map(|i| [base + i, base + 100 + i, base + 200 + i]);
        let held: Vec<_> = ports.map(|p| TcpListener::bind(("127.0.0.1", p))).collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port range found");
}

fn start_local(guard: &mut LocalGuard, base: u16) {
    let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["local", "--nodes", "3", "--base-port", &base.to_string()])
        .args(["--admin-base-port", &(base + 200).to_string()])
        .args(["--election-timeout-ms", "300", "--heartbeat-interval-ms", "50"])
        .arg("--dir")
        .arg(&guard.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    guard.child = Some(child);
}

fn stop_local(guard: &mut LocalGuard) -> std::process::ExitStatus {
    let mut child = guard.child.take().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "raftkv local did not stop within 20 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Retries `f` every 100 ms for up to 20 s.
fn eventually<T>(mut f: impl FnMut() -> redis::RedisResult<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f() {
            Ok(value) => return value,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("no success within 20 s: {error}"),
        }
    }
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

#[test]
fn local_cluster_starts_stops_cleanly_and_resumes_its_data() {
    let dir = std::env::temp_dir().join(format!("raftkv-test-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut guard = LocalGuard { child: None, dir };
    let base = free_base_port();
    start_local(&mut guard, base);
    eventually(|| redis::cmd("SET").arg("hello").arg("world").query::<()>(&mut connect(base)?));
    let status = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .arg("status")
        .arg("--dir")
        .arg(&guard.dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && table.contains("leader"), "raftkv status printed:\n{table}");
    assert_eq!(table.lines().count(), 5, "a header, one line per node, the configuration:\n{table}");
    let configuration = table.lines().last().unwrap_or_default();
    assert!(configuration.contains("voters 1,2,3; learners none"), "{configuration}");
    // Each node serves its admin endpoint on the port local assigned it.
    for admin_port in base + 200..base + 203 {
        let health = http::get(admin_port, "/health").expect("GET /health");
        assert_eq!(health.status, 200, "node at admin port {admin_port}: {}", health.body);
    }
    assert!(stop_local(&mut guard).success(), "every node should stop cleanly");

    start_local(&mut guard, base);
    let value: String = eventually(|| redis::cmd("GET").arg("hello").query(&mut connect(base + 2)?));
    assert_eq!(value, "world");
    assert!(stop_local(&mut guard).success());
}
