//! `raftkv member list|add|promote|remove` and `raftkv transfer-leader`: send the matching RESP admin
//! command (`RAFT.MEMBER ...`, `RAFT.TRANSFER-LEADER id`) to any node, which forwards it to the leader,
//! and print the answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Where to send the command: one node's client address, or the local cluster's folder.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// A node's client address (any member; followers forward to the leader). Defaults to the nodes of
    /// the local cluster in --dir, tried in turn until one answers.
    #[arg(long, global = true)]
    node: Option<String>,
    /// The local cluster's folder (see `raftkv local`), used when --node is not given.
    #[arg(long, default_value = "./raftkv-data", global = true)]
    dir: std::path::PathBuf,
}

/// Change or show the cluster's membership.
#[derive(clap::Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    action: MemberAction,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand, Debug)]
enum MemberAction {
    /// Every member with its role and addresses, and any change in progress.
    List,
    /// Add node ID, reachable at ADDRS (`peer_addr[,client_addr[,admin_addr]]`): as a learner with
    /// --learner, else as a learner that is promoted to voter once it caught up.
    Add {
        id: u64,
        addrs: String,
        #[arg(long)]
        learner: bool,
    },
    /// Make learner ID a voter (waits, bounded, until it caught up with the leader).
    Promote { id: u64 },
    /// Remove member ID (voter or learner). Removing the leader hands leadership over once done.
    Remove { id: u64 },
}

/// Hand leadership to another voter.
#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    /// The voter to lead next.
    id: u64,
    #[command(flatten)]
    target: Target,
}

/// Connecting and the whole answer; a change waits up to about 45 s on the server (bounded there).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run_member(args: MemberArgs) -> ExitCode {
    let argv: Vec<String> = match args.action {
        MemberAction::List => vec!["LIST".into()],
        MemberAction::Add { id, addrs, learner } => {
            let mut argv = vec!["ADD".into(), id.to_string(), addrs];
            if learner {
                argv.push("LEARNER".into());
            }
            argv
        }
        MemberAction::Promote { id } => vec!["PROMOTE".into(), id.to_string()],
        MemberAction::Remove { id } => vec!["REMOVE".into(), id.to_string()],
    };
    let mut command = vec!["RAFT.MEMBER".to_string()];
    command.extend(argv);
    send(&args.target, &command, "raftkv member")
}

pub fn run_transfer(args: TransferArgs) -> ExitCode {
    send(&args.target, &["RAFT.TRANSFER-LEADER".into(), args.id.to_string()], "raftkv transfer-leader")
}

fn send(target: &Target, command: &[String], program: &str) -> ExitCode {
    let nodes = match &target.node {
        Some(node) => vec![node.clone()],
        None => crate::status::default_nodes(&target.dir),
    };
    let mut failures = Vec::new();
    for addr in &nodes {
        match ask(addr, command) {
            Ok(Answer::Lines(lines)) => {
                for line in lines {
                    println!("{line}");
                }
                return ExitCode::SUCCESS;
            }
            Ok(Answer::Error(text)) => {
                eprintln!("{program}: {text}");
                return ExitCode::FAILURE;
            }
            Err(error) => failures.push(format!("{addr}: {error}")),
        }
    }
    eprintln!("{program}: no node answered ({})", failures.join("; "));
    ExitCode::FAILURE
}

/// A node's answer: lines to print (a status or an array), or an error's text.
pub enum Answer {
    Lines(Vec<String>),
    Error(String),
}

/// Sends one command and reads a simple, error, integer, bulk or flat array answer.
pub fn ask(addr: &str, command: &[String]) -> Result<Answer, String> {
    let socket = addr.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", command.len());
    for word in command {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let header = read_line(&mut reader)?;
    let (kind, rest) = header.split_at(1.min(header.len()));
    match kind {
        "+" | ":" => Ok(Answer::Lines(vec![rest.to_string()])),
        "-" => Ok(Answer::Error(rest.to_string())),
        "$" => Ok(Answer::Lines(vec![read_bulk(&mut reader, rest)?])),
        "*" => {
            let count: usize = rest.parse().map_err(|_| format!("bad answer {header:?}"))?;
            let mut lines = Vec::with_capacity(count.min(1_000));
            for _ in 0..count {
                let line = read_line(&mut reader)?;
                let length = line.strip_prefix('$').ok_or_else(|| format!("bad array element {line:?}"))?;
                lines.push(read_bulk(&mut reader, length)?);
            }
            Ok(Answer::Lines(lines))
        }
        _ => Err(format!("unexpected answer {header:?}")),
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_bulk(reader: &mut impl Read, length: &str) -> Result<String, String> {
    let length: usize = length.parse().map_err(|_| format!("bad bulk length {length:?}"))?;
    let mut body = vec![0; length + 2];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    body.truncate(length);
    Ok(String::from_utf8_lossy(&body).into_owned())
}
