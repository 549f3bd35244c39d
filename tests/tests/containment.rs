//! Containment: a hostile task (real Docker, the busybox test image) tries to read and drive
//! other tasks through the API, to report another task's state with its own token, and to
//! reach a listener on the host's loopback. With the default network every attempt fails and
//! nothing changes; with `--task-network host` the same script shows what that opt-in gives
//! away. Also: the worker listener serves nothing but the worker's report, tasks run hardened,
//! `isolated` still lets the worker report, and `none` finishes tasks from their exit codes.
//!
//! Each test uses a task network of its own (`--task-network-name`) and removes it, with its
//! sandbox, at the end ([`NetworkGuard`]), so no run leaves one behind.

use e2e::faults::docker_flags;
use e2e::{eventually, need, start_local, Api, TempDir};
use handler::local::Running;
use model::{Task, TaskId, TaskPage, TaskState};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
/// The victim's message: the secret a hostile task must not see.
const SECRET: &str = "my secret: hunter2";

/// Removes the test's task network and its sandbox (and any container still on them) when
/// dropped, even after a failed assertion.
struct NetworkGuard(String);

impl NetworkGuard {
    fn new(tag: &str) -> NetworkGuard {
        let mut r = [0u8; 3];
        getrandom::fill(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        NetworkGuard(format!("eda-ct-{tag}-{}-{hex}", std::process::id()))
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default()
        };
        let sandbox = format!("{}-ns", self.0);
        let mut joined: Vec<String> =
            docker(&["ps", "-aq", "--filter", &format!("network={}", self.0)])
                .split_whitespace()
                .map(str::to_string)
                .collect();
        joined.push(sandbox);
        let mut rm = vec!["rm", "-f"];
        rm.extend(joined.iter().map(String::as_str));
        docker(&rm);
        docker(&["network", "rm", &self.0]);
    }
}

/// A listener on the host's loopback, as a developer's database or dev server would be,
/// counting the connections it accepts.
async fn loopback_listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

