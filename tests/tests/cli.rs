//! `handler submit` and `handler tasks` against a running local mode, through the real binary.

use e2e::faults::handler_bin;
use e2e::{start_local, Api, TempDir};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_list_from_the_command_line() {
    let dir = TempDir::new("cli");
    let running = start_local(&dir.0, &["--runtime", "process", "--concurrency", "1"]).await;
    let api = running.url();
    let out = Command::new(handler_bin())
        .args(["submit", "--api", &api, "--count", "2", "first", "second"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.lines().all(|l| l.ends_with("\tPending")), "{stdout}");
    let page = Api::new(&running).get("/api/tasks").await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 4);

    let out = Command::new(handler_bin())
        .args(["tasks", "--api", &api])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("ID") && table.contains("first") && table.contains("second"),
        "{table}"
    );

    let bad = Command::new(handler_bin())
        .args(["submit", "--api", &api, "   "])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("400") && err.contains("whitespace"), "{err}");
    let down = Command::new(handler_bin())
        .args(["tasks", "--api", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("is the handler running"));
    running.stop().await;
}
