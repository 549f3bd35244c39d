//! What the process runtime reads and does through the operating system: `/proc` (process
//! trees, CPU ticks, resident memory, the environment marker of leftovers), signals to process
//! groups, the cgroup v1 memory controller, and the tail of a log file. Kept apart from the
//! runtime's bookkeeping in [`super`].

use super::{CGROUP_EMPTY_POLL, MAX_TREE, MEMORY_CGROUP_MOUNT, OWNER_ENV, SHELL};
use model::output::Tail;
use model::Logs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The handler's own memory cgroup, if children can be created under it (a probe group is
/// made and removed).
pub(super) fn probe_cgroup_parent() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.trim_start_matches('/').to_string())
    })?;
    if !Path::new(SHELL).exists() {
        return None;
    }
    let parent = Path::new(MEMORY_CGROUP_MOUNT).join(rel);
    let probe = parent.join(format!("eda-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Some(parent)
        }
        Err(e) => {
            tracing::debug!(cgroup = %parent.display(), error = %e, "memory limits unavailable");
            None
        }
    }
}

/// Kills every process whose environment holds `OWNER_ENV=<owner>` (and its process group),
/// then waits up to `wait` until they are gone; returns how many it found. Our own process is
/// never a candidate: the handler's environment does not carry the marker.
pub fn kill_leftovers(owner: &str, wait: std::time::Duration) -> usize {
    let found = marked_processes(owner);
    let own_group = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
    for &(pid, pgid) in &found {
        // The group too: what the worker started and that cleared its environment dies with it.
        if pgid > 1 && pgid != own_group {
            kill_group(pgid);
        }
        kill_pid(pid);
    }
    let deadline = Instant::now() + wait;
    while found.iter().any(|&(pid, _)| alive(pid)) {
        if Instant::now() >= deadline {
            tracing::warn!(owner, "leftover worker processes did not die in time");
            break;
        }
        std::thread::sleep(CGROUP_EMPTY_POLL);
    }
    found.len()
}

/// `(pid, process group)` of every live process whose environment has `OWNER_ENV=<owner>`.
/// Processes we may not read (another user's) cannot be ours and are skipped.
pub fn marked_processes(owner: &str) -> Vec<(u32, u32)> {
    let marker = format!("{OWNER_ENV}={owner}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        })
        .filter_map(|pid| Some((pid, stat_pgrp(pid)?)))
        .filter(|&(pid, _)| alive(pid))
        .collect()
}

/// Whether `pid` exists and is not a zombie (a zombie has run its last instruction).
pub(super) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
pub(super) fn stat_pgrp(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// SIGKILL to one process; "no such process" is fine.
pub(super) fn kill_pid(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Whether the kernel's OOM killer killed something in the cgroup `dir`.
pub(super) fn oom_killed(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("memory.oom_control")).is_ok_and(|s| {
        s.lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    })
}

/// SIGKILL to the whole process group `pgid`; "no such process" is fine.
pub(super) fn kill_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// CPU ticks (user + system, including reaped children) and resident bytes of `pid` and its
/// descendants, from `/proc`. `None` when `pid` is gone.
pub(super) fn proc_tree_usage(pid: u32) -> Option<(u64, u64)> {
    let (mut ticks, mut rss) = (0u64, 0u64);
    let mut todo = vec![pid];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        seen += 1;
        if seen > MAX_TREE {
            break;
        }
        let Some(t) = stat_ticks(p) else {
            if p == pid {
                return None;
            }
            continue;
        };
        ticks += t;
        rss += status_rss(p).unwrap_or(0);
        todo.extend(children_of(p));
    }
    Some((ticks, rss))
}

/// utime + stime + cutime + cstime of one process.
pub(super) fn stat_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// The CPU fields of a `/proc/<pid>/stat` line (the name in parentheses may hold spaces).
pub(super) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state): utime is field 14, cstime field 17.
    (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// VmRSS of one process, in bytes.
pub(super) fn status_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss(&status)
}

pub(super) fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Direct children of `pid`, over all its threads.
pub(super) fn children_of(pid: u32) -> Vec<u32> {
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

/// The last `max_bytes` of the file at `path` as logs, `truncated` when earlier bytes were cut.
pub(super) fn read_tail(path: &Path, max_bytes: usize) -> std::io::Result<Logs> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max_bytes as u64);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(max_bytes as u64).read_to_end(&mut buf)?;
    let mut tail = Tail::new(max_bytes);
    if start > 0 {
        tail.mark_cut();
    }
    tail.push(&buf);
    Ok(tail.into_logs())
}
