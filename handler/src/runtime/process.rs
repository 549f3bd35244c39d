//! The child-process backend: where no Docker Engine answers, each "container" is a child
//! process of the handler running the worker binary.
//!
//! It keeps the trait's promises the way a container engine would: one process per name, the
//! exit code (a signal becomes 128 + its number), SIGKILL of the whole process group, stdout and
//! stderr captured to `<logs_dir>/<name>.log`, CPU and RSS from `/proc`, and a memory limit from a
//! cgroup v1 memory group per child where the handler may create one (nested under its own
//! group); where it may not, the limit is skipped, quietly (debug log).
//!
//! Unlike Docker, its containers cannot outlive the handler, so they are made to die with it:
//! - a *lifeline*: each child's stdin is a pipe whose only write end the handler holds; a tiny
//!   watcher in the child's process group blocks reading it and SIGKILLs the whole group when
//!   it reads end-of-file, which the kernel delivers when the handler exits for any reason
//!   (return, SIGTERM, SIGKILL, panic). No pre-exec hook, no unsafe code, and unlike
//!   `PR_SET_PDEATHSIG` it does not depend on which thread forked, and it reaches the work the
//!   worker started, not only the worker;
//! - a *sweep at start*: every child carries `EDA_PROCESS_OWNER=<its logs dir>` in its
//!   environment; a new runtime kills every process whose environment has its marker (left by
//!   a previous instance whose lifeline could not fire, or that left its process group) before
//!   anything runs, and waits until they are gone. The marker, not a pid, identifies them, so a
//!   reused pid is never killed.
//!
//! After a restart `list` is therefore empty *and true*: the reconciler's "disappeared without
//! reporting; retrying" is safe, no attempt runs twice, and the concurrency cap counts every
//! live worker.

use super::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase, RuntimeError};
use async_trait::async_trait;
use futures::stream::BoxStream;
use model::{Logs, MetricSample};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::broadcast;

mod os;
use os::*;
pub use os::{kill_leftovers, marked_processes};

/// Where the kernel mounts the cgroup v1 memory controller.
const MEMORY_CGROUP_MOUNT: &str = "/sys/fs/cgroup/memory";
/// Most processes of one container walked when sampling (bounds the `/proc` reads).
const MAX_TREE: usize = 64;
/// The shell that moves a child into its cgroup before it becomes the worker.
const SHELL: &str = "/bin/sh";
/// `sh -c` script every child runs first: `$0` is the cgroup's `cgroup.procs` (or `/dev/null`),
/// `$@` the worker and its arguments. It joins the cgroup (a failed write only loses the limit,
/// never the task), moves the lifeline (stdin) to fd 3, starts the watcher that kills the
/// process group (`kill -9 0`) once the lifeline reads end-of-file, and becomes the worker
/// (with stdin `/dev/null` and without fd 3), so the handler waits on the worker itself.
const SUPERVISED_EXEC: &str =
    r#"echo $$ > "$0" 2>/dev/null; exec 3<&0 </dev/null; (read _ <&3; kill -9 0) & exec "$@" 3<&-"#;
/// The environment variable that marks a child (and what it starts) as this runtime's.
pub const OWNER_ENV: &str = "EDA_PROCESS_OWNER";
/// How long the start-up sweep waits for the leftovers it killed to be gone.
const LEFTOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long `remove` waits for a killed child's cgroup to empty before leaving it behind.
const CGROUP_EMPTY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Poll interval of that wait.
const CGROUP_EMPTY_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// `PATH` for children when the handler has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// One child, as long as it is not removed.
#[derive(Debug)]
struct Child {
    /// Tells this child from a later one of the same name (remove, then create again), so the
    /// waiter of the old one does not write its exit into the new one.
    generation: u64,
    /// Its pid, which is also its process group id.
    pid: u32,
    /// Where its stdout and stderr go.
    log: PathBuf,
    /// Its memory cgroup, when limits apply.
    cgroup: Option<PathBuf>,
    /// When it was spawned: the base of its first CPU sample.
    started: Instant,
    /// Set once by its waiter when it exits.
    exit: Option<ContainerStatus>,
    /// CPU ticks and time of the previous sample.
    cpu_mark: Option<(u64, Instant)>,
}

/// The children by name, and the generation counter. Touched by the trait methods and by each
/// child's waiter task, always briefly and never across an await.
#[derive(Debug, Default)]
struct Children {
    by_name: HashMap<String, Child>,
    next_generation: u64,
}

/// The work's `TMPDIR`, under the logs dir: emptied when a runtime starts.
pub const WORK_TMP: &str = "work-tmp";

