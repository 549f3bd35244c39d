//! The process runtime across a handler's death: what a user of local mode without Docker can
//! rely on (issue 14, item 1).
//!
//! - The handler killed with SIGKILL, or stopped with SIGTERM, while a worker runs: every
//!   process the runtime started for it (the worker and the work it started) is gone before the
//!   handler is started again. So when the restarted handler finds the attempt's "container"
//!   gone and retries it, that is the truth: no attempt runs twice, and the cap of 1 holds.
//! - A new runtime kills what a previous one on the same data dir left (identified by the
//!   marker in the environment, not by a pid) and nothing else.
//!
//! Real handler processes, real workers, real signals; no Docker needed.

use e2e::faults::HandlerProcess;
use e2e::free_port;
use e2e::{eventually, TempDir};
use handler::runtime::process::{kill_leftovers, marked_processes, OWNER_ENV};
use model::{TaskPage, TaskState};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// Flags of a handler on the process runtime with the shell worker, one task at a time.
fn flags() -> Vec<String> {
    let mut f: Vec<String> = [
        "--runtime",
        "process",
        "--concurrency",
        "1",
        "--sweep-ms",
        "200",
        "--retry-backoff-ms",
        "100",
        "--worker-bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.push(e2e::worker_bin().display().to_string());
    f.extend(
        e2e::shell_worker_args()
            .iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    f
}

fn lines(runs: &Path) -> Vec<String> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn starts(runs: &Path) -> usize {
    lines(runs)
        .iter()
        .filter(|l| l.starts_with("start"))
        .count()
}

/// Appends a line to the run log: the test's own marks between the workers' lines.
fn mark(runs: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(runs)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// Waits until no process of the handler's process runtime is alive (the handler being down),
/// then marks the run log: every run that started before this line has ended.
async fn all_workers_gone(h: &HandlerProcess, runs: &Path, after: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("every worker process to be gone after {after}"),
        || async { h.worker_processes().is_empty().then_some(()) },
    )
    .await;
    mark(runs, &format!("gone after {after}"));
}

/// Waits until the `n`th run started and its worker processes are visible.
async fn running(h: &HandlerProcess, runs: &Path, n: usize) {
    eventually(LONG, &format!("run {n} to start"), || async {
        (starts(runs) >= n && !h.worker_processes().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_sigterm_mid_run_leave_no_worker_and_run_each_attempt_once() {
    let dir = TempDir::new("proc-restart");
    let (runs, go) = (dir.0.join("runs"), dir.0.join("go"));
    let mut h = HandlerProcess::start(&dir.0.join("data"), free_port(), &flags());
    let http = reqwest::Client::new();
    // Each run says when it starts and ends; it works (forever, in its own child processes)
    // until the test creates `go`.
    let work = format!(
        "echo start $TASK_ID $ATTEMPT >> {r}; while [ ! -e {g} ]; do sleep 0.05; done; \
         echo end $TASK_ID $ATTEMPT >> {r}",
        r = runs.display(),
        g = go.display()
    );
    let r = http
        .post(format!("{}/api/work", h.url()))
        .json(&serde_json::json!({"work": work, "count": 2, "max_attempts": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // 1. SIGKILL mid-run: no shutdown code runs, yet the workers die with the handler.
    running(&h, &runs, 1).await;
    h.kill9();
    all_workers_gone(&h, &runs, "SIGKILL").await;

    // 2. Restarted, a run starts again (a retry of the killed attempt, or the other task);
    //    SIGTERM mid-run: a graceful stop, which ends the process workers too.
    h.restart();
    running(&h, &runs, 2).await;
    let status = h.term();
    assert!(status.success(), "SIGTERM is a graceful stop: {status}");
    let log = std::fs::read_to_string(e2e::faults::log_path(&h.data_dir)).unwrap();
    assert!(
        log.contains("stop signal (Ctrl-C or SIGTERM): graceful stop"),
        "SIGTERM took the same graceful path as Ctrl-C: {log}"
    );
    all_workers_gone(&h, &runs, "SIGTERM").await;

    // 3. Restarted again, the work may finish: every task ends Done.
    h.restart();
    running(&h, &runs, 3).await;
    std::fs::write(&go, "").unwrap();
    let base = h.url();
    let page: TaskPage = eventually(LONG, "both tasks to be Done", || async {
        let p: TaskPage = http
            .get(format!("{base}/api/tasks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (p.counts.get(&TaskState::Done) == Some(&2)).then_some(p)
    })
    .await;

    // The run log, in order: never two runs at once (cap 1, counting every live process),
    // each attempt started at most once, an end only for a run that was running.
    let log = lines(&runs);
    eprintln!("run log:\n{}", log.join("\n"));
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    for line in &log {
        if line.starts_with("gone after") {
            live.clear();
            continue;
        }
        let (kind, attempt) = line.split_once(' ').expect("a run line");
        match kind {
            "start" => {
                assert!(live.is_empty(), "two runs at once (cap 1): {log:#?}");
                assert!(
                    started.insert(attempt.to_string()),
                    "attempt {attempt} ran twice: {log:#?}"
                );
                live.insert(attempt.to_string());
            }
            "end" => assert!(live.remove(attempt), "{attempt} ended unstarted: {log:#?}"),
            other => panic!("unexpected line {other:?} in {log:#?}"),
        }
    }
    let ends = log.iter().filter(|l| l.starts_with("end")).count();
    assert_eq!(ends, 2, "each task's last attempt ran to its end: {log:#?}");
    // The store agrees: each task's attempts are exactly the runs that started for it.
    for t in &page.tasks {
        let runs_of_task = started
            .iter()
            .filter(|a| a.starts_with(&format!("{} ", t.id)))
            .count();
        assert_eq!(runs_of_task as u32, t.attempt, "{t:#?} vs {log:#?}");
    }
    assert!(h.worker_processes().is_empty());
}

/// Starts `sh -c 'sleep 300'` in its own session (so not in any group the runtime knows) with
/// `owner` as its marker.
fn marked_sleeper(owner: &str) -> std::process::Child {
    std::process::Command::new("setsid")
        .args(["sh", "-c", "sleep 300"])
        .env(OWNER_ENV, owner)
        .spawn()
        .expect("run setsid")
}

#[tokio::test]
async fn a_new_runtime_kills_what_its_data_dir_left_and_nothing_else() {
    let dir = TempDir::new("proc-leftovers");
    let (ours, theirs) = (dir.0.join("ours/logs"), dir.0.join("theirs/logs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let ours = std::fs::canonicalize(ours).unwrap().display().to_string();
    let theirs = std::fs::canonicalize(theirs).unwrap().display().to_string();
    // A leftover that left the process group (its own session), and another data dir's worker.
    let mut leftover = marked_sleeper(&ours);
    let mut other = marked_sleeper(&theirs);
    eventually(
        Duration::from_secs(5),
        "both sleepers to be visible",
        || async {
            (!marked_processes(&ours).is_empty() && !marked_processes(&theirs).is_empty())
                .then_some(())
        },
    )
    .await;

    let runtime = handler::runtime::process::ProcessRuntime::new(
        e2e::worker_bin(),
        std::path::PathBuf::from(&ours),
    );
    // `new` waited until the leftover was gone: reap it and see how it ended.
    let status = leftover.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the leftover was SIGKILLed");
    assert!(marked_processes(&ours).is_empty());
    assert!(
        !marked_processes(&theirs).is_empty(),
        "another data dir's worker is not ours to kill"
    );
    drop(runtime);
    assert!(kill_leftovers(&theirs, Duration::from_secs(5)) >= 1);
    assert_eq!(other.wait().unwrap().signal(), Some(9));
}
