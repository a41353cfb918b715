//! `raftkv trace FILE.jsonl`: turn a simulator trace into one self-contained HTML page that replays the
//! run (nodes, messages in flight, logs by term, faults, a timeline), and write it or serve it.
//!
//! The page is `web/trace.html` with its CSS and JavaScript inlined and the trace embedded as JSON, so it
//! opens from a file with no server and fetches nothing. A browser copes with a few hundred thousand
//! events; a longer trace is thinned (client operations and applies go first, since the picture does not
//! need them), then cut, and the page and stderr both say what was left out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

const PAGE: &str = include_str!("../../../web/trace.html");
const COMMON_CSS: &str = include_str!("../../../web/common.css");
const TRACE_CSS: &str = include_str!("../../../web/trace.css");
const TRACE_JS: &str = include_str!("../../../web/trace.js");

/// Event kinds the viewer can do without, dropped first when a trace is over the limit.
const THINNED_FIRST: &[&str] = &["invoke", "complete", "apply"];

/// Flags of `raftkv trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The trace: JSON lines written by `raftkv sim --seed N --trace FILE`.
    file: PathBuf,
    /// Write the page here (default: FILE with the extension `.html`).
    #[arg(long, conflicts_with = "listen")]
    out: Option<PathBuf>,
    /// Serve the page over HTTP at this address (e.g. 127.0.0.1:8080) until interrupted, instead of
    /// writing it.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Keep at most this many events in the page.
    #[arg(long, default_value_t = 300_000)]
    max_events: usize,
}

pub fn run(args: TraceArgs) -> ExitCode {
    let file = match std::fs::File::open(&args.file) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("raftkv trace: cannot open {}: {error}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let events = match read_events(BufReader::new(file)) {
        Ok(events) => events,
        Err(error) => {
            eprintln!("raftkv trace: {}: {error}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let (kept, note) = thin(events, args.max_events);
    if let Some(note) = &note {
        eprintln!("raftkv trace: {note}");
    }
    let page = render(&display_name(&args.file), &kept, note.as_deref());
    match args.listen {
        Some(addr) => serve(addr, &page),
        None => {
            let out = args.out.unwrap_or_else(|| args.file.with_extension("html"));
            match std::fs::write(&out, page) {
                Ok(()) => {
                    println!("wrote the trace viewer ({} events) to {}", kept.len(), out.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("raftkv trace: cannot write {}: {error}", out.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// One event: its kind, and its line exactly as the trace has it (already JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    kind: String,
    line: String,
}

/// Reads the JSON lines, checking that each is an object with a `kind`; blank lines are skipped.
pub fn read_events(reader: impl BufRead) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("reading line {}: {e}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| {
            format!("line {} is not JSON ({e}); is this a `raftkv sim --trace` file?", number + 1)
        })?;
        let kind = value["kind"].as_str().ok_or_else(|| {
            format!("line {} has no \"kind\"; is this a `raftkv sim --trace` file?", number + 1)
        })?;
        events.push(Event { kind: kind.to_string(), line });
    }
    Ok(events)
}

/// At most `max_events` events, and a note saying what was left out if anything was: first the kinds in
/// [`THINNED_FIRST`], then everything after the limit.
pub fn thin(events: Vec<Event>, max_events: usize) -> (Vec<Event>, Option<String>) {
    let total = events.len();
    if total <= max_events {
        return (events, None);
    }
    let mut kept: Vec<Event> =
        events.into_iter().filter(|e| !THINNED_FIRST.contains(&e.kind.as_str())).collect();
    let mut note = format!(
        "the trace has {total} events, more than the {max_events} this page keeps: left out client operations \
         and applies ({} events)",
        total - kept.len()
    );
    if kept.len() > max_events {
        let cut = kept.len() - max_events;
        kept.truncate(max_events);
        note.push_str(&format!(", and the last {cut} of the rest: the replay stops early"));
    }
    note.push_str(". Record a shorter run (`raftkv sim --ticks`) or raise --max-events to see everything.");
    (kept, Some(note))
}

/// The page: the template with its CSS, JavaScript and the trace filled in.
pub fn render(source: &str, events: &[Event], note: Option<&str>) -> String {
    let mut json = String::with_capacity(events.iter().map(|e| e.line.len() + 2).sum::<usize>() + 256);
    json.push_str(&format!(
        "{{\"source\":{},\"note\":{},\"events\":[\n",
        Value::from(source),
        note.map_or(Value::Null, Value::from)
    ));
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            json.push_str(",\n");
        }
        json.push_str(&event.line);
    }
    json.push_str("\n]}");
    // Inside <script>, "</script>" or "<!--" in the data would end or confuse the element. JSON allows
    // '<' only inside strings, where the escape \u003c means the same character.
    let json = json.replace('<', "\\u003c");
    // Fill the data last: the trace's own text must never be searched for placeholders.
    PAGE.replacen("/*COMMON_CSS*/", COMMON_CSS, 1)
        .replacen("/*TRACE_CSS*/", TRACE_CSS, 1)
        .replacen("/*TRACE_JS*/", TRACE_JS, 1)
        .replacen("/*TRACE_DATA*/", &json, 1)
}

/// Serves `page` at `/` until the process is stopped: one connection at a time, which is plenty for
/// the person looking at it.
fn serve(addr: SocketAddr, page: &str) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("raftkv trace: cannot listen on {addr}: {error}");
            return ExitCode::from(2);
        }
    };
    let local = listener.local_addr().map_or(addr.to_string(), |a| a.to_string());
    println!("serving the trace viewer at http://{local}/ (Ctrl-C to stop)");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        if let Err(error) = answer(stream, page) {
            tracing::debug!(%error, "a trace viewer request failed");
        }
    }
    ExitCode::SUCCESS
}

