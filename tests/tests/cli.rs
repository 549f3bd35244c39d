//! `handler submit` and `handler tasks` against a running local mode, through the real binary;
//! and where the binary looks for its worker when it is run directly.

use e2e::faults::{handler_bin, HandlerProcess};
use e2e::free_port;
use e2e::{start_local, Api, TempDir};
use std::process::Command;
use std::time::Duration;

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

    // The shape flags reach the task.
    let out = Command::new(handler_bin())
        .args([
            "submit",
            "--api",
            &api,
            "--priority",
            "-7",
            "--delay",
            "600",
            "--key",
            "tenant-a",
            "--cpu",
            "0.5",
            "--memory-mb",
            "256",
            "--label",
            "team=blue",
            "--label",
            "run=3",
            "shaped",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .split('\t')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let t = Api::new(&running)
        .task(&model::TaskId::parse(&id).unwrap())
        .await;
    assert_eq!((t.priority, t.key.as_deref()), (-7, Some("tenant-a")));
    assert_eq!((t.resources.cpu, t.resources.memory_mb), (0.5, 256));
    assert_eq!(
        (t.labels["team"].as_str(), t.labels["run"].as_str()),
        ("blue", "3")
    );
    assert!(t.not_before_ms.unwrap() >= t.created_at_ms + 600_000);
    let refused = Command::new(handler_bin())
        .args(["submit", "--api", &api, "--key", "Bad Key", "x"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("400") && err.contains("invalid_key"), "{err}");

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

/// `target/release/handler local` run directly, as the README's examples run the binary: with no
/// `--worker-bin`, the static worker is found where `cargo xtask worker` builds it (under the
/// musl target dir, next to the handler's own `target/<profile>/`), and a task runs with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_finds_the_worker_under_the_musl_target_dir() {
    let handler = handler_bin();
    let musl = handler
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("x86_64-unknown-linux-musl/release/worker");
    if !e2e::need("the musl worker (`cargo xtask worker`)", musl.is_file()) {
        return;
    }
    let dir = TempDir::new("cli-worker");
    let flags: Vec<String> = [
        "--runtime",
        "process",
        "--worker-arg=--seconds",
        "--worker-arg=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let h = HandlerProcess::start(&dir.0.join("data"), free_port(), &flags);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/work", h.url()))
        .json(&serde_json::json!({"work": "found"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("{}/api/tasks/{id}", h.url());
    let task = e2e::eventually(Duration::from_secs(30), "the task to be Done", || async {
        let t: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
        (t["state"] == "Done").then_some(t)
    })
    .await;
    assert_eq!(task["exit_code"], 0, "{task}");
}

/// Without a worker anywhere, local mode on the process runtime refuses to start and names every
/// place it looked: the handler is run from a folder of its own (a hard link), so neither of
/// its default places holds a worker.
#[test]
fn without_a_worker_the_error_says_where_it_looked() {
    let dir = TempDir::new("cli-noworker");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let handler = bin.join("handler");
    if std::fs::hard_link(handler_bin(), &handler).is_err() {
        std::fs::copy(handler_bin(), &handler).unwrap();
    }
    let out = Command::new(&handler)
        .args([
            "local",
            "--runtime",
            "process",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.0.join("data"))
        .env_remove("EDA_WORKER_BIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let musl = dir.0.join("x86_64-unknown-linux-musl/release/worker");
    assert!(
        err.contains(&musl.display().to_string())
            && err.contains(&bin.join("worker").display().to_string())
            && err.contains("cargo xtask worker"),
        "{err}"
    );
}
