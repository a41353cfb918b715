//! `raftkv local`: a whole cluster of real `raftkv serve` processes on 127.0.0.1, with data in one
//! folder, until Ctrl-C. Started again on the same folder it resumes the same data.
//!
//! Layout of DIR: `local.toml` (cluster id, node count, base port: a second run must match), `node-N/`
//! (each node's data directory) and `node-N.log` (each node's log).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Start a local cluster of 3 or 5 nodes and keep it running until Ctrl-C.
#[derive(clap::Args, Debug)]
pub struct LocalArgs {
    /// How many nodes (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = parse_node_count)]
    nodes: u64,
    /// Folder for every node's data and log.
    #[arg(long, default_value = "./raftkv-data")]
    dir: PathBuf,
    /// Node N's clients connect to base-port + N - 1; its peers to base-port + 100 + N - 1.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Node N's admin HTTP endpoint (the live view at /, /status, /metrics, /health) listens on admin-base-port + N - 1.
    #[arg(long, default_value_t = 8001)]
    admin_base_port: u16,
    /// Minimum election timeout of every node.
    #[arg(long, default_value_t = 1_000)]
    election_timeout_ms: u64,
    /// Heartbeat interval of every node.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval_ms: u64,
    /// Writes that would grow the data past this many bytes fail with -OOM on every node (0: no limit).
    #[arg(long, default_value_t = 0)]
    maxmemory: u64,
    /// Every node snapshots its state machine and compacts its log every this many entries (0: never).
    #[arg(long, default_value_t = server::config::DEFAULT_SNAPSHOT_THRESHOLD_ENTRIES)]
    snapshot_threshold_entries: u64,
    /// Start a new cluster whose every node is seeded from this backup (`raftkv backup --to FILE`)
    /// instead of empty; --dir must hold no cluster yet.
    #[arg(long, value_name = "FILE")]
    restore: Option<PathBuf>,
    /// How every leader confirms linearizable reads: read-index or lease (see `raftkv serve --help`).
    #[arg(long, value_enum, default_value = "read-index")]
    read_mode: crate::serve::ReadModeArg,
    /// With --read-mode lease: the clock drift bound every node's lease trusts (0.01 = 1%).
    #[arg(long, default_value_t = server::config::DEFAULT_MAX_CLOCK_DRIFT)]
    max_clock_drift: f64,
    /// Limits given to every node.
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
}

