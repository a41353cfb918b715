//! A minimal HTTP/1.0 client for the admin endpoint: enough to GET a page, or send raw bytes, and read
//! the status code and body. HTTP/1.0 makes the server close the connection after one response, so the
//! body is simply everything after the headers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `GET path` from 127.0.0.1:`port`.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    get_from("127.0.0.1", port, path)
}

/// `GET path` from `host`:`port`.
pub fn get_from(host: &str, port: u16, path: &str) -> std::io::Result<Response> {
    request_to(host, port, format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(), TIMEOUT)
}

/// `POST path` with `body` to 127.0.0.1:`port`, waiting at most `timeout` for each step.
pub fn post(port: u16, path: &str, body: &str, timeout: Duration) -> std::io::Result<Response> {
    let raw = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request_to("127.0.0.1", port, raw.as_bytes(), timeout)
}

/// How long a connect, a write or a read may take by default.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `raw` as the whole request to 127.0.0.1:`port` and reads the whole answer (bounded by timeouts,
/// never a hang).
pub fn request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    request_to("127.0.0.1", port, raw, TIMEOUT)
}

fn request_to(host: &str, port: u16, raw: &[u8], timeout: Duration) -> std::io::Result<Response> {
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an IP: {host}")))?;
    let addr = SocketAddr::new(ip, port);
    let mut stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(2)))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(raw)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    parse(&String::from_utf8_lossy(&bytes))
}

fn parse(text: &str) -> std::io::Result<Response> {
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{why}: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| invalid("no end of headers"))?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    Ok(Response { status, headers: headers.to_string(), body: body.to_string() })
}
