//! Helpers of the fault tests (`tests/tests/faults.rs`, `tests/tests/fault_docker_restart.rs`):
//! the handler as a real child process that can be killed with SIGKILL and restarted on the same
//! data dir and port, a recorder of Docker's container `create` events (to prove one container
//! per task attempt), and resident memory of a process.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The debug `handler` binary, which `cargo xtask test` builds before the tests (`cargo build -p
/// handler` by hand). A test inside `cargo test` cannot build it (cargo holds the target dir's
/// lock), so a missing binary fails with the command that makes it.
pub fn handler_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = handler::config::env("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("handler");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p handler` first (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// `handler local` as a child process on a fixed port and data dir, so it can be killed with
/// SIGKILL and started again exactly where it was. Killed on drop.
pub struct HandlerProcess {
    /// The running child.
    child: Child,
    /// Where it listens (the same across restarts).
    pub addr: SocketAddr,
    /// Its data dir (the same across restarts).
    pub data_dir: PathBuf,
    /// Its flags after `--bind` and `--data-dir`, reused by [`HandlerProcess::restart`].
    flags: Vec<String>,
}

impl HandlerProcess {
    /// Starts the handler on `port` with `data_dir` and `flags`, and waits until
    /// `GET /api/health` answers (60 s at most: building the worker image may take a moment).
    pub fn start(data_dir: &Path, port: u16, flags: &[String]) -> HandlerProcess {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = spawn(addr, data_dir, flags);
        let mut h = HandlerProcess {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            flags: flags.to_vec(),
        };
        h.wait_healthy();
        h
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap it: no shutdown code runs, as after a crash or an OOM kill.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the handler");
        self.child.wait().expect("reap the handler");
    }

    /// SIGTERM (what `kill <pid>`, systemd and `docker stop` send), then waits up to 30 s for it
    /// to exit and returns how it exited.
    pub fn term(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the handler") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Live processes (pid, process group) that the handler's process runtime started for this
    /// data dir, found by the marker in their environment (`runtime::process::OWNER_ENV`), so
    /// what a worker started counts too.
    pub fn worker_processes(&self) -> Vec<(u32, u32)> {
        let logs = std::fs::canonicalize(self.data_dir.join("logs"))
            .unwrap_or_else(|_| self.data_dir.join("logs"));
        handler::runtime::process::marked_processes(&logs.display().to_string())
    }

    /// Starts it again with the same port, data dir and flags.
    pub fn restart(&mut self) {
        self.child = spawn(self.addr, &self.data_dir, &self.flags);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the handler exited with {status} before it answered; see its log {}",
                    log_path(&self.data_dir).display()
                );
            }
            if health_ok(self.addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the handler did not answer on {} within 60 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the child's stderr goes: next to its data dir, appended across restarts.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("log")
}

fn spawn(addr: SocketAddr, data_dir: &Path, flags: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(data_dir))
        .unwrap();
    Command::new(handler_bin())
        .arg("local")
        .arg("--bind")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(flags)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the handler binary")
}

/// One blocking `GET /api/health` with a short timeout.
fn health_ok(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /api/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// Records the name of every container Docker creates with the `eda.managed` label, from
/// `docker events` started before the work (Docker's own log of creations, independent of the
/// handler's bookkeeping). Stops on drop.
pub struct CreateEvents {
    /// The `docker events` child.
    child: Child,
    /// Names seen so far, in order.
    names: Arc<Mutex<Vec<String>>>,
}

impl CreateEvents {
    /// Starts recording (replaying from one second ago, so nothing between this call and the
    /// stream being open is missed).
    pub fn start() -> CreateEvents {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1;
        let mut child = Command::new("docker")
            .args([
                "events",
                "--since",
                &since.to_string(),
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--filter",
                "label=eda.managed",
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run docker events");
        let out = child.stdout.take().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let sink = names.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        CreateEvents { child, names }
    }

    /// Names created so far whose name starts with `eda-<id>-` for one of `ids`.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for CreateEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Local-mode flags for Docker with `image`, fast sweeps and retries, and
/// the shell worker (each task's message is a shell command). No `--worker-bin`: `start_local`
/// adds it; a child process needs `--worker-bin` added.
pub fn docker_flags(image: &str) -> Vec<String> {
    let mut f: Vec<String> = [
        "--runtime",
        "docker",
        "--image",
        image,
        "--sweep-ms",
        "200",
        "--retry-backoff-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.extend(
        crate::shell_worker_args()
            .iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    f
}

/// A private Docker daemon (its own socket, data root, exec root and containerd), so a test can
/// stop and start "the Docker daemon" without disturbing anything else on the machine that uses
/// the shared one. Stopped and removed on drop.
///
/// It shares the host's network namespace (the handler under test must reach its task network's
/// gateway, and its containers the handler), so it must keep off the main daemon's interfaces:
/// with `--bridge=none` dockerd deletes any `docker0` it finds at start (the main daemon's!),
/// so it gets a default bridge of its own ([`PrivateDockerd::bridge`], made here, deleted on
/// drop), no iptables rules, and its own networks are removed before it stops.
pub struct PrivateDockerd {
    /// The running `dockerd`, if started.
    child: Option<Child>,
    /// Folder holding the socket, data root and exec root.
    pub dir: PathBuf,
    /// Name of its default bridge (15 characters at most, as Linux wants).
    pub bridge: String,
}

impl PrivateDockerd {
    /// Whether this machine can run one (root, and `dockerd` on the PATH).
    pub fn possible() -> bool {
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        let dockerd = Command::new("dockerd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        root && dockerd
    }

    /// Starts a daemon under a fresh short folder in /tmp (socket paths must stay short).
    pub fn start() -> PrivateDockerd {
        let dir = PathBuf::from(format!("/tmp/edafd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bridge = format!("edafd{}", std::process::id() % 10_000_000);
        let made = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            made,
            "cannot create the private daemon's bridge {bridge} (ip link add)"
        );
        let mut d = PrivateDockerd {
            child: None,
            dir,
            bridge,
        };
        d.resume();
        d
    }

    /// `unix://<dir>/docker.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// Starts the daemon (again) and waits until `docker info` answers on its socket.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .unwrap();
        let d = &self.dir;
        let child = Command::new("dockerd")
            .arg(format!("--host={}", self.host()))
            .arg(format!("--data-root={}/root", d.display()))
            .arg(format!("--exec-root={}/exec", d.display()))
            .arg(format!("--pidfile={}/docker.pid", d.display()))
            // Its own bridge, never `none` (which deletes the host daemon's docker0).
            .arg(format!("--bridge={}", self.bridge))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not answer within 60 s; see {}/dockerd.log",
                d.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon (SIGTERM, as `service docker stop` does) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Whether `docker info` answers on its socket.
    pub fn answers(&self) -> bool {
        Command::new("docker")
            .args(["-H", &self.host(), "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host(), "rm", "-f"])
            .args(
                String::from_utf8_lossy(
                    &Command::new("docker")
                        .args(["-H", &self.host(), "ps", "-aq"])
                        .output()
                        .map(|o| o.stdout)
                        .unwrap_or_default(),
                )
                .split_whitespace(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Its networks' bridges live in the host's namespace and outlive the daemon.
        let _ = Command::new("docker")
            .args(["-H", &self.host(), "network", "prune", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.stop();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // dockerd leaves its network namespace mounted under the exec root: unmount what is
        // left under the folder before removing it.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            if Path::new(point).starts_with(&self.dir) {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
