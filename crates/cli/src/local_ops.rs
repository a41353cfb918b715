//! `raftkv local add` and `raftkv local remove`: change a running `raftkv local` cluster.
//!
//! Both talk to two parties. The cluster, over RESP (`RAFT.MEMBER ...`), decides membership; the
//! supervisor (`raftkv local`, holding `supervisor.lock` in the folder) owns the processes and learns
//! what to run from `local.toml`, which it re-reads every half second (see [`crate::local`]).
//!
//! - **add**: check a supervisor runs and the cluster has a leader; under the edit lock, take the next
//!   unused id and record it (`node.N = "voter"` or `"learner"`); the supervisor starts it with
//!   `--join <a member> [--promote]`; wait until the cluster lists it as a voter (or learner).
//! - **remove**: `RAFT.MEMBER REMOVE ID` first (the cluster stops counting it), and only then record it
//!   as removed, so the supervisor stops its process: stopping a voter before the cluster stopped
//!   counting it would cost the cluster a vote it still needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::local_file::{self, LocalFile, Role};
use crate::member::{ask, Answer};

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The running local cluster's folder.
    #[arg(long, default_value = "./raftkv-data")]
    dir: PathBuf,
    /// Add it as a learner (gets the log, never votes) instead of a voter.
    #[arg(long)]
    learner: bool,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The node to remove (voter or learner).
    id: u64,
    /// The running local cluster's folder.
    #[arg(long, default_value = "./raftkv-data")]
    dir: PathBuf,
}

/// How long `add` waits for the new node to join (and, as a voter, catch up and be promoted).
const JOIN_BOUND: Duration = Duration::from_secs(90);
/// How long `remove` waits for the supervisor to stop the removed node.
const STOP_BOUND: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(200);

pub fn run_add(args: &AddArgs) -> ExitCode {
    report("raftkv local add", add(args))
}

pub fn run_remove(args: &RemoveArgs) -> ExitCode {
    report("raftkv local remove", remove(args))
}

