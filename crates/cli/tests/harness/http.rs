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
    request(port, format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
}

/// Sends `raw` as the whole request and reads the whole answer (bounded by timeouts, never a hang).
pub fn request(port: u16, raw: &[u8]) -> std::io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
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