/// Reads one request's head (bounded in size and time) and answers it.
fn answer(mut stream: TcpStream, page: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/" | "/index.html") => ("200 OK", "text/html; charset=utf-8", page),
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "the trace viewer is at /\n"),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n"),
    };
    let header = format!(
        "HTTP/1.0 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(kinds: &[&str]) -> Vec<Event> {
        kinds
            .iter()
            .enumerate()
            .map(|(t, kind)| Event {
                kind: kind.to_string(),
                line: format!("{{\"t\":{t},\"kind\":\"{kind}\"}}"),
            })
            .collect()
    }

    #[test]
    fn lines_that_are_not_trace_events_are_refused_with_their_number() {
        let error = read_events("{\"t\":0,\"kind\":\"run\"}\n\nnot json\n".as_bytes()).unwrap_err();
        assert!(error.starts_with("line 3 is not JSON"), "{error}");
        let error = read_events("{\"t\":0}\n".as_bytes()).unwrap_err();
        assert!(error.starts_with("line 1 has no \"kind\""), "{error}");
        assert_eq!(read_events("{\"t\":0,\"kind\":\"run\"}\n\n".as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn a_short_trace_is_kept_whole_and_a_long_one_thinned_with_a_note() {
        let whole = events(&["run", "role", "apply"]);
        assert_eq!(thin(whole.clone(), 3), (whole, None));

        let (kept, note) = thin(events(&["run", "invoke", "role", "apply", "complete", "commit"]), 4);
        assert_eq!(kept.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["run", "role", "commit"]);
        let note = note.unwrap();
        assert!(
            note.contains("6 events") && note.contains("(3 events)") && !note.contains("stops early"),
            "{note}"
        );

        let (kept, note) = thin(events(&["run", "role", "send", "deliver", "commit"]), 2);
        assert_eq!(kept.len(), 2);
        assert!(note.unwrap().contains("the last 3 of the rest: the replay stops early"));
    }

    #[test]
    fn the_page_is_self_contained_and_the_data_cannot_end_its_script() {
        let hostile = Event {
            kind: "fault".into(),
            line: r#"{"t":1,"kind":"fault","fault":"</script><script>alert(1)</script><!--"}"#.into(),
        };
        let page = render("t.jsonl", &[hostile], Some("a note"));
        assert!(!page.contains("/*TRACE_"), "every placeholder is filled");
        assert!(!page.contains("<script src") && !page.contains("<link"), "nothing is loaded from elsewhere");
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own two scripts end");
        let start = page.find("type=\"application/json\">").unwrap() + "type=\"application/json\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["events"][0]["fault"], "</script><script>alert(1)</script><!--");
        assert_eq!(data["note"], "a note");
    }
}
