//! The work itself: the built-in demo, or the user's command given after `--`.
//!
//! The user's command writes through pipes that the worker relays to its own stdout and
//! stderr, so the worker knows when the work first wrote (the phase clock's "first output").

use crate::callback::now_ms;
use crate::result::{ResultFile, RESULT_PATH};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the relays may go on after the command exited (a background child of the command
/// may hold its pipes open; its later output is not waited for).
const DRAIN: Duration = Duration::from_secs(2);

/// How the work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code the worker passes on: the command's, 128 + signal when a signal ended it,
    /// 127 when it could not be started.
    pub exit_code: i32,
    /// A short reason when the work failed.
    pub reason: Option<String>,
    /// When the work first wrote output (ms since the epoch), if it wrote any.
    pub first_output_at_ms: Option<i64>,
    /// When the work's process exited (ms since the epoch), if it ran.
    pub exited_at_ms: Option<i64>,
    /// What the work wrote to `RESULT_PATH`, if it wrote the file.
    pub result: Option<model::TaskResult>,
}

/// The first time any relay saw output; shared by the stdout and stderr relays.
#[derive(Clone, Default)]
struct FirstOutput(Arc<OnceLock<i64>>);

impl FirstOutput {
    fn stamp(&self) {
        self.0.get_or_init(now_ms);
    }

    fn at(&self) -> Option<i64> {
        self.0.get().copied()
    }
}

/// Copies `from` to `to` until end of file, stamping `first` at the first byte; says `done`.
fn relay(mut from: impl Read, mut to: impl Write, first: FirstOutput, done: mpsc::Sender<()>) {
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        first.stamp();
        let _ = to.write_all(&buf[..n]);
        let _ = to.flush();
    }
    let _ = done.send(());
}

/// The seed's demo: hashes the message over and over for `duration`, printing progress about
/// once a second and the final digest, so a tile has CPU use and output to show.
pub fn demo(message: &str, duration: Duration) -> Finished {
    let start = Instant::now();
    let mut digest: [u8; 32] = Sha256::digest(message.as_bytes()).into();
    let mut rounds: u64 = 1;
    let mut next_report = Duration::from_secs(1);
    let mut out = std::io::stdout().lock();
    let first_output = now_ms();
    let _ = writeln!(out, "working on {} bytes for {duration:?}", message.len());
    while start.elapsed() < duration {
        for _ in 0..10_000 {
            digest = Sha256::digest(digest).into();
        }
        rounds += 10_000;
        if start.elapsed() >= next_report {
            let _ = writeln!(out, "progress: {}s, {rounds} rounds", next_report.as_secs());
            let _ = out.flush();
            next_report += Duration::from_secs(1);
        }
    }
    let _ = writeln!(out, "done: {rounds} rounds, sha256 {}", hex(&digest));
    let _ = out.flush();
    Finished {
        exit_code: 0,
        reason: None,
        first_output_at_ms: Some(first_output),
        exited_at_ms: Some(now_ms()),
        result: None,
    }
}

/// Runs `command` with the worker's environment minus `TASK_TOKEN` and `POOL_TOKEN` (the
/// message is already in `MESSAGE`), plus `assigned` (a warm container's task environment) and
/// `RESULT_PATH` (a fresh file name, when `result` could be made), relaying its stdout and
/// stderr to the worker's own; then reads what it wrote there.
pub fn run(
    command: &[String],
    assigned: &[(String, String)],
    result: Option<&ResultFile>,
) -> Finished {
    let mut finished = run_command(command, assigned, result);
    finished.result = result.and_then(ResultFile::read);
    finished
}

fn run_command(
    command: &[String],
    assigned: &[(String, String)],
    result: Option<&ResultFile>,
) -> Finished {
    let Some((program, args)) = command.split_first() else {
        return failed(2, "empty command".into());
    };
    let ooms = oom_kills();
    let first = FirstOutput::default();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("TASK_TOKEN")
        .env_remove("POOL_TOKEN")
        .env_remove(RESULT_PATH)
        .envs(assigned.iter().map(|(k, v)| (k, v)));
    if let Some(r) = result {
        cmd.env(RESULT_PATH, r.path());
    }
    let status = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|child| wait_relaying(child, &first));
    let exited_at_ms = status.as_ref().ok().map(|_| now_ms());
    let mut finished = match status {
        Err(e) => failed(127, format!("cannot start `{program}`: {e}")),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(0), _) => Finished {
                exit_code: 0,
                reason: None,
                first_output_at_ms: None,
                exited_at_ms: None,
                result: None,
            },
            (Some(code), _) => failed(code, format!("exit code {code}")),
            (None, Some(sig)) => failed(128 + sig, model::output::killed_by_signal(sig.into())),
            (None, None) => failed(1, "ended without an exit code".into()),
        },
    };
    finished.first_output_at_ms = first.at();
    finished.exited_at_ms = exited_at_ms;
    // A SIGKILL (directly, or a shell reporting its child's as 137) while the container's
    // memory cgroup counted a new OOM kill: say so, it is what the user needs to know.
    if finished.exit_code == 137 && oom_kills() > ooms {
        finished.reason = Some(
            "killed by the kernel's OOM killer (the container's memory limit), exit code 137"
                .into(),
        );
    }
    finished
}