fn parse_node_count(text: &str) -> Result<u64, String> {
    match text {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("a local cluster has 3 or 5 nodes".into()),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// How long nodes get to stop after SIGTERM before SIGKILL.
const STOP_BOUND: Duration = Duration::from_secs(10);

pub fn run(args: LocalArgs) -> ExitCode {
    match start(&args) {
        Ok(children) => supervise(children),
        Err(error) => {
            eprintln!("raftkv local: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, PartialEq)]
struct LocalFile {
    cluster_id: u64,
    nodes: u64,
    base_port: u16,
}

fn read_or_create_local_file(args: &LocalArgs) -> Result<LocalFile, String> {
    let path = args.dir.join("local.toml");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let field = |key: &str| -> Result<u64, String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim().strip_prefix('=')))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("{}: no valid {key}", path.display()))
        };
        let found = LocalFile {
            cluster_id: field("cluster_id")?,
            nodes: field("nodes")?,
            base_port: field("base_port")? as u16,
        };
        if found.nodes != args.nodes || found.base_port != args.base_port {
            return Err(format!(
                "{} holds a cluster of {} nodes at base port {}; start it with --nodes {} --base-port {} \
                 or use another --dir",
                args.dir.display(),
                found.nodes,
                found.base_port,
                found.nodes,
                found.base_port
            ));
        }
        return Ok(found);
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let cluster_id = (seed.as_nanos() as u64 ^ u64::from(std::process::id()) << 32) | 1;
    let local = LocalFile { cluster_id, nodes: args.nodes, base_port: args.base_port };
    let text =
        format!("cluster_id = {}\nnodes = {}\nbase_port = {}\n", cluster_id, args.nodes, args.base_port);
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(local)
}

fn client_port(base: u16, id: u64) -> u16 {
    base + id as u16 - 1
}

fn peer_port(base: u16, id: u64) -> u16 {
    base + 100 + id as u16 - 1
}

fn admin_port(admin_base: u16, id: u64) -> u16 {
    admin_base + id as u16 - 1
}

fn is_fresh(node_dir: &Path) -> bool {
    !node_dir.join(storage::IDENTITY_FILE).exists()
}

/// Checks that every node's ports exist (a base near 65,535 would run past the last port).
fn check_ports(args: &LocalArgs) -> Result<(), String> {
    let last = args.nodes as u16 - 1;
    if args.base_port.checked_add(100 + last).is_none() {
        return Err(format!(
            "--base-port {} leaves no room for {} nodes' peer ports",
            args.base_port, args.nodes
        ));
    }
    if args.admin_base_port.checked_add(last).is_none() {
        return Err(format!(
            "--admin-base-port {} leaves no room for {} nodes",
            args.admin_base_port, args.nodes
        ));
    }
    Ok(())
}

fn start(args: &LocalArgs) -> Result<Vec<(u64, Child)>, String> {
    check_ports(args)?;
    let local = read_or_create_local_file(args)?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let ids: Vec<u64> = (1..=args.nodes).collect();
    let all_fresh = ids.iter().all(|id| is_fresh(&args.dir.join(format!("node-{id}"))));
    let members: Vec<String> = ids
        .iter()
        .map(|&id| {
            format!(
                "{id}=127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
                peer_port(args.base_port, id),
                client_port(args.base_port, id),
                admin_port(args.admin_base_port, id)
            )
        })
        .collect();
    if let Some(file) = &args.restore {
        if !all_fresh {
            return Err(format!(
                "--restore seeds a new cluster, but {} already holds one; use another --dir",
                args.dir.display()
            ));
        }
        restore_every_node(args, file, &ids, local.cluster_id)?;
    }
    // Seeded directories are members already: only an empty new cluster is bootstrapped.
    let bootstrap = all_fresh && args.restore.is_none();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let mut children = Vec::new();
    for &id in &ids {
        let node_dir = args.dir.join(format!("node-{id}"));
        if !all_fresh && args.restore.is_none() && is_fresh(&node_dir) {
            eprintln!(
                "raftkv local: {} is empty but other nodes hold data: node {id} starts without state and waits \
                 to be added (it will not vote)",
                node_dir.display()
            );
        }
        let log_path = args.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(["--node-id", &id.to_string(), "--cluster-id", &local.cluster_id.to_string()])
            .arg("--data-dir")
            .arg(&node_dir)
            .args(["--client-listen", &format!("127.0.0.1:{}", client_port(args.base_port, id))])
            .args(["--peer-listen", &format!("127.0.0.1:{}", peer_port(args.base_port, id))])
            .args(["--admin-listen", &format!("127.0.0.1:{}", admin_port(args.admin_base_port, id))])
            .args(["--election-timeout-ms", &args.election_timeout_ms.to_string()])
            .args(["--heartbeat-interval-ms", &args.heartbeat_interval_ms.to_string()])
            .args(["--maxmemory", &args.maxmemory.to_string()])
            .args(["--snapshot-threshold-entries", &args.snapshot_threshold_entries.to_string()])
            .args(["--read-mode", args.read_mode.flag_value()])
            .args(["--max-clock-drift", &args.max_clock_drift.to_string()])
            .args(args.limits.to_args());
        for member in &members {
            command.args(["--member", member]);
        }
        if bootstrap {
            command.arg("--bootstrap");
        }
        command.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        // Own process group: Ctrl-C reaches only us, and we stop the nodes in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // If `raftkv local` itself dies (even by SIGKILL), the kernel sends its nodes SIGTERM: no orphans.
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| format!("starting node {id}: {e}"))?;
        children.push((id, child));
    }
    let verb = match (&args.restore, all_fresh) {
        (Some(_), _) => "Started a restored",
        (None, true) => "Started a new",
        (None, false) => "Resumed the",
    };
    println!("{verb} {}-node raftkv cluster; data in {}", args.nodes, args.dir.display());
    for &id in &ids {
        println!(
            "  node {id}: redis-cli -p {}    admin: http://127.0.0.1:{}/status    (log: {})",
            client_port(args.base_port, id),
            admin_port(args.admin_base_port, id),
            args.dir.join(format!("node-{id}.log")).display()
        );
    }
    println!(
        "Try: redis-cli -p {} set hello world; then raftkv status, or curl -s localhost:{}/metrics. Ctrl-C \
         stops every node.",
        args.base_port, args.admin_base_port
    );
    println!("Live view: open http://127.0.0.1:{}/ in a browser.", args.admin_base_port);
    Ok(children)
}

/// Seeds every node's directory from one verified backup, with this cluster's members and id: the
/// nodes then start from the backup's data (not bootstrapped empty), as `raftkv restore` would leave them.
fn restore_every_node(args: &LocalArgs, file: &Path, ids: &[u64], cluster_id: u64) -> Result<(), String> {
    let mut backup = crate::backup_file::verify(file)?;
    backup.machine.clear_sessions();
    for &id in ids {
        let node_dir = args.dir.join(format!("node-{id}"));
        crate::restore::check_fresh(&node_dir)?;
        crate::restore::seed(&backup, &node_dir, id, ids, cluster_id)?;
    }
    println!(
        "Restored {} (snapshot at index {}, term {}, {} keys) into every node of a new cluster",
        file.display(),
        backup.meta.index,
        backup.meta.term,
        backup.machine.key_count()
    );
    Ok(())
}

fn supervise(mut children: Vec<(u64, Child)>) -> ExitCode {
    let mut reported = vec![false; children.len()];
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        for (i, (id, child)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                if !reported[i] {
                    eprintln!("raftkv local: node {id} exited ({status}); see its log");
                    reported[i] = true;
                }
            }
        }
    }
    println!("Stopping every node...");
    let clean = stop_all(&mut children);
    if clean {
        println!("All nodes stopped.");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// SIGTERM to every node, wait up to [`STOP_BOUND`], SIGKILL whatever still runs. True if all exited 0.
pub fn stop_all(children: &mut [(u64, Child)]) -> bool {
    for (_, child) in children.iter() {
        // SAFETY: kill(2) with a pid we own (a child not yet reaped).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + STOP_BOUND;
    let mut clean = true;
    for (id, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    clean &= status.success();
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    eprintln!("raftkv local: node {id} did not stop in {STOP_BOUND:?}; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    clean = false;
                    break;
                }
            }
        }
    }
    clean
}
