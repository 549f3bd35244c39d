//! The work itself: the built-in demo, or the user's command given after `--`.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How the work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code the worker passes on: the command's, 128 + signal when a signal ended it,
    /// 127 when it could not be started.
    pub exit_code: i32,
    /// A short reason when the work failed.
    pub reason: Option<String>,
}

/// The seed's demo: hashes the message over and over for `duration`, printing progress about
/// once a second and the final digest, so a tile has CPU use and output to show.
pub fn demo(message: &str, duration: Duration) -> Finished {
    let start = Instant::now();
    let mut digest: [u8; 32] = Sha256::digest(message.as_bytes()).into();
    let mut rounds: u64 = 1;
    let mut next_report = Duration::from_secs(1);
    let mut out = std::io::stdout().lock();
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
    }
}

/// Runs `command` with the worker's environment minus `TASK_TOKEN` (the message is already in
/// `MESSAGE`), passing its stdout and stderr straight through.
pub fn run(command: &[String]) -> Finished {
    let Some((program, args)) = command.split_first() else {
        return failed(2, "empty command".into());
    };
    let status = Command::new(program)
        .args(args)
        .env_remove("TASK_TOKEN")
        .status();
    match status {
        Err(e) => failed(127, format!("cannot start `{program}`: {e}")),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(0), _) => Finished {
                exit_code: 0,
                reason: None,
            },
            (Some(code), _) => failed(code, format!("exit code {code}")),
            (None, Some(sig)) => failed(128 + sig, format!("killed by signal {sig}")),
            (None, None) => failed(1, "ended without an exit code".into()),
        },
    }
}

fn failed(exit_code: i32, reason: String) -> Finished {
    Finished {
        exit_code,
        reason: Some(reason),
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
        let sh = |s: &str| run(&["sh".into(), "-c".into(), s.into()]);
        assert_eq!(sh("exit 0").exit_code, 0);
        let three = sh("exit 3");
        assert_eq!(three.exit_code, 3);
        assert_eq!(three.reason.as_deref(), Some("exit code 3"));
        let killed = sh("kill -9 $$");
        assert_eq!(killed.exit_code, 137);
        assert_eq!(killed.reason.as_deref(), Some("killed by signal 9"));
    }

    #[test]
    fn a_missing_program_is_127() {
        assert_eq!(run(&["/no/such/program".into()]).exit_code, 127);
    }

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