/// [`ContainerRuntime`] over plain child processes.
pub struct ProcessRuntime {
    /// The worker binary every child runs (the spec's image is not used).
    worker_bin: PathBuf,
    /// Where each child's `<name>.log` is written.
    logs_dir: PathBuf,
    /// The value of [`OWNER_ENV`] in every child: the logs dir, made absolute, so one data dir's
    /// runtime finds its own leftovers and never another's.
    owner: String,
    /// The memory cgroup under which each child gets its own group; `None`: no limits here.
    cgroup_parent: Option<PathBuf>,
    /// Shared with the waiter tasks.
    children: Arc<Mutex<Children>>,
    /// Names of children as they exit, for [`ContainerRuntime::exits`].
    exits: broadcast::Sender<String>,
}

/// How a child ended, as the trait reports it.
fn exit_status(status: std::io::Result<ExitStatus>, oom_killed: bool) -> ContainerStatus {
    let (exit_code, mut detail) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (i64::from(code), None),
            (None, Some(sig)) => (
                model::output::signal_exit_code(sig),
                Some(model::output::killed_by_signal(sig.into())),
            ),
            (None, None) => (-1, Some("ended without an exit status".to_string())),
        },
        Err(e) => (-1, Some(format!("cannot wait for it: {e}"))),
    };
    if oom_killed {
        detail = Some("out of memory (OOM killed)".into());
    }
    ContainerStatus {
        phase: Phase::Exited,
        exit_code: Some(exit_code),
        oom_killed,
        detail,
    }
}

impl ProcessRuntime {
    /// A runtime running `worker_bin` for each container, logging to `logs_dir` (created if
    /// missing). Kills what a previous runtime on the same `logs_dir` left running (see the
    /// module doc) and probes once whether memory cgroups can be created here.
    pub fn new(worker_bin: PathBuf, logs_dir: PathBuf) -> ProcessRuntime {
        if let Err(e) = std::fs::create_dir_all(&logs_dir) {
            tracing::warn!(dir = %logs_dir.display(), error = %e, "cannot create the logs dir");
        }
        let owner = std::fs::canonicalize(&logs_dir)
            .unwrap_or_else(|_| logs_dir.clone())
            .display()
            .to_string();
        let killed = kill_leftovers(&owner, LEFTOVER_WAIT);
        if killed > 0 {
            tracing::warn!(
                killed,
                owner,
                "killed worker processes a previous run of this data dir left behind"
            );
        }
        // A fresh temporary folder for the work (`TMPDIR`): what a killed worker left there (its
        // `RESULT_PATH` folder) goes with the data dir instead of piling up in the host's /tmp.
        let tmp = logs_dir.join(WORK_TMP);
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = std::fs::create_dir_all(&tmp) {
            tracing::warn!(dir = %tmp.display(), error = %e, "cannot create the work's TMPDIR");
        }
        let (exits, _) = broadcast::channel(1024);
        ProcessRuntime {
            worker_bin,
            logs_dir,
            owner,
            cgroup_parent: probe_cgroup_parent(),
            children: Arc::new(Mutex::new(Children::default())),
            exits,
        }
    }

    /// Whether memory limits are enforced (a cgroup v1 memory group could be created).
    pub fn enforces_memory_limit(&self) -> bool {
        self.cgroup_parent.is_some()
    }

