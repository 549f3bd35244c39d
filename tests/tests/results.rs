//! Results end to end (issue 12, item 4): the work writes `$RESULT_PATH`, the worker reports
//! it with its final state, the API returns it with the task. On the process runtime (always)
//! and on Docker (mandatory in CI), each test with its own handler on port 0 and data dir.
//!
//! Cases: a small result, a result larger than `MAX_RESULT_BYTES` (its first bytes kept and
//! marked truncated), no result file (no result), and a failed run's result (kept too).

use e2e::{need, start_local, Api, TempDir};
use handler::local::Running;
use model::limits::MAX_RESULT_BYTES;
use model::TaskState::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The shell worker as `--worker-arg` flags.
fn shell_flags() -> Vec<String> {
    e2e::shell_worker_args()
        .iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect()
}

async fn process_local(dir: &TempDir) -> Running {
    let mut flags = vec!["--runtime".to_string(), "process".into()];
    flags.extend(shell_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_local(&dir.0, &flags).await
}

async fn docker_local(dir: &TempDir) -> Option<Running> {
    if !need("docker", e2e::docker_available()) {
        return None;
    }
    let image = e2e::test_image().await;
    let mut flags = vec![
        "--runtime".to_string(),
        "docker".into(),
        "--image".into(),
        image,
        "--memory-mb".into(),
        "128".into(),
    ];
    flags.extend(shell_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(start_local(&dir.0, &flags).await)
}

/// The four cases against one running handler.
async fn results_come_back(running: &Running) {
    let api = Api::new(running);
    let one = |work: &str| serde_json::json!({"work": work, "max_attempts": 1});
    let small = api
        .submit(one(
            r#"echo working; printf 'sum=%s\n' 42 > "$RESULT_PATH""#,
        ))
        .await;
    // 3 x the limit of 'x' (busybox and coreutils both have head -c and tr).
    let big_len = 3 * MAX_RESULT_BYTES;
    let big = api
        .submit(one(&format!(
            r#"head -c {big_len} /dev/zero | tr '\0' x > "$RESULT_PATH""#
        )))
        .await;
    let none = api.submit(one("echo no result here")).await;
    let failed = api
        .submit(one(r#"echo 'half done' > "$RESULT_PATH"; exit 5"#))
        .await;

    let t = api.wait_state(&small.id, Done, LONG).await;
    let r = t.result.expect("a result");
    assert_eq!(
        (r.text.as_str(), r.truncated, r.bytes),
        ("sum=42\n", false, 7)
    );

    let t = api.wait_state(&big.id, Done, LONG).await;
    let r = t.result.expect("a result");
    assert!(r.truncated, "cut and marked");
    assert_eq!(
        r.text.len(),
        MAX_RESULT_BYTES,
        "the first bytes, up to the limit"
    );
    assert!(r.text.bytes().all(|b| b == b'x'));
    assert_eq!(r.bytes, big_len as u64, "the file's real size");

    let t = api.wait_state(&none.id, Done, LONG).await;
    assert_eq!(t.result, None, "no file, no result");
    let raw = api.get(&format!("/api/tasks/{}", none.id)).await;
    assert!(raw.get("result").is_none(), "and no field: {raw}");

    let t = api.wait_state(&failed.id, Failed, LONG).await;
    assert_eq!(t.exit_code, Some(5));
    assert_eq!(t.result.map(|r| r.text).as_deref(), Some("half done\n"));

    // List pages stay slim: results are on GET /api/tasks/{id} only.
    let page = api.get("/api/tasks?limit=10").await;
    let rows = page["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|t| t.get("result").is_none()), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_on_the_process_runtime() {
    let dir = TempDir::new("results-proc");
    let running = process_local(&dir).await;
    results_come_back(&running).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_on_docker() {
    let dir = TempDir::new("results-docker");
    let Some(running) = docker_local(&dir).await else {
        return;
    };
    results_come_back(&running).await;
    // Leave no container behind.
    let all = handler::store::ListFilter {
        limit: 100,
        ..Default::default()
    };
    for t in running.app.tasks().list(&all).await.unwrap().tasks {
        if let Some(name) = t.container {
            e2e::until_removed(&running, &name, LONG).await;
        }
    }
    running.stop().await;
}
