//! Helpers shared by the end-to-end tests in `tests/tests/`.
//!
//! # Needing things
//!
//! A test that needs something these machines can have (Docker, Chromium) calls [`need`]: outside
//! CI it prints why it is skipped and returns `false`; in CI (`CI=true`) it panics, so a missing
//! engine fails the run instead of passing silently.

/// Returns whether `what` is available; skips loudly outside CI, fails in CI.
pub fn need(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if handler::config::in_ci() {
        panic!("{what} is required in CI (CI=true) but is not available");
    }
    eprintln!("SKIPPED: {what} is not available on this machine (mandatory when CI=true)");
    false
}

/// True when a Docker Engine answers on the default socket.
pub fn docker_available() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub mod runtimes;