    /// Creates the child's memory group with its limit; `None` (debug log) if that fails.
    fn limited_cgroup(&self, name: &str, memory_mb: u32) -> Option<PathBuf> {
        let parent = self.cgroup_parent.as_ref()?;
        let dir = parent.join(name);
        let bytes = (u64::from(memory_mb) * 1024 * 1024).to_string();
        let made = std::fs::create_dir(&dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| std::fs::write(dir.join("memory.limit_in_bytes"), &bytes));
        match made {
            Ok(()) => {
                // Also cap swap where the kernel accounts it, so the limit is hard.
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &bytes);
                Some(dir)
            }
            Err(e) => {
                tracing::debug!(cgroup = %dir.display(), error = %e, "no memory limit");
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Spawns the worker for `spec`; the caller holds the children lock.
    fn spawn(&self, spec: &ContainerSpec, generation: u64) -> Result<Child, RuntimeError> {
        let log = self.logs_dir.join(format!("{}.log", spec.name));
        let out = std::fs::File::create(&log)
            .map_err(|e| RuntimeError::io(format!("cannot create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| RuntimeError::io(format!("cannot share {}", log.display()), e))?;
        if !self.worker_bin.is_file() {
            let _ = std::fs::remove_file(&log);
            return Err(RuntimeError::image_missing(format!(
                "worker {} does not exist",
                self.worker_bin.display()
            )));
        }
        let cgroup = self.limited_cgroup(&spec.name, spec.resources.memory_mb);
        // The child joins its cgroup and starts its lifeline watcher itself, before exec'ing the
        // worker (no pre_exec hook: unsafe code is denied here).
        let procs = cgroup
            .as_ref()
            .map_or_else(|| PathBuf::from("/dev/null"), |d| d.join("cgroup.procs"));
        let mut cmd = tokio::process::Command::new(SHELL);
        cmd.args(["-c", SUPERVISED_EXEC])
            .arg(procs)
            .arg(&self.worker_bin);
        let path = crate::config::env("PATH").unwrap_or_else(|| DEFAULT_PATH.to_string());
        cmd.args(&spec.args)
            // Like a container: only what the spec gives (and PATH), none of the handler's secrets.
            .env_clear()
            .env("PATH", path)
            .env("TMPDIR", self.logs_dir.join(WORK_TMP))
            .env(OWNER_ENV, &self.owner)
            .envs(spec.env.iter().chain(&spec.secret_env).map(|(k, v)| (k, v)))
            // The lifeline: its write end stays with the waiter (close-on-exec, so no other
            // child inherits it) until the child exits or the handler does.
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            // Its own process group, so kill reaches the work it started too.
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_file(&log);
                if let Some(dir) = &cgroup {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(RuntimeError::io(
                    format!(
                        "cannot start {SHELL} for the worker {}",
                        self.worker_bin.display()
                    ),
                    e,
                ));
            }
        };
        let lifeline = child.stdin.take();
        let pid = child.id().unwrap_or(0);
        self.watch(
            spec.name.clone(),
            generation,
            child,
            cgroup.clone(),
            lifeline,
        );
        Ok(Child {
            generation,
            pid,
            log,
            cgroup,
            started: Instant::now(),
            exit: None,
            cpu_mark: None,
        })
    }

    /// A task that waits for the child, records how it ended, cleans up what it left (its
    /// process group, its cgroup) and announces its name on the exit stream.
    fn watch(
        &self,
        name: String,
        generation: u64,
        mut child: tokio::process::Child,
        cgroup: Option<PathBuf>,
        lifeline: Option<tokio::process::ChildStdin>,
    ) {
        let children = self.children.clone();
        let exits = self.exits.clone();
        let pid = child.id();
        tokio::spawn(async move {
            let status = child.wait().await;
            // Held until now: dropping it earlier would make the child kill itself.
            drop(lifeline);
            let oom = cgroup.as_deref().is_some_and(oom_killed);
            if let Some(pid) = pid {
                kill_group(pid);
            }
            if let Some(dir) = &cgroup {
                let _ = std::fs::remove_dir(dir);
            }
            {
                let mut all = children.lock().expect("children lock");
                match all.by_name.get_mut(&name) {
                    Some(c) if c.generation == generation => {
                        c.exit = Some(exit_status(status, oom))
                    }
                    _ => return,
                }
            }
            let _ = exits.send(name);
        });
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        let mut all = self.children.lock().expect("children lock");
        if all.by_name.contains_key(&spec.name) {
            return Ok(Created::AlreadyExisted);
        }
        all.next_generation += 1;
        let generation = all.next_generation;
        let child = self.spawn(spec, generation)?;
        all.by_name.insert(spec.name.clone(), child);
        Ok(Created::New)
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        let all = self.children.lock().expect("children lock");
        Ok(all.by_name.get(name).map(|c| {
            c.exit.clone().unwrap_or(ContainerStatus {
                phase: Phase::Running,
                exit_code: None,
                oom_killed: false,
                detail: None,
            })
        }))
    }

    async fn kill(&self, name: &str) -> Result<(), RuntimeError> {
        let all = self.children.lock().expect("children lock");
        if let Some(c) = all.by_name.get(name).filter(|c| c.exit.is_none()) {
            kill_group(c.pid);
        }
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let removed = self
            .children
            .lock()
            .expect("children lock")
            .by_name
            .remove(name);
        if let Some(c) = removed {
            if c.exit.is_none() {
                kill_group(c.pid);
            }
            if let Err(e) = std::fs::remove_file(&c.log) {
                tracing::debug!(log = %c.log.display(), error = %e, "cannot remove the log");
            }
            if let Some(dir) = c.cgroup {
                // Empty once its processes have died (reaped or not): poll briefly.
                let deadline = Instant::now() + CGROUP_EMPTY_WAIT;
                while std::fs::remove_dir(&dir).is_err()
                    && dir.exists()
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(CGROUP_EMPTY_POLL).await;
                }
            }
        }
        Ok(())
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        let log = {
            let all = self.children.lock().expect("children lock");
            all.by_name.get(name).map(|c| c.log.clone())
        };
        let log = log.ok_or_else(|| RuntimeError::NoSuchContainer(name.to_string()))?;
        read_tail(&log, max_bytes)
            .map_err(|e| RuntimeError::io(format!("cannot read {}", log.display()), e))
    }

    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError> {
        let (pid, generation) = {
            let all = self.children.lock().expect("children lock");
            match all.by_name.get(name).filter(|c| c.exit.is_none()) {
                Some(c) => (c.pid, c.generation),
                None => return Ok(None),
            }
        };
        // Read /proc without the lock: other containers' calls need not wait for it.
        let Some((ticks, rss)) = proc_tree_usage(pid) else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut all = self.children.lock().expect("children lock");
        let Some(child) = all
            .by_name
            .get_mut(name)
            .filter(|c| c.generation == generation)
        else {
            return Ok(None);
        };
        let (prev_ticks, prev_at) = child.cpu_mark.unwrap_or((0, child.started));
        child.cpu_mark = Some((ticks, now));
        let hz = rustix::param::clock_ticks_per_second() as f64;
        let wall = now.duration_since(prev_at).as_secs_f64();
        let cpu_percent = if wall > 0.0 {
            ticks.saturating_sub(prev_ticks) as f64 / hz / wall * 100.0
        } else {
            0.0
        };
        Ok(Some(MetricSample {
            at_ms: crate::clock::now_ms(),
            cpu_percent,
            memory_bytes: rss,
        }))
    }

    async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let all = self.children.lock().expect("children lock");
        Ok(all.by_name.keys().cloned().collect())
    }

    fn exits(&self) -> Option<BoxStream<'static, String>> {
        let rx = self.exits.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(name) => return Some((name, rx)),
                    // Missed some: the reconciler's sweep catches those; keep going.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Some(Box::pin(stream))
    }
}

impl Drop for ProcessRuntime {
    /// Kills the children still running, as a stopped container engine would not leave
    /// orphans behind.
    fn drop(&mut self) {
        let Ok(all) = self.children.lock() else {
            return;
        };
        let running: Vec<&Child> = all.by_name.values().filter(|c| c.exit.is_none()).collect();
        for c in &running {
            kill_group(c.pid);
        }
        // Their waiters may not run again (the async runtime may be going away too): remove
        // their cgroups here, once the killed processes are gone.
        let deadline = Instant::now() + CGROUP_EMPTY_WAIT;
        for dir in running.iter().filter_map(|c| c.cgroup.as_ref()) {
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(CGROUP_EMPTY_POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_name_with_spaces() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 \
                    123 4096 100 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(13));
    }

    #[test]
    fn rss_comes_from_vmrss() {
        let status = "Name:\tsh\nVmPeak:\t  9000 kB\nVmRSS:\t    1500 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss(status), Some(1500 * 1024));
        assert_eq!(parse_status_rss("Name:\tkthread\n"), None);
    }

    #[test]
    fn this_process_has_usage() {
        let (_, rss) = proc_tree_usage(std::process::id()).unwrap();
        assert!(rss > 0);
    }

    #[test]
    fn signals_become_128_plus() {
        let killed = exit_status(Ok(ExitStatus::from_raw(9)), false);
        assert_eq!(killed.exit_code, Some(137));
        assert_eq!(killed.detail.as_deref(), Some("killed by signal 9"));
        let three = exit_status(Ok(ExitStatus::from_raw(3 << 8)), false);
        assert_eq!((three.exit_code, three.detail), (Some(3), None));
        assert!(exit_status(Ok(ExitStatus::from_raw(9)), true).oom_killed);
    }

    #[test]
    fn tail_of_a_file() {
        let path = std::env::temp_dir().join(format!("eda-tail-{}", std::process::id()));
        std::fs::write(&path, "0123456789").unwrap();
        let logs = |text: &str, truncated| Logs {
            text: text.into(),
            truncated,
        };
        assert_eq!(read_tail(&path, 4).unwrap(), logs("6789", true));
        assert_eq!(read_tail(&path, 40).unwrap(), logs("0123456789", false));
        std::fs::remove_file(&path).unwrap();
    }
}
