//! The data directory's disk full, read-only or removed (issue 14, item 2), on a real small
//! tmpfs mounted for the test (needs root; mandatory in CI).
//!
//! What a user should see, and what is asserted:
//! - disk full: `POST /api/work` answers 507 Insufficient Storage, code `storage_full`, with a
//!   message naming the data directory and saying it is full; `GET /api/health` answers the same
//!   (not ready); the handler's log keeps SQLite's cause ("database or disk is full"); nothing
//!   half-written (the tasks stored are exactly the ones answered 202); once space returns,
//!   health is 200 again by itself and every accepted task runs to `Done`.
//! - database removed while running: 503 `storage_gone`, and health says so.
//! - read-only data directory at start: the handler refuses to start, naming it.

use e2e::faults::{log_path, HandlerProcess};
use e2e::free_port;
use e2e::{eventually, need, TempDir};
use model::{Task, TaskPage, TaskState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// A tmpfs of `size` mounted at a fresh folder; unmounted on drop, also when the test fails.
struct Tmpfs {
    /// The mount point.
    point: PathBuf,
}

impl Tmpfs {
    /// Mounts one under `parent`, or `None` when this machine does not let us (not root).
    fn mount(parent: &Path, size: &str) -> Option<Tmpfs> {
        let point = parent.join("mnt");
        std::fs::create_dir_all(&point).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { point })
    }

    /// `mount -o remount,<opts>`.
    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.point)
            .status()
            .unwrap();
        assert!(s.success(), "remount {opts} of {}", self.point.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.point)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            // Something still holds a file there (a failed test's handler): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// Fills the file system of `dir` with one file until it has no byte left; returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![7u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

fn flags() -> Vec<String> {
    let mut f: Vec<String> = ["--runtime", "process", "--concurrency", "1", "--worker-bin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    f.push(e2e::worker_bin().display().to_string());
    f.extend(["--sweep-ms".into(), "200".into()]);
    f.extend(
        e2e::shell_worker_args()
            .iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    f
}

/// `(status, body)` of `GET /api/health`.
async fn health(api: &e2e::Api) -> (u16, serde_json::Value) {
    let r = api
        .http
        .get(format!("{}/api/health", api.base))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn counts(api: &e2e::Api) -> TaskPage {
    serde_json::from_value(api.get("/api/tasks?limit=1").await).unwrap()
}

fn can_mount(dir: &Path) -> Option<Tmpfs> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let t = root.then(|| Tmpfs::mount(dir, "16m")).flatten();
    need("root, to mount a small tmpfs", t.is_some()).then_some(t?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_keeps_the_cause_and_resumes_when_space_returns() {
    let dir = TempDir::new("disk-full");
    let Some(fs) = can_mount(&dir.0) else {
        return;
    };
    let data = fs.point.clone();
    let h = HandlerProcess::start(&data, free_port(), &flags());
    let api = e2e::Api {
        base: h.url(),
        http: reqwest::Client::new(),
    };
    // One task holds the only slot until `go` exists, so accepted work waits in the queue.
    let go = dir.0.join("go");
    let gate = api
        .submit(serde_json::json!({
            "work": format!("while [ ! -e {} ]; do sleep 0.05; done", go.display())
        }))
        .await;
    api.wait_state(&gate.id, TaskState::InProgress, LONG).await;

    let filler = fill(&data);
    let mut accepted: Vec<Task> = Vec::new();
    let refused = loop {
        let (s, v) = api.post_raw("/api/work", r#"{"work": "echo hello"}"#).await;
        if s != 202 {
            break (s, v);
        }
        accepted.push(serde_json::from_value(v["tasks"][0].clone()).unwrap());
        assert!(accepted.len() < 20_000, "a full disk never refused work");
    };
    let (status, body) = refused;
    eprintln!(
        "disk full after {} accepted: {status} {body}",
        accepted.len()
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "storage_full", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&data.display().to_string()) && message.contains("full"),
        "the message names the data directory and what is full: {message}"
    );
    let (s, v) = health(&api).await;
    assert_eq!(
        (s, &v["ready"], &v["code"]),
        (507, &false.into(), &"storage_full".into()),
        "{v}"
    );
    let log = std::fs::read_to_string(log_path(&data)).unwrap();
    assert!(
        log.contains("database or disk is full"),
        "the log keeps SQLite's cause: {log}"
    );
    // Nothing half-written: exactly the answered tasks are stored (and the gate).
    let stored: u64 = counts(&api).await.counts.values().sum();
    assert_eq!(stored, accepted.len() as u64 + 1);

    // Space returns: readiness and intake come back by themselves.
    std::fs::remove_file(&filler).unwrap();
    eventually(LONG, "health to be 200 again", || async {
        (health(&api).await.0 == 200).then_some(())
    })
    .await;
    accepted.push(api.submit(serde_json::json!({"work": "echo after"})).await);
    std::fs::write(&go, "").unwrap();
    let n = accepted.len() as u64 + 1;
    eventually(LONG, "every accepted task to be Done", || async {
        let p = counts(&api).await;
        (p.counts.get(&TaskState::Done) == Some(&n)).then_some(())
    })
    .await;
    for t in accepted.iter().step_by(accepted.len().div_ceil(20).max(1)) {
        assert_eq!(api.task(&t.id).await.state, TaskState::Done);
    }

    // The database removed under the running handler: no write is acknowledged any more.
    for f in ["eda.db", "eda.db-wal", "eda.db-shm"] {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    let (s, v) = api.post_raw("/api/work", r#"{"work": "echo lost"}"#).await;
    eprintln!("database removed: {s} {v}");
    assert_eq!((s, &v["code"]), (503, &"storage_gone".into()), "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains(&data.display().to_string()));
    let (s, v) = health(&api).await;
    assert_eq!((s, &v["code"]), (503, &"storage_gone".into()), "{v}");
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_is_refused_at_start_by_name() {
    let dir = TempDir::new("disk-ro");
    let Some(fs) = can_mount(&dir.0) else {
        return;
    };
    fs.remount("ro");
    let out = Command::new(e2e::faults::handler_bin())
        .args(["local", "--runtime", "process", "--bind", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&fs.point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the data directory {} is read-only",
            fs.point.display()
        )),
        "{stderr}"
    );
}
