//! Headless Chromium for browser tests, driven over the Chrome DevTools Protocol (CDP) with a plain
//! WebSocket: navigate, evaluate JavaScript, take screenshots. It uses the system's `chromium` (Debian's
//! package) and nothing that downloads a browser; without one, [`Browser::launch`] prints one line saying
//! which test it skipped and why, and the test passes.
//!
//! Every wait is bounded in time, and the browser (its whole process group) and its profile folder go
//! away on drop, also when the test fails.

#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long one CDP command may take to answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Chromium may take to start and open its debugging port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The flags that keep headless Chromium from stalling on a machine without network or display: no
/// background fetches, no component updates, no sync, a fresh profile. (`--no-sandbox`: tests run as root.)
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1100,720",
    "--remote-debugging-port=0",
];

pub struct Browser {
    child: Child,
    profile_dir: PathBuf,
    socket: WebSocket<TcpStream>,
    /// The CDP session attached to our page; commands without one go to the browser itself.
    session: Option<String>,
    next_id: u64,
    /// Uncaught JavaScript exceptions the page reported (`Runtime.exceptionThrown`), as text.
    pub exceptions: Vec<String>,
}

/// The browser to run: `$RAFTKV_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH; or why
/// there is none.
fn find_chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("RAFTKV_CHROMIUM") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("RAFTKV_CHROMIUM={} is not a file", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no `chromium` on the PATH (install Debian's `chromium` to run the browser tests)".to_string()
        })
}

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creating target/test-artifacts");
    dir
}

impl Browser {
    /// Starts headless Chromium with a fresh profile, or prints why `test` is skipped and returns `None`.
    pub fn launch(test: &str) -> Option<Browser> {
        let chromium = match find_chromium() {
            Ok(chromium) => chromium,
            Err(why) => {
                println!("skipped {test}: {why}");
                return None;
            }
        };
        let profile_dir = std::env::temp_dir().join(format!("raftkv-chromium-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile_dir);
        std::fs::create_dir_all(&profile_dir).unwrap();
        let log = std::fs::File::create(profile_dir.with_extension("log")).unwrap();
        let child = Command::new(&chromium)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg("about:blank")
            // Its own process group, so that drop can end the renderer and helper processes too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
        let mut browser = BrowserStart { child: Some(child), profile_dir: profile_dir.clone() };
        let (port, path) = browser.wait_for_debugging_port();
        let socket = connect_to_browser(port, &path);
        let mut browser = Browser {
            child: browser.child.take().unwrap(),
            profile_dir,
            socket,
            session: None,
            next_id: 0,
            exceptions: Vec::new(),
        };
        // A page of our own, and a session on it that every later command goes to.
        let target = browser.command("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser
            .command("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        browser.session = Some(attached["sessionId"].as_str().expect("a session id").to_string());
        browser.resize(1100, 720);
        browser.command("Runtime.enable", json!({}));
        browser.command("Page.enable", json!({}));
        Some(browser)
    }

    /// Sends one CDP command and returns its result; panics on a protocol error or after a bound.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            request["sessionId"] = json!(session);
        }
        let request = request.to_string();
        self.socket.send(Message::text(request)).unwrap_or_else(|e| panic!("sending {method}: {e}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} within {COMMAND_TIMEOUT:?}");
            let message = match self.socket.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("reading the answer to {method}: {e}"),
            };
            let Message::Text(text) = message else { continue };
            let value: Value = serde_json::from_str(text.as_str()).expect("CDP sends JSON");
            if value["method"] == "Runtime.exceptionThrown" {
                self.exceptions.push(value["params"]["exceptionDetails"].to_string());
            }
            if value["id"] == json!(id) {
                if let Some(error) = value.get("error") {
                    panic!("{method} failed: {error}");
                }
                return value["result"].clone();
            }
        }
    }

    /// Sets the page's viewport (what a screenshot shows) to `width` × `height` CSS pixels.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.command(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Opens `url` and waits until the document has loaded.
    pub fn navigate(&mut self, url: &str) {
        let result = self.command("Page.navigate", json!({ "url": url }));
        assert!(result.get("errorText").is_none(), "opening {url}: {result}");
        self.wait_for(
            Duration::from_secs(20),
            &format!("{url} to load"),
            "document.readyState === 'complete'",
        );
    }

    /// The value of the JavaScript expression `expression` (awaited if it is a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.command(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until it is truthy, and returns that value; after `bound`,
    /// panics naming `what` and the last value.
    pub fn wait_for(&mut self, bound: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "waited {bound:?} for {what}; last value {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the page as `target/test-artifacts/NAME.png` and returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let result = self.command("Page.captureScreenshot", json!({"format": "png"}));
        let data = result["data"].as_str().expect("screenshot data");
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64 PNG");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        stop(&mut self.child, &self.profile_dir);
    }
}

/// The browser until its page is connected: cleans up if starting fails half-way.
struct BrowserStart {
    child: Option<Child>,
    profile_dir: PathBuf,
}

impl BrowserStart {
    /// Chromium writes the port it chose into `DevToolsActivePort` in the profile folder.
    /// Returns the port and the browser's WebSocket path.
    fn wait_for_debugging_port(&mut self) -> (u16, String) {
        let file = self.profile_dir.join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The file is complete once it holds both lines: the port, then the WebSocket path.
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse), lines.next()) {
                return (port, path.to_string());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.profile_dir.with_extension("log")).unwrap_or_default();
                panic!("chromium exited ({status}) before opening its debugging port:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its debugging port within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BrowserStart {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            stop(child, &self.profile_dir);
        }
    }
}

/// The browser's own WebSocket, at the path Chromium wrote beside the port.
fn connect_to_browser(port: u16, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to chromium");
    // Reads time out now and then so that a silent browser cannot hang a test (see `command`'s bound).
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let url = format!("ws://127.0.0.1:{port}{path}");
    let (socket, _) = tungstenite::client(url.as_str(), stream).expect("the CDP WebSocket handshake");
    socket
}

/// Ends the browser's whole process group (our own child's) and removes its profile.
fn stop(child: &mut Child, profile_dir: &Path) {
    // SAFETY: kill(2) on the process group of a child this process started in its own group.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(profile_dir);
    let _ = std::fs::remove_file(profile_dir.with_extension("log"));
}
