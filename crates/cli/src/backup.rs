//! `raftkv backup --to FILE`: fetch a consistent snapshot of a running cluster from any node's admin
//! endpoint (`GET /snapshot`, see `server::admin::backup`), like `etcdctl snapshot save`.
//!
//! The body goes to `FILE.tmp`, which is fsynced and checked through both readers (storage's checksums,
//! kv's strict format) before it is renamed to FILE and the directory fsynced: FILE is either a whole,
//! verified backup or untouched.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::backup_file;

/// Save a consistent snapshot of a running cluster to a file.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// The admin HTTP address (`--admin-listen`) of any node of the cluster; a follower asks its leader
    /// for the commit index, so every write acknowledged before the backup started is in it.
    #[arg(long, default_value = "127.0.0.1:8001", value_name = "ADDR")]
    from: String,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Give up when the node sends nothing for this long.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

pub fn run(args: BackupArgs) -> ExitCode {
    match backup(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raftkv backup: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `FILE.tmp` beside FILE.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn backup(args: &BackupArgs) -> Result<String, String> {
    let started = Instant::now();
    if args.to.exists() && !args.force {
        return Err(format!("{} exists; pass --force to replace it", args.to.display()));
    }
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let (mut body, node_id) = request_snapshot(&args.from, timeout)?;
    let temp = temp_path(&args.to);
    let written = save(&mut body, &temp).map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("receiving the snapshot from {} into {}: {e}", args.from, temp.display())
    })?;
    let verified = backup_file::verify(&temp).map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!(
            "the snapshot from {} failed verification, nothing was written to {}: {e}",
            args.from,
            args.to.display()
        )
    })?;
    fs::rename(&temp, &args.to)
        .map_err(|e| format!("renaming {} to {}: {e}", temp.display(), args.to.display()))?;
    sync_parent(&args.to).map_err(|e| format!("fsync of the directory of {}: {e}", args.to.display()))?;
    Ok(format!(
        "Backed up node {node_id} ({}): snapshot at index {}, term {}, members {}; {} keys, {} bytes, in {:.2} s -> {}",
        args.from,
        verified.meta.index,
        verified.meta.term,
        backup_file::describe_members(&verified.meta),
        verified.machine.key_count(),
        written,
        started.elapsed().as_secs_f64(),
        args.to.display()
    ))
}

/// Sends `GET /snapshot` (HTTP/1.0: the body ends when the node closes the connection) and returns the
/// body reader positioned after the headers, and the node id the node names.
fn request_snapshot(addr: &str, timeout: Duration) -> Result<(BufReader<TcpStream>, String), String> {
    let unreachable =
        |e: &dyn std::fmt::Display| format!("cannot reach a node's admin endpoint at {addr}: {e}");
    let socket = addr
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .next()
        .ok_or_else(|| unreachable(&"no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&socket, Duration::from_secs(5)).map_err(|e| unreachable(&e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| unreachable(&e))?;
    let request = format!("GET /snapshot HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| unreachable(&e))?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).map_err(|e| format!("reading the answer of {addr}: {e}"))?;
    let response = parse_head(&head)?;
    if response.code != 200 {
        let mut reason = String::new();
        let _ = reader.take(4096).read_to_string(&mut reason);
        return Err(format!(
            "{addr} answered {} to GET /snapshot: {}",
            response.code,
            reason.lines().next().unwrap_or("").trim()
        ));
    }
    Ok((reader, response.node_id.unwrap_or_else(|| "?".into())))
}

/// The status line and headers, up to the empty line (at most 64 KiB).
fn read_head(reader: &mut impl BufRead) -> io::Result<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed inside the headers",
            ));
        }
        if line == "\r\n" || line == "\n" {
            return Ok(head);
        }
        head.push_str(&line);
        if head.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "headers longer than 64 KiB"));
        }
    }
}

#[derive(Debug, PartialEq)]
struct ResponseHead {
    code: u16,
    node_id: Option<String>,
}

fn parse_head(head: &str) -> Result<ResponseHead, String> {
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("");
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status:?}"))?;
    let node_id = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("x-raftkv-node-id").then(|| value.trim().to_string())
    });
    Ok(ResponseHead { code, node_id })
}

/// Copies the body into a new `temp` file and fsyncs it; returns the bytes written.
fn save(body: &mut impl Read, temp: &Path) -> io::Result<u64> {
    let mut file = File::create(temp)?;
    let written = io::copy(body, &mut file)?;
    file.sync_all()?;
    Ok(written)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_gives_the_status_code_and_node_id() {
        let head = "HTTP/1.0 200 OK\r\ncontent-type: application/octet-stream\r\nX-Raftkv-Node-Id: 2\r\n";
        assert_eq!(parse_head(head).unwrap(), ResponseHead { code: 200, node_id: Some("2".into()) });
        let head = "HTTP/1.1 503 Service Unavailable\r\n";
        assert_eq!(parse_head(head).unwrap(), ResponseHead { code: 503, node_id: None });
        assert!(parse_head("SSH-2.0-OpenSSH\r\n").unwrap_err().contains("not an HTTP answer"));
    }

    #[test]
    fn the_temporary_file_sits_beside_the_backup() {
        assert_eq!(temp_path(Path::new("/b/x.snap")), PathBuf::from("/b/x.snap.tmp"));
        assert_eq!(temp_path(Path::new("x")), PathBuf::from("x.tmp"));
    }

    #[test]
    fn headers_end_at_the_empty_line_and_a_closed_connection_is_an_error() {
        let mut input = io::Cursor::new(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody".to_vec());
        assert_eq!(read_head(&mut input).unwrap(), "HTTP/1.0 200 OK\r\nA: b\r\n");
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
        assert!(read_head(&mut io::Cursor::new(b"HTTP/1.0 200 OK\r\n".to_vec())).is_err());
    }
}
