//! A raw RESP client over one TCP connection, for tests that must control every byte: pipelines
//! written without reading, oversized requests, connections that are closed on them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Raw {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// One request in RESP: an array of bulk strings.
pub fn encode(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        out.extend_from_slice(word);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the client port");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    pub fn send(&mut self, words: &[&[u8]]) {
        self.stream.write_all(&encode(words)).expect("sending a request");
    }

    /// Sends text words.
    pub fn send_words(&mut self, words: &[&str]) {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.send(&words);
    }

    /// One reply as text: a simple string, error or integer line without CRLF, or a bulk's data
    /// (`(nil)` for a null bulk). Arrays are not expected here.
    pub fn reply(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reading a reply");
        let line = line.trim_end_matches("\r\n").to_string();
        match line.strip_prefix('$') {
            Some("-1") => "(nil)".into(),
            Some(length) => {
                let length: usize = length.parse().expect("a bulk length");
                let mut data = vec![0; length + 2];
                self.reader.read_exact(&mut data).expect("reading bulk data");
                data.truncate(length);
                String::from_utf8_lossy(&data).into_owned()
            }
            None => line,
        }
    }

    /// Asks and answers one command.
    pub fn call(&mut self, words: &[&str]) -> String {
        self.send_words(words);
        self.reply()
    }

    /// True once the server closed the connection (reads EOF, or a reset), within the read timeout.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(error) => {
                !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            }
        }
    }
}