fn report(program: &str, outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn add(args: &AddArgs) -> Result<String, String> {
    let local = running_cluster(&args.dir)?;
    let list = member_list(&local)?;
    if !list.iter().any(|line| line.split_whitespace().nth(2) == Some("leader")) {
        return Err(format!(
            "the cluster has no leader right now (members: {}); nothing was changed, retry shortly",
            list.join("; ")
        ));
    }
    let (id, local) = record_new_node(&args.dir, args.learner)?;
    let wanted = if args.learner { "learner" } else { "voter" };
    let log = args.dir.join(format!("node-{id}.log"));
    let deadline = Instant::now() + JOIN_BOUND;
    loop {
        let roles = member_list(&local).unwrap_or_default();
        if roles.iter().any(|line| role_of(line, id) == Some(wanted)) {
            break;
        }
        // A node that could not start (a port taken, say) ends its log with serve's one error line.
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = log_text.lines().rev().find(|l| l.starts_with("raftkv serve: ")) {
            return Err(format!(
                "node {id} did not start ({line}); drop it with raftkv local remove {id}{}",
                crate::local::dir_flag(&args.dir)
            ));
        }
        if !local_file::supervisor_running(&args.dir)? {
            return Err(format!(
                "raftkv local on {} stopped before node {id} joined; it starts node {id} when it runs again",
                args.dir.display()
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "node {id} is recorded in {} and was started, but is not a {wanted} after {JOIN_BOUND:?}; \
                 see {} and raftkv member list",
                LocalFile::path(&args.dir).display(),
                log.display()
            ));
        }
        std::thread::sleep(POLL);
    }
    let admin_base = local.admin_base_port.unwrap_or(8001);
    Ok(format!(
        "Added node {id} as a {wanted}:\n{}",
        crate::local::node_line(&args.dir, local.base_port, admin_base, id)
    ))
}

/// Records the next unused id under the edit lock (two racing `add`s get two ids); the new id and file.
fn record_new_node(dir: &Path, learner: bool) -> Result<(u64, LocalFile), String> {
    let _edit = local_file::lock_for_edit(dir)?;
    let mut local = LocalFile::read(dir)?.ok_or_else(|| no_cluster(dir))?;
    let id = local.next_id();
    local_file::check_ports(local.base_port, local.admin_base_port.unwrap_or(8001), id)?;
    local.changes.insert(id, if learner { Role::Learner } else { Role::Voter });
    local.write(dir)?;
    Ok((id, local))
}

fn remove(args: &RemoveArgs) -> Result<String, String> {
    let id = args.id;
    let local = running_cluster(&args.dir)?;
    if local.role(id).is_none_or(|role| role == Role::Removed) {
        let running: Vec<String> = local.running_ids().iter().map(u64::to_string).collect();
        return Err(format!(
            "node {id} is not a node of the local cluster in {} (its nodes: {})",
            args.dir.display(),
            running.join(", ")
        ));
    }
    let outcome = remove_from_configuration(&local, id)?;
    {
        let _edit = local_file::lock_for_edit(&args.dir)?;
        let mut local = LocalFile::read(&args.dir)?.ok_or_else(|| no_cluster(&args.dir))?;
        local.changes.insert(id, Role::Removed);
        local.write(&args.dir)?;
    }
    let deadline = Instant::now() + STOP_BOUND;
    while std::net::TcpStream::connect(local.client_addr(id)).is_ok() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{outcome}, and recorded as removed, but its process still serves after {STOP_BOUND:?}: \
                 is raftkv local on {} still running?",
                args.dir.display()
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(format!(
        "{outcome}; its process is stopped, its data stays in {}",
        args.dir.join(format!("node-{id}")).display()
    ))
}

/// `RAFT.MEMBER REMOVE id` through the other nodes in turn; the cluster's answer. A node the
/// configuration no longer holds (a remove that was cut short after this step) counts as removed.
fn remove_from_configuration(local: &LocalFile, id: u64) -> Result<String, String> {
    let command = ["RAFT.MEMBER".to_string(), "REMOVE".into(), id.to_string()];
    let mut failures = Vec::new();
    for other in local.running_ids().into_iter().filter(|&other| other != id) {
        let addr = local.client_addr(other);
        match ask(&addr, &command) {
            Ok(Answer::Lines(lines)) => return Ok(lines.join(" ")),
            Ok(Answer::Error(text)) if text.contains("is not a member") => {
                return Ok(format!("node {id} was no member any more"))
            }
            Ok(Answer::Error(text)) => return Err(format!("{text} (nothing else was changed)")),
            Err(error) => failures.push(format!("{addr}: {error}")),
        }
    }
    Err(format!("no other node answered ({}); nothing was changed", failures.join("; ")))
}

/// The cluster in `dir`, checked to be supervised by a running `raftkv local`.
fn running_cluster(dir: &Path) -> Result<LocalFile, String> {
    let local = LocalFile::read(dir)?.ok_or_else(|| no_cluster(dir))?;
    if !local_file::supervisor_running(dir)? {
        return Err(format!(
            "no raftkv local is running on {}: start it (raftkv local{}) and run this again",
            dir.display(),
            crate::local::dir_flag(dir)
        ));
    }
    Ok(local)
}

fn no_cluster(dir: &Path) -> String {
    format!(
        "{} holds no local cluster (no local.toml); start one with raftkv local{}",
        dir.display(),
        crate::local::dir_flag(dir)
    )
}

/// `RAFT.MEMBER LIST` from the first running node that answers.
fn member_list(local: &LocalFile) -> Result<Vec<String>, String> {
    let mut failures = Vec::new();
    for id in local.running_ids() {
        let addr = local.client_addr(id);
        match ask(&addr, &["RAFT.MEMBER".into(), "LIST".into()]) {
            Ok(Answer::Lines(lines)) => return Ok(lines),
            Ok(Answer::Error(text)) => failures.push(format!("{addr}: {text}")),
            Err(error) => failures.push(format!("{addr}: {error}")),
        }
    }
    Err(format!("no node answered ({})", failures.join("; ")))
}

/// Node `id`'s role in a `RAFT.MEMBER LIST` line (`4 voter leader peer=...`), if the line is its.
fn role_of(line: &str, id: u64) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next()? == id.to_string()).then(|| words.next()).flatten()
}
