//! The handler under test, run as a child process exactly as a user runs it.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `handler local` child; killed (with the worker processes it started) on drop.
pub struct Handler {
    /// The child.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawn until `GET /api/health` answered 200.
    pub start_to_listening: Duration,
    /// Its data dir, removed on drop unless `keep`.
    data_dir: PathBuf,
    /// Stop it with SIGTERM first on drop (a warm pool is removed only by a graceful stop).
    graceful: bool,
}

/// A free loopback port (bound and released; the handler binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh, empty temporary directory for one handler's data.
pub fn temp_dir(tag: &str) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("eda-bench-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Handler {
    /// Starts `handler local` on a free port with `flags` (plus `env`), and waits (polling
    /// `GET /api/health` every 200 µs, 10 s at most) until it answers.
    pub fn start(
        bin: &Path,
        tag: &str,
        flags: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Handler> {
        let data_dir = temp_dir(tag)?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = std::fs::File::create(data_dir.with_extension("log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("local")
            .arg("--bind")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut h = Handler {
            child,
            addr,
            start_to_listening: Duration::ZERO,
            data_dir,
            graceful: flags.iter().any(|f| f == "--warm"),
        };
        h.start_to_listening = h.wait_listening(started)?;
        Ok(h)
    }

    fn wait_listening(&mut self, started: Instant) -> anyhow::Result<Duration> {
        while started.elapsed() < Duration::from_secs(10) {
            if health_ok(self.addr) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.data_dir.with_extension("log"))
                    .unwrap_or_default();
                bail!("the handler exited with {status} before listening:\n{log}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        bail!("the handler did not listen on {} within 10 s", self.addr)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log (stderr), next to its data dir.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// SIGTERM, then waits for the exit (at most `limit`): local mode's graceful stop, which
    /// removes its warm containers.
    fn stop_gracefully(&mut self, limit: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, in bytes (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }
}

/// Whether `GET /api/health` answers 200. A TCP connect alone is not enough: local mode binds its
/// listener before it opens the store and runtime, and the kernel accepts connections from then.
fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /api/health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// `VmRSS` of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS line")?
        .parse::<u64>()?;
    Ok(kb * 1024)
}

/// Direct children of `pid` (the process runtime's workers), from `/proc/<pid>/task/*/children`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

impl Drop for Handler {
    fn drop(&mut self) {
        if self.graceful {
            self.stop_gracefully(Duration::from_secs(20));
        }
        // The process runtime puts each worker in its own process group: kill those groups
        // first, or a sleeping worker would outlive the benchmark.
        for child in children_of(self.pid()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{child}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
    }
}

/// MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
