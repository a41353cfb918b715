//! A debug trace of where a request's time goes: with `RAFTKV_LATENCY_TRACE=DIR` in its environment, a
//! node appends one line `<unix-ns> <stage>` to `DIR/trace-<pid>.txt` at each stage of the request path
//! (client bytes read, event taken by the node loop, message queued for a peer and written, fsync, reply
//! routed and written). The nodes of a local cluster share one clock, so the files of all of them can be
//! merged into one timeline (`bench/latency-breakdown` does that). Off (one relaxed load per stage) when the
//! variable is unset; never for production use: it takes a lock per stage.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the directory traces go to.
pub const ENV: &str = "RAFTKV_LATENCY_TRACE";

/// Lines buffered before they are written out (a stopped node loses at most this many).
const FLUSH_EVERY_LINES: usize = 256;

struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    lines: usize,
}

fn trace() -> Option<&'static Mutex<Trace>> {
    static TRACE: OnceLock<Option<Mutex<Trace>>> = OnceLock::new();
    TRACE
        .get_or_init(|| {
            let dir = std::env::var_os(ENV)?;
            let path = std::path::Path::new(&dir).join(format!("trace-{}.txt", std::process::id()));
            let file = std::fs::File::create(&path)
                .map_err(|error| tracing::warn!(path = %path.display(), %error, "no latency trace"))
                .ok()?;
            Some(Mutex::new(Trace { out: std::io::BufWriter::new(file), lines: 0 }))
        })
        .as_ref()
}

/// Records that a request reached `stage` now (when tracing is on).
pub fn mark(stage: &'static str) {
    let Some(trace) = trace() else { return };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut trace = trace.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = writeln!(trace.out, "{now} {stage}");
    trace.lines += 1;
    if trace.lines % FLUSH_EVERY_LINES == 0 {
        let _ = trace.out.flush();
    }
}
