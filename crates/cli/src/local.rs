//! `raftkv local`: a whole cluster of real `raftkv serve` processes on 127.0.0.1, with data in one
//! folder, until Ctrl-C. Started again on the same folder it resumes the same data, the nodes added
//! since included. While it runs, `raftkv local add` and `raftkv local remove` (see [`crate::local_ops`])
//! change the cluster: they record the change in `local.toml`, which this supervisor reads every half
//! second, starting added nodes and stopping removed ones.
//!
//! Layout of DIR: `local.toml` (the cluster, see [`crate::local_file`]; a second run must match),
//! `node-N/` (each node's data directory), `node-N.log` (each node's log), and the lock files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::local_file::{admin_port, check_ports, client_port, peer_port, FolderLock, LocalFile, Role};

/// Start a local cluster of 3 or 5 nodes and keep it running until Ctrl-C; or, with `add`/`remove`,
/// change the running one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LocalArgs {
    #[command(subcommand)]
    action: Option<LocalAction>,
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

#[derive(clap::Subcommand, Debug)]
enum LocalAction {
    /// Add a node to the running local cluster in --dir (next unused id, the same port scheme): the
    /// running `raftkv local` starts it with --join, it is promoted to voter once caught up (a learner
    /// with --learner), and it is supervised like the others from then on.
    Add(crate::local_ops::AddArgs),
    /// Remove node ID from the running local cluster in --dir (`raftkv member remove`), then the running
    /// `raftkv local` stops it for good; its data directory is kept.
    Remove(crate::local_ops::RemoveArgs),
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
/// How often the supervisor looks at `local.toml` for nodes added or removed.
const FILE_POLL: Duration = Duration::from_millis(500);

pub fn run(args: LocalArgs) -> ExitCode {
    let outcome = match &args.action {
        Some(LocalAction::Add(add)) => return crate::local_ops::run_add(add),
        Some(LocalAction::Remove(remove)) => return crate::local_ops::run_remove(remove),
        None => start(&args),
    };
    match outcome {
        Ok(supervisor) => supervisor.supervise(),
        Err(error) => {
            eprintln!("raftkv local: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `local.toml` (checking it matches the flags) or creates it; records the admin base port.
fn read_or_create_local_file(args: &LocalArgs) -> Result<LocalFile, String> {
    let _edit = crate::local_file::lock_for_edit(&args.dir)?;
    let Some(mut found) = LocalFile::read(&args.dir)? else {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let cluster_id = (seed.as_nanos() as u64 ^ u64::from(std::process::id()) << 32) | 1;
        let local = LocalFile::new(cluster_id, args.nodes, args.base_port, args.admin_base_port);
        local.write(&args.dir)?;
        return Ok(local);
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
    // `raftkv local add` prints the new node's admin address from here.
    if found.admin_base_port != Some(args.admin_base_port) {
        found.admin_base_port = Some(args.admin_base_port);
        found.write(&args.dir)?;
    }
    Ok(found)
}

fn is_fresh(node_dir: &Path) -> bool {
    !node_dir.join(storage::IDENTITY_FILE).exists()
}

fn start(args: &LocalArgs) -> Result<Supervisor<'_>, String> {
    check_ports(args.base_port, args.admin_base_port, args.nodes)?;
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    let lock = crate::local_file::lock_as_supervisor(&args.dir)?
        .ok_or_else(|| format!("another raftkv local is already running on {}", args.dir.display()))?;
    let local = read_or_create_local_file(args)?;
    for id in local.running_ids() {
        check_ports(args.base_port, args.admin_base_port, id)?;
    }
    let first_ids: Vec<u64> = (1..=args.nodes).collect();
    let all_fresh = first_ids.iter().all(|id| is_fresh(&args.dir.join(format!("node-{id}"))));
    if let Some(file) = &args.restore {
        if !all_fresh {
            return Err(format!(
                "--restore seeds a new cluster, but {} already holds one; use another --dir",
                args.dir.display()
            ));
        }
        restore_every_node(args, file, &first_ids, local.cluster_id)?;
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    // Seeded directories are members already: only an empty new cluster is bootstrapped.
    let bootstrap = all_fresh && args.restore.is_none();
    let mut supervisor = Supervisor {
        launcher: Launcher { exe, args, cluster_id: local.cluster_id, bootstrap },
        nodes: Vec::new(),
        reported: BTreeSet::new(),
        seen: LocalFile::read(&args.dir)?,
        _lock: lock,
    };
    for id in local.running_ids() {
        let node_dir = args.dir.join(format!("node-{id}"));
        if id <= local.nodes && !all_fresh && args.restore.is_none() && is_fresh(&node_dir) {
            eprintln!(
                "raftkv local: {} is empty but other nodes hold data: node {id} starts without state and waits \
                 to be added (it will not vote)",
                node_dir.display()
            );
        }
        supervisor.launch(&local, id)?;
    }
    let verb = match (&args.restore, all_fresh) {
        (Some(_), _) => "Started a restored",
        (None, true) => "Started a new",
        (None, false) => "Resumed the",
    };
    println!("{verb} {}-node raftkv cluster; data in {}", local.running_ids().len(), args.dir.display());
    for id in local.running_ids() {
        println!("{}", node_line(&args.dir, args.base_port, args.admin_base_port, id));
    }
    println!(
        "Try: redis-cli -p {} set hello world; then raftkv status, or curl -s localhost:{}/metrics. Ctrl-C \
         stops every node. Grow it with raftkv local add{}.",
        args.base_port,
        args.admin_base_port,
        dir_flag(&args.dir)
    );
    println!("Live view: open http://127.0.0.1:{}/ in a browser.", args.admin_base_port);
    Ok(supervisor)
}

/// ` --dir D` when D is not the default folder, so a printed command works as printed.
pub fn dir_flag(dir: &Path) -> String {
    if dir == Path::new("./raftkv-data") {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// One node's addresses, as printed at start and by `raftkv local add`.
pub fn node_line(dir: &Path, base_port: u16, admin_base_port: u16, id: u64) -> String {
    format!(
        "  node {id}: redis-cli -p {}    admin: http://127.0.0.1:{}/status    (log: {})",
        client_port(base_port, id),
        admin_port(admin_base_port, id),
        dir.join(format!("node-{id}.log")).display()
    )
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

/// Builds each node's `raftkv serve` command line.
struct Launcher<'a> {
    exe: PathBuf,
    args: &'a LocalArgs,
    cluster_id: u64,
    /// This run creates the cluster: the first nodes start with `--bootstrap`.
    bootstrap: bool,
}

impl Launcher<'_> {
    /// Node `id`'s process. The first nodes know each other from `--member` flags; an added node
    /// joins through `join_via` (a member's client address), asking to be promoted if it is to be a
    /// voter and has not joined yet (a node that joined before only carries on).
    fn spawn(&self, local: &LocalFile, id: u64, join_via: Option<String>) -> Result<Child, String> {
        let args = self.args;
        let node_dir = args.dir.join(format!("node-{id}"));
        let log_path = args.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .args(["--node-id", &id.to_string(), "--cluster-id", &self.cluster_id.to_string()])
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
        if id <= local.nodes {
            for first in 1..=local.nodes {
                let (peer, client) = (peer_port(args.base_port, first), client_port(args.base_port, first));
                let admin = admin_port(args.admin_base_port, first);
                command.args([
                    "--member",
                    &format!("{first}=127.0.0.1:{peer},127.0.0.1:{client},127.0.0.1:{admin}"),
                ]);
            }
            if self.bootstrap {
                command.arg("--bootstrap");
            }
        } else {
            let via = join_via.ok_or_else(|| format!("node {id} has no running member to join through"))?;
            command.args(["--join", &via]);
            if local.role(id) == Some(Role::Voter) && is_fresh(&node_dir) {
                command.arg("--promote");
            }
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
        command.spawn().map_err(|e| format!("starting node {id}: {e}"))
    }
}

/// The running nodes, and what `local.toml` said when last read.
struct Supervisor<'a> {
    launcher: Launcher<'a>,
    nodes: Vec<(u64, Child)>,
    /// Nodes whose exit was reported already.
    reported: BTreeSet<u64>,
    seen: Option<LocalFile>,
    _lock: FolderLock,
}

impl Supervisor<'_> {
    fn launch(&mut self, local: &LocalFile, id: u64) -> Result<(), String> {
        let via = self
            .nodes
            .iter_mut()
            .find_map(|(other, child)| {
                (*other != id && matches!(child.try_wait(), Ok(None))).then_some(*other)
            })
            .map(|other| local.client_addr(other));
        let child = self.launcher.spawn(local, id, via)?;
        self.nodes.push((id, child));
        Ok(())
    }

    fn supervise(mut self) -> ExitCode {
        let mut last_read = Instant::now();
        while !STOP.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            for (id, child) in self.nodes.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    if self.reported.insert(*id) {
                        eprintln!("raftkv local: node {id} exited ({status}); see its log");
                    }
                }
            }
            if last_read.elapsed() >= FILE_POLL {
                last_read = Instant::now();
                self.follow_file();
            }
        }
        println!("Stopping every node...");
        let clean = stop_all(&mut self.nodes);
        if clean {
            println!("All nodes stopped.");
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Starts the nodes `local.toml` added since it was last read and stops the ones it removed.
    fn follow_file(&mut self) {
        let dir = &self.launcher.args.dir;
        let local = match LocalFile::read(dir) {
            Ok(Some(local)) if Some(&local) != self.seen.as_ref() => local,
            Ok(_) => return,
            Err(error) => {
                eprintln!("raftkv local: {error}; ignoring it until it changes");
                return;
            }
        };
        for id in local.running_ids() {
            if self.nodes.iter().any(|(running, _)| *running == id) {
                continue;
            }
            let (base, admin_base) = (self.launcher.args.base_port, self.launcher.args.admin_base_port);
            match check_ports(base, admin_base, id).and_then(|()| self.launch(&local, id)) {
                Ok(()) => println!(
                    "Started node {id} (raftkv local add):\n{}",
                    node_line(dir, base, admin_base, id)
                ),
                Err(error) => eprintln!("raftkv local: cannot start node {id}: {error}"),
            }
        }
        let (removed, kept): (Vec<_>, Vec<_>) =
            self.nodes.drain(..).partition(|(id, _)| local.role(*id) == Some(Role::Removed));
        self.nodes = kept;
        if !removed.is_empty() {
            let mut removed = removed;
            stop_all(&mut removed);
            for (id, _) in &removed {
                println!("Stopped node {id}: removed from the cluster (its data stays in node-{id}/, never started again)");
            }
        }
        self.seen = Some(local);
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
