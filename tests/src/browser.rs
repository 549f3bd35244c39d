//! Driving a real headless Chromium through WebDriver (chromedriver + fantoccini).
//!
//! [`Browser::start`] runs chromedriver on a free port as a child process and opens one session
//! with a fresh profile; dropping the [`Browser`] kills chromedriver's process group (and with it
//! Chromium), also after a test panicked.
//! WebDriver is spoken over plain HTTP to 127.0.0.1, so no TLS stack is linked.

use crate::TempDir;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// True when both Chromium and chromedriver are installed.
pub fn chromium_available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// The built dashboard (`cargo xtask dashboard`, which `cargo xtask test` runs first).
pub fn dashboard_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    assert!(
        dir.join("index.html").exists(),
        "the dashboard is not built: run `cargo xtask dashboard` (or `cargo xtask test`)"
    );
    dir
}

/// JS + WASM of the built dashboard: `(raw bytes, gzip bytes)`.
pub fn bundle_size() -> (usize, usize) {
    let mut raw = 0;
    let mut gz = 0;
    for entry in std::fs::read_dir(dashboard_dir()).unwrap() {
        let path = entry.unwrap().path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if ext == "js" || ext == "wasm" {
            let bytes = std::fs::read(&path).unwrap();
            raw += bytes.len();
            gz += gzip_len(&bytes);
        }
    }
    (raw, gz)
}

fn gzip_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap().len()
}

/// One headless Chromium session.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    /// chromedriver, killed on drop.
    driver: Child,
    /// The fresh profile (`--user-data-dir`), removed on drop.
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = crate::free_port();
        // Its own process group, so dropping the Browser kills Chromium with it even when a
        // test panicked before closing the session.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::eventually(Duration::from_secs(20), "chromedriver to answer", || {
            let req = http.get(format!("{url}/status")).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        let profile = TempDir::new("chrome");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.0.display()),
            &format!("--window-size={width},{height}"),
        ];
        let caps = json!({ "goog:chromeOptions": { "binary": CHROMIUM, "args": args } });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or ""), which it
    /// returns; `None` after `limit`.
    pub async fn poll(&self, limit: Duration, script: &str) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.js(script, vec![]).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Like [`Browser::poll`], but panics with `what` and the page's text after `limit`.
    pub async fn until(&self, limit: Duration, what: &str, script: &str) -> Value {
        match self.poll(limit, script).await {
            Some(v) => v,
            None => {
                let page = self.js("return document.body.innerText", vec![]).await;
                panic!("timed out after {limit:?} waiting for {what}; page text:\n{page}");
            }
        }
    }

    /// Saves a PNG screenshot of the page to `path` (creating its folder).
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Resident memory (KiB) of the largest Chromium renderer process started by this
    /// session's chromedriver: the tab's memory as the OS sees it (JS heap, WASM memory, DOM,
    /// layers). Found by walking `/proc` from chromedriver's pid through parent links.
    pub fn renderer_rss_kib(&self) -> u64 {
        let procs: Vec<(u32, u32, String, u64)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let status = std::fs::read_to_string(e.path().join("status")).ok()?;
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                };
                let cmd = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
                Some((
                    pid,
                    field("PPid:")? as u32,
                    cmd,
                    field("VmRSS:").unwrap_or(0),
                ))
            })
            .collect();
        let mut ours = vec![self.driver.id()];
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, ppid, ..) in &procs {
                if ours.contains(ppid) && !ours.contains(pid) {
                    ours.push(*pid);
                    grew = true;
                }
            }
        }
        procs
            .iter()
            .filter(|(pid, _, cmd, _)| ours.contains(pid) && cmd.contains("--type=renderer"))
            .map(|p| p.3)
            .max()
            .unwrap_or(0)
    }

    /// Ends the session cleanly (Chromium exits), then chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