/// Local mode on Docker with the test image, the shell worker, and `flags`.
async fn start(dir: &TempDir, net: &NetworkGuard, flags: &[&str]) -> Running {
    let image = e2e::test_image().await;
    let mut all = docker_flags(&image);
    all.extend(["--task-network-name".into(), net.0.clone()]);
    all.extend(flags.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    start_local(&dir.0, &all).await
}

/// The hostile task: for the API on the host's loopback and for the address its own callback
/// goes to, it lists tasks, reads the victim's logs, enqueues, cancels the victim, clears the
/// board and reports the victim `Done` with its own token (read from the worker's
/// environment); then it connects to the test's
/// loopback listener. Raw HTTP through busybox `nc` (busybox `wget` cannot send DELETE); each
/// line prints what came back.
fn hostile_script(api_port: u16, victim: &TaskId, loopback_port: u16) -> String {
    format!(
        r#"
req() {{
  {{ printf '%s %s HTTP/1.0\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %s\r\n' "$1" "$3" "${{#4}}"
    [ -n "$5" ] && printf 'Authorization: Bearer %s\r\n' "$5"
    printf '\r\n%s' "$4"; }} | busybox timeout 5 busybox nc "${{2%:*}}" "${{2##*:}}" 2>&1 | busybox head -c 3000 | busybox tr '\r\n' '  '
}}
cb=${{CALLBACK_URL#http://}}; cb=${{cb%%/*}}
# The worker keeps its token from the command's environment; the task takes it from the
# worker's (same user), as hostile code would.
tok=$(busybox tr '\0' '\n' </proc/1/environ | busybox grep '^TASK_TOKEN=' | busybox cut -d= -f2-)
[ -n "$tok" ] && echo "own token: found"
for a in 127.0.0.1:{api_port} $cb; do
  echo "list $a: $(req GET $a /api/tasks)"
  echo "logs $a: $(req GET $a /api/tasks/{victim}/logs)"
  echo "enqueue $a: $(req POST $a /api/work '{{"work":"echo injected"}}')"
  echo "cancel $a: $(req POST $a /api/tasks/{victim}/cancel)"
  echo "clear $a: $(req DELETE $a '/api/tasks?state=finished')"
  echo "report $a: $(req POST $a /api/tasks/{victim}/state '{{"state":"Done"}}' "$tok")"
done
busybox timeout 5 busybox nc 127.0.0.1 {loopback_port} </dev/null; echo "loopback exit $?"
"#
    )
}

/// What the hostile task saw and what it left behind.
struct Attack {
    /// Its own output.
    output: String,
    /// The victim afterwards (`None`: it is gone from the board).
    victim: Option<Task>,
    /// Every task afterwards.
    tasks: Vec<Task>,
    /// The finished task that existed before the attack.
    finished: TaskId,
    /// Connections the loopback listener accepted.
    loopback_hits: usize,
    /// `docker network inspect`'s `Internal` of the task network ("" without one).
    internal: String,
}

/// Runs a finished task, a victim that holds a secret, then the hostile task; cleans up.
async fn attack(tag: &str, flags: &[&str]) -> Attack {
    let dir = TempDir::new(tag);
    let net = NetworkGuard::new(tag);
    let running = start(&dir, &net, flags).await;
    let api = Api::new(&running);
    let (loopback_port, hits) = loopback_listener().await;
    let done = api
        .submit(serde_json::json!({"work": "echo finished before"}))
        .await;
    api.wait_state(&done.id, TaskState::Done, LONG).await;
    let victim = api
        .submit(
            serde_json::json!({"work": format!("echo '{SECRET}'; sleep 300"), "max_attempts": 1}),
        )
        .await;
    api.wait_state(&victim.id, TaskState::InProgress, LONG)
        .await;
    let script = hostile_script(running.addr.port(), &victim.id, loopback_port);
    let hostile = api
        .submit(serde_json::json!({"work": script, "max_attempts": 1}))
        .await;
    let hostile = api.wait_state(&hostile.id, TaskState::Done, LONG).await;
    let output = output_of(&running, &api, &hostile).await;
    eprintln!("hostile task's output ({tag}):\n{output}");
    let page: TaskPage = serde_json::from_value(api.get("/api/tasks?limit=100").await).unwrap();
    let result = Attack {
        output,
        victim: page.tasks.iter().find(|t| t.id == victim.id).cloned(),
        tasks: page.tasks,
        finished: done.id,
        loopback_hits: hits.load(Ordering::SeqCst),
        internal: docker_out(&["network", "inspect", "-f", "{{.Internal}}", &net.0]),
    };
    finish_all(&running, &api).await;
    running.stop().await;
    result
}

/// The output of a finished task, once its container is removed and its logs captured.
async fn output_of(running: &Running, api: &Api, task: &Task) -> String {
    let name = task.container.clone().expect("the task had a container");
    e2e::until_removed(running, &name, LONG).await;
    api.get(&format!("/api/tasks/{}/logs", task.id)).await["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Cancels what still runs and waits until every container of this handler is gone.
async fn finish_all(running: &Running, api: &Api) {
    let page: TaskPage = serde_json::from_value(api.get("/api/tasks?limit=100").await).unwrap();
    for t in page.tasks.iter().filter(|t| !t.state.is_terminal()) {
        let _ = api
            .post_raw(&format!("/api/tasks/{}/cancel", t.id), "")
            .await;
    }
    let names: Vec<String> = page
        .tasks
        .iter()
        .filter_map(|t| t.container.clone())
        .collect();
    eventually(
        LONG,
        "every container of the test to be removed",
        || async {
            let left = running.app.runtime().list().await.unwrap();
            (!left.iter().any(|n| names.contains(n))).then_some(())
        },
    )
    .await;
}

/// What a `docker` command prints, trimmed ("" when it fails).
fn docker_out(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The line of the output starting with `what <addr>:`.
fn line<'a>(output: &'a str, what: &str, addr: &str) -> &'a str {
    let head = format!("{what} {addr}:");
    output
        .lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no `{head}` line in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_task_cannot_read_or_drive_others_nor_reach_host_loopback() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let a = attack("bridge", &[]).await;
    assert_eq!(
        a.internal, "false",
        "the default network has outbound access"
    );
    // Nothing changed: the victim runs on, nothing was enqueued or cleared, no connection.
    let victim = a.victim.expect("the victim is still on the board");
    assert_eq!(victim.state, TaskState::InProgress, "{victim:#?}");
    assert_eq!(
        a.tasks.len(),
        3,
        "no task was added or removed: {:#?}",
        a.tasks
    );
    assert!(
        a.tasks.iter().any(|t| t.id == a.finished),
        "the board was not cleared"
    );
    assert!(!a.tasks.iter().any(|t| t.work == "echo injected"));
    assert_eq!(
        a.loopback_hits, 0,
        "the host's loopback must be out of reach"
    );
    // What the task saw: nothing of the victim; the API's port on its own 127.0.0.1 is
    // closed; the address of its callback serves nothing but the report route, and the
    // report on another task with its own token is refused.
    assert!(!a.output.contains("hunter2"), "{}", a.output);
    assert!(a.output.contains("own token: found"), "{}", a.output);
    let cb = a
        .output
        .lines()
        .find_map(|l| {
            l.strip_prefix("list ")
                .filter(|l| !l.starts_with("127.0.0.1"))
        })
        .and_then(|l| l.split(':').next())
        .map(|ip| ip.to_string())
        .expect("a line for the callback's address");
    assert!(
        !cb.starts_with("127."),
        "the callback is not on loopback: {cb}"
    );
    for what in ["list", "logs", "enqueue", "cancel", "clear"] {
        let own_loopback = line(&a.output, what, "127.0.0.1");
        assert!(!own_loopback.contains("HTTP/1."), "{own_loopback}");
        let gateway = a
            .output
            .lines()
            .find(|l| l.starts_with(&format!("{what} {cb}")))
            .unwrap();
        assert!(gateway.contains(" 404 "), "{gateway}");
        assert!(gateway.contains("worker_listener"), "{gateway}");
    }
    let report = a
        .output
        .lines()
        .find(|l| l.starts_with(&format!("report {cb}")))
        .unwrap();
    assert!(report.contains(" 403 "), "{report}");
    assert!(a.output.contains("loopback exit 1"), "{}", a.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_network_opt_in_gives_the_api_and_host_loopback_away() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let a = attack("host", &["--task-network", "host"]).await;
    // The same script, on the host's network: it read the secret, enqueued work, cancelled
    // the victim and then cleared it from the board with the other finished task, and reached
    // the host's loopback.
    assert!(a.output.contains("hunter2"), "{}", a.output);
    assert!(
        line(&a.output, "cancel", "127.0.0.1").contains(" 200 "),
        "{}",
        a.output
    );
    assert!(
        a.victim.is_none(),
        "cancelled, then cleared: {:#?}",
        a.victim
    );
    assert!(a.tasks.iter().any(|t| t.work == "echo injected"));
    assert!(
        !a.tasks.iter().any(|t| t.id == a.finished),
        "the board was cleared"
    );
    assert!(a.loopback_hits >= 1);
    // What still holds there: a task's token does not work for another task.
    assert!(a.output.contains("own token: found"), "{}", a.output);
    assert!(
        line(&a.output, "report", "127.0.0.1").contains(" 403 "),
        "{}",
        a.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_listener_serves_only_the_report() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("worker-listener");
    let net = NetworkGuard::new("wl");
    let running = start(&dir, &net, &[]).await;
    let api = Api::new(&running);
    let worker = running
        .worker_addr
        .expect("a worker listener on the gateway");
    assert!(!worker.ip().is_loopback(), "{worker}");
    assert_eq!(worker.port(), running.addr.port(), "same port as the API");
    let t = api
        .submit(serde_json::json!({"work": "sleep 300", "max_attempts": 1}))
        .await;
    api.wait_state(&t.id, TaskState::InProgress, LONG).await;
    let http = reqwest::Client::new();
    let base = format!("http://{worker}");
    for (method, path) in [
        ("GET", "/api/tasks".to_string()),
        ("GET", format!("/api/tasks/{}", t.id)),
        ("GET", format!("/api/tasks/{}/logs", t.id)),
        ("GET", "/api/events".to_string()),
        ("GET", "/api/health".to_string()),
        ("POST", "/api/work".to_string()),
        ("POST", format!("/api/tasks/{}/cancel", t.id)),
        ("DELETE", "/api/tasks?state=finished".to_string()),
        ("GET", "/".to_string()),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body(r#"{"work":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            404,
            "{method} {path} on the worker listener"
        );
    }
    let forged = http
        .post(format!("{base}/api/tasks/{}/state", t.id))
        .bearer_auth("not-the-token")
        .body(r#"{"state":"Done"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(api.task(&t.id).await.state, TaskState::InProgress);
    finish_all(&running, &api).await;
    running.stop().await;
}

/// `name=value` lines of a task's output.
fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in:\n{output}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_hardened_by_default() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("hardened");
    let net = NetworkGuard::new("hd");
    let running = start(&dir, &net, &[]).await;
    let api = Api::new(&running);
    let probe = r#"
echo "uid=$(busybox id -u)"
busybox touch /probe 2>/dev/null; echo "root_write=$?"
busybox touch /tmp/probe; echo "tmp_write=$?"
echo "cap_eff=$(busybox awk '/^CapEff/ {print $2}' /proc/self/status)"
echo "no_new_privs=$(busybox awk '/^NoNewPrivs/ {print $2}' /proc/self/status)"
echo "pids_max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
"#;
    let t = api
        .submit(serde_json::json!({"work": probe, "max_attempts": 1}))
        .await;
    let t = api.wait_state(&t.id, TaskState::Done, LONG).await;
    let out = output_of(&running, &api, &t).await;
    assert_eq!(field(&out, "uid"), "65534", "{out}");
    assert_eq!(field(&out, "root_write"), "1", "read-only root: {out}");
    assert_eq!(field(&out, "tmp_write"), "0", "writable /tmp: {out}");
    assert_eq!(field(&out, "cap_eff"), "0000000000000000", "{out}");
    assert_eq!(field(&out, "no_new_privs"), "1", "{out}");
    assert_eq!(field(&out, "pids_max"), "256", "{out}");
    finish_all(&running, &api).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_tasks_still_report_and_cannot_reach_the_api() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let a = attack("isolated", &["--task-network", "isolated"]).await;
    let victim = a.victim.expect("the victim is still on the board");
    assert_eq!(victim.state, TaskState::InProgress, "{victim:#?}");
    assert_eq!(a.tasks.len(), 3, "{:#?}", a.tasks);
    assert_eq!(a.loopback_hits, 0);
    assert!(!a.output.contains("hunter2"), "{}", a.output);
    // The victim reported InProgress through the worker listener: an internal network (no
    // route beyond the host) still reaches its gateway, on Docker 20.10 too.
    assert_eq!(a.internal, "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_network_tasks_finish_from_their_exit_codes() {
    if !need("docker", e2e::docker_available()) {
        return;
    }
    let dir = TempDir::new("no-network");
    let net = NetworkGuard::new("none");
    let running = start(&dir, &net, &["--task-network", "none"]).await;
    assert_eq!(running.worker_addr, None, "no network, no worker listener");
    let api = Api::new(&running);
    let ok = api
        .submit(serde_json::json!({"work": "echo \"callback=${CALLBACK_URL:-none} token=${TASK_TOKEN:-none}\"", "max_attempts": 1}))
        .await;
    let bad = api
        .submit(serde_json::json!({"work": "exit 3", "max_attempts": 1}))
        .await;
    let ok = api.wait_state(&ok.id, TaskState::Done, LONG).await;
    let bad = api.wait_state(&bad.id, TaskState::Failed, LONG).await;
    assert_eq!((ok.exit_code, bad.exit_code), (Some(0), Some(3)));
    assert!(
        !ok.transitions
            .iter()
            .any(|t| t.state == TaskState::InProgress),
        "a worker without a network never reports: {ok:#?}"
    );
    // Done comes from the exit code; the logs are captured just after, before removal.
    let name = ok.container.clone().expect("the task had a container");
    e2e::until_removed(&running, &name, LONG).await;
    let out = api.get(&format!("/api/tasks/{}/logs", ok.id)).await;
    assert!(
        out["text"]
            .as_str()
            .unwrap()
            .contains("callback=none token=none"),
        "{out}"
    );
    finish_all(&running, &api).await;
    running.stop().await;
}

/// `handler local` (the real binary) with no Docker Engine reachable: `DOCKER_HOST` points at a
/// socket that does not exist.
fn handler_without_docker(runtime: &str, data: &TempDir) -> std::process::Child {
    Command::new(e2e::faults::handler_bin())
        .args(["local", "--bind", "127.0.0.1:0", "--runtime", runtime])
        .arg("--data-dir")
        .arg(&data.0)
        .arg("--worker-bin")
        .arg(e2e::worker_bin())
        .env("DOCKER_HOST", "unix:///nonexistent/eda-no-docker.sock")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the handler binary")
}

#[test]
fn docker_demanded_but_absent_fails_at_start_and_says_why() {
    let data = TempDir::new("no-docker");
    let out = handler_without_docker("docker", &data)
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--runtime docker: no Docker Engine answers"),
        "{err}"
    );
    assert!(!err.contains("process runtime"), "never falls back: {err}");
}

#[test]
fn auto_falls_back_to_processes_and_says_they_are_not_contained() {
    use std::io::BufRead;
    let data = TempDir::new("auto-fallback");
    let mut child = handler_without_docker("auto", &data);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen
        .iter()
        .any(|l: &String| l.contains("local mode listening"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(log.contains("local mode listening"), "{log}");
    assert!(
        log.contains(
            "--runtime auto: no Docker Engine answers; falling back to the process runtime"
        ),
        "{log}"
    );
    let warning: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("NOT contained"))
        .collect();
    assert_eq!(warning.len(), 1, "one line says so: {log}");
}
