//! Standby mode: this worker was started by an ACI standby pool before its task existed
//! (`model::standby`). It waits for the task's [`Assignment`] to appear in its config map
//! directory, then replaces itself with a cold worker of that task: the same binary, exec'd
//! with the assignment's arguments and environment, so everything after the hand-over is the
//! cold path, unchanged.

use model::standby::{Assignment, ASSIGNMENT_KEY, CONFIGMAP_DIR_ENV};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

/// How often the config map directory is looked at: ACI updates it without a restart, and a
/// claimed container should start its work within a few tens of milliseconds.
const POLL: Duration = Duration::from_millis(25);

/// Waits for the assignment under `dir`, then execs the worker with it. Returns only when the
/// exec failed (with that error).
pub fn wait_and_run(dir: &Path) -> std::io::Error {
    eprintln!(
        "worker: standby, waiting for an assignment in {}",
        dir.display()
    );
    let assignment = loop {
        if let Some(a) = read(dir) {
            break a;
        }
        std::thread::sleep(POLL);
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    std::process::Command::new(exe)
        .args(&assignment.args)
        .env_remove(CONFIGMAP_DIR_ENV)
        .envs(assignment.env.iter().map(|(k, v)| (k, v)))
        .exec()
}

/// The assignment, once its file is there and whole (a file still being written does not
/// parse yet).
fn read(dir: &Path) -> Option<Assignment> {
    let text = std::fs::read_to_string(dir.join(ASSIGNMENT_KEY)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_assignment_is_read() {
        let dir = std::env::temp_dir().join(format!("eda-standby-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read(&dir).is_none(), "no file yet");
        let a = Assignment {
            args: vec!["--seconds".into(), "0".into()],
            env: vec![("MESSAGE".into(), "hi".into())],
        };
        let text = serde_json::to_string(&a).unwrap();
        std::fs::write(dir.join(ASSIGNMENT_KEY), &text[..text.len() / 2]).unwrap();
        assert!(read(&dir).is_none(), "half written");
        std::fs::write(dir.join(ASSIGNMENT_KEY), &text).unwrap();
        assert_eq!(read(&dir), Some(a));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
