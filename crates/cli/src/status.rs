//! `raftkv status`: ask every node for `INFO raft` over RESP and print one table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Show every node of a cluster: id, address, role, term, commit, applied, lag.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Client addresses of the nodes, comma-separated. Defaults to the local cluster's (see `raftkv local`).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<String>,
    /// The local cluster's folder, to find its node count and ports when --nodes is not given.
    #[arg(long, default_value = "./raftkv-data")]
    dir: std::path::PathBuf,
}

/// A node's `INFO raft` as key/value pairs.
type Info = Vec<(String, String)>;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `INFO raft` and returns the reply's `key:value` lines.
pub fn query(addr: &str) -> Result<Info, String> {
    let socket = addr.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&socket, TIMEOUT).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$4\r\nraft\r\n").map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).map_err(|e| e.to_string())?;
    let length: usize = match header.strip_prefix('$') {
        Some(n) => n.trim().parse().map_err(|_| format!("bad reply {header:?}"))?,
        None => return Err(format!("unexpected reply {:?}", header.trim())),
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(server::info::parse(&String::from_utf8_lossy(&body)))
}

/// The client addresses of the local cluster's running nodes in `dir` (those `raftkv local add` added
/// included, removed ones not), or of a default 3-node cluster when `dir` holds none.
pub fn default_nodes(dir: &std::path::Path) -> Vec<String> {
    match crate::local_file::LocalFile::read(dir) {
        Ok(Some(local)) => local.running_ids().into_iter().map(|id| local.client_addr(id)).collect(),
        _ => (0..3).map(|i| format!("127.0.0.1:{}", 7001 + i)).collect(),
    }
}

pub fn run(args: StatusArgs) -> ExitCode {
    let nodes = if args.nodes.is_empty() { default_nodes(&args.dir) } else { args.nodes };
    let answers: Vec<(String, Result<Info, String>)> =
        nodes.iter().map(|addr| (addr.clone(), query(addr))).collect();
    let get = |info: &[(String, String)], key: &str| {
        info.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let max_commit = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .filter_map(|info| get(info, "commit_index").parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    println!(
        "{:>4}  {:<22} {:<12} {:>6} {:>8} {:>8} {:>6}",
        "id", "address", "role", "term", "commit", "applied", "lag"
    );
    let mut reachable = 0;
    for (addr, answer) in &answers {
        match answer {
            Ok(info) => {
                reachable += 1;
                let applied: u64 = get(info, "applied_index").parse().unwrap_or(0);
                println!(
                    "{:>4}  {:<22} {:<12} {:>6} {:>8} {:>8} {:>6}",
                    get(info, "node_id"),
                    addr,
                    get(info, "role"),
                    get(info, "term"),
                    get(info, "commit_index"),
                    applied,
                    max_commit.saturating_sub(applied)
                );
            }
            Err(error) => println!("{:>4}  {:<22} {:<12} ({error})", "?", addr, "down"),
        }
    }
    if reachable == 0 {
        eprintln!("raftkv status: no node answered");
        return ExitCode::FAILURE;
    }
    // The configuration as the leader sees it (else as the first node that answered does).
    let infos: Vec<&Info> = answers.iter().filter_map(|(_, a)| a.as_ref().ok()).collect();
    if let Some(info) = infos.iter().find(|i| get(i, "role") == "leader").or(infos.first()) {
        println!("{}", configuration_line(&|key| get(info, key)));
    }
    ExitCode::SUCCESS
}

/// `configuration (node 1's view): voters 1,2,3; learners 4` and, during a joint change, the outgoing
/// voters.
fn configuration_line(get: &dyn Fn(&str) -> String) -> String {
    let or_none = |list: String| if list.is_empty() { "none".to_string() } else { list };
    let mut line = format!(
        "configuration (node {}'s view, entry {}): voters {}; learners {}",
        get("node_id"),
        get("configuration_index"),
        or_none(get("voters")),
        or_none(get("learners"))
    );
    let outgoing = get("outgoing_voters");
    if !outgoing.is_empty() {
        line.push_str(&format!("; joint change in progress, outgoing voters {outgoing}"));
    } else if get("conf_change_in_progress") == "1" {
        line.push_str("; a change is in progress (not committed yet)");
    }
    line
}