/// Waits for `child` while its output is relayed, then lets the relays finish (up to [`DRAIN`]).
fn wait_relaying(
    mut child: std::process::Child,
    first: &FirstOutput,
) -> std::io::Result<std::process::ExitStatus> {
    let (done, finished) = mpsc::channel();
    let mut relays = 0;
    if let Some(out) = child.stdout.take() {
        let (first, done) = (first.clone(), done.clone());
        std::thread::spawn(move || relay(out, std::io::stdout(), first, done));
        relays += 1;
    }
    if let Some(err) = child.stderr.take() {
        let first = first.clone();
        std::thread::spawn(move || relay(err, std::io::stderr(), first, done));
        relays += 1;
    }
    let status = child.wait()?;
    let deadline = Instant::now() + DRAIN;
    for _ in 0..relays {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            break;
        }
    }
    Ok(status)
}

/// OOM kills counted by this process's memory cgroup (v1 `memory.oom_control` or v2
/// `memory.events`), or 0 where neither can be read. Inside a container the cgroup is mounted
/// at the root of /sys/fs/cgroup; a child process of the process runtime finds it by its path.
fn oom_kills() -> u64 {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = |controller: &str| {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, p) = (parts.next()?, parts.next()?, parts.next()?);
            ctl.split(',')
                .any(|c| c == controller)
                .then(|| p.to_string())
        })
    };
    let v1 = path("memory").unwrap_or_default();
    let v2 = path("").unwrap_or_default();
    let candidates = [
        format!("/sys/fs/cgroup/memory{v1}/memory.oom_control"),
        "/sys/fs/cgroup/memory/memory.oom_control".to_string(),
        format!("/sys/fs/cgroup{v2}/memory.events"),
        "/sys/fs/cgroup/memory.events".to_string(),
    ];
    candidates
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn failed(exit_code: i32, reason: String) -> Finished {
    Finished {
        exit_code,
        reason: Some(reason),
        first_output_at_ms: None,
        exited_at_ms: None,
        result: None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_seconds_of_demo_still_prints_a_digest() {
        assert_eq!(demo("hi", Duration::ZERO).exit_code, 0);
    }

    #[test]
    fn exit_codes_and_signals_pass_through() {
        let sh = |s: &str| run(&["sh".into(), "-c".into(), s.into()], &[], None);
        assert_eq!(sh("exit 0").exit_code, 0);
        let three = sh("exit 3");
        assert_eq!(three.exit_code, 3);
        assert_eq!(three.reason.as_deref(), Some("exit code 3"));
        let killed = sh("kill -9 $$");
        assert_eq!(killed.exit_code, 137);
        assert_eq!(killed.reason.as_deref(), Some("killed by signal 9"));
    }

    #[test]
    fn first_output_and_exit_are_timed() {
        let sh = |s: &str| run(&["sh".into(), "-c".into(), s.into()], &[], None);
        let before = now_ms();
        let quiet = sh("exit 0");
        assert_eq!(quiet.first_output_at_ms, None, "nothing was written");
        assert!(quiet.exited_at_ms.is_some_and(|t| t >= before));
        let late = sh("sleep 0.3; echo hi >&2");
        let (first, exit) = (late.first_output_at_ms.unwrap(), late.exited_at_ms.unwrap());
        assert!(
            first >= before + 250,
            "output came after the sleep: {first} vs {before}"
        );
        assert!(exit >= first, "exit {exit} after output {first}");
        assert_eq!(
            run(&["/no/such/program".into()], &[], None).exited_at_ms,
            None
        );
    }

    #[test]
    fn the_work_writes_its_result_to_result_path() {
        let file = ResultFile::create(Some("t-work")).unwrap();
        let sh = |s: &str| {
            let cmd = ["sh".into(), "-c".into(), s.into()];
            run(&cmd, &[], Some(&file))
        };
        let done = sh(r#"printf 'sum=%s' 42 > "$RESULT_PATH""#);
        assert_eq!(done.exit_code, 0);
        assert_eq!(done.result.unwrap().text, "sum=42");
        let failed = sh(r#"echo partial > "$RESULT_PATH"; exit 4"#);
        assert_eq!(failed.exit_code, 4);
        assert_eq!(
            failed.result.unwrap().text,
            "partial\n",
            "kept with a failure too"
        );
        std::fs::remove_file(file.path()).unwrap();
        assert_eq!(sh("exit 0").result, None, "no file, no result");
        assert_eq!(
            run(
                &["sh".into(), "-c".into(), "test -z \"$RESULT_PATH\"".into()],
                &[],
                None
            )
            .exit_code,
            0,
            "no RESULT_PATH when no file could be made"
        );
    }

    #[test]
    fn a_missing_program_is_127() {
        assert_eq!(run(&["/no/such/program".into()], &[], None).exit_code, 127);
    }

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
