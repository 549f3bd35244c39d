//! The custom-handler server, running on port 0, fed the invocation payloads the Functions host
//! sends (Service Bus trigger with a JSON envelope and with a plain string, the HTTP API through
//! the wrapper, the timer) over real HTTP; each answer is checked field by field. The payloads
//! are built by the host harness's port of azure-functions-host's encoding (`host/wire.rs`), so
//! a string message arrives `JsonConvert.SerializeObject`-encoded as it does in Azure.
//!
//! The app is the real one (SQLite store, the real spawn, API and reconcile code) with the
//! in-memory container runtime (`handler::runtime::fake::FakeRuntime`), since the ACI runtime
//! has its own tests against an ARM stand-in and `functions_host.rs` runs the whole path with
//! it. Also here: the delivery policy (global
//! cap, transient errors are not poison) and the answers while the store is not connected.

use clap::Parser;
use e2e::host::wire::{HostValue, HttpRequestData, Invocation};
use handler::config::{Cli, Command, FunctionsArgs};
use handler::functions::{self, Running};
use handler::runtime::fake::{FakeRuntime, Fault};
use handler::spawn::derived_id;
use handler::store::sqlite::SqliteStore;
use model::{Envelope, SubmitResponse, TaskId, TaskPage, TaskState};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn args(extra: &[&str]) -> FunctionsArgs {
    let mut argv = vec![
        "handler",
        "functions",
        "--subscription-id",
        "sub",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--mongo-uri",
        "mongodb://unused",
        "--public-url",
        "https://app.example",
        "--max-deliveries",
        "3",
        "--retry-backoff-ms",
        "0",
        "--api-key",
        "k3y",
    ];
    // A flag in `extra` replaces its default above.
    for flag in extra.iter().filter(|f| f.starts_with("--")) {
        if let Some(i) = argv.iter().position(|a| a == flag) {
            argv.drain(i..i + 2);
        }
    }
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Some(Command::Functions(a)) => a,
        _ => unreachable!(),
    }
}

struct Harness {
    running: Running,
    runtime: Arc<FakeRuntime>,
    http: reqwest::Client,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A folder removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p = std::env::temp_dir().join(format!("eda-fn-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn harness(tag: &str, extra: &[&str]) -> Harness {
    let dir = tempdir::Dir::new(tag);
    let a = args(extra);
    let store = Arc::new(SqliteStore::open(&dir.0.join("eda.db")).unwrap());
    let runtime = Arc::new(FakeRuntime::default());
    let app = functions::assemble(a.settings().unwrap(), store, runtime.clone());
    let resend = std::time::Duration::from_secs(a.azure.pending_resend_secs);
    let running = functions::start(app, "127.0.0.1:0".parse().unwrap(), None, resend).unwrap();
    Harness {
        running,
        runtime,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Harness {
    /// POSTs an invocation to `/{function}`; returns the status and the JSON answer.
    async fn invoke(&self, function: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("http://{}/{function}", self.running.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn task(&self, id: &TaskId) -> model::Task {
        self.running.app.tasks().get(id).await.unwrap().unwrap()
    }

    /// An HttpApi invocation as the host sends it when the request is not forwarded.
    async fn api(
        &self,
        method: &str,
        path: &str,
        headers: Value,
        body: Option<&str>,
    ) -> (Value, Value) {
        let headers = headers
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), vec![v[0].as_str().unwrap().to_string()]))
            .collect();
        let req = HttpRequestData {
            url: format!("https://app.example{path}"),
            method: method.into(),
            headers,
            params: vec![("path".into(), path.trim_start_matches("/api/").into())],
            body: body.unwrap_or("").as_bytes().to_vec(),
            content_type: Some("application/json".into()),
            ..HttpRequestData::default()
        };
        let inv = Invocation::default().http_input("req", &req).sys("HttpApi");
        let (status, r) = self.invoke("HttpApi", inv.body()).await;
        assert_eq!(status, 200, "the invocation itself succeeds: {r}");
        assert_eq!(r["ReturnValue"], Value::Null);
        (r["Outputs"]["res"].clone(), r["Outputs"].clone())
    }
}

/// A Service Bus trigger invocation for a message whose body is `text`, as the host sends it.
fn sb_text(text: &str, id: &str, count: u32) -> Value {
    sb_value(&HostValue::Text(text.into()), id, count)
}

fn sb_value(message: &HostValue, id: &str, count: u32) -> Value {
    Invocation::default()
        .input("message", message)
        .binding_data("MessageId", &HostValue::Text(id.into()))
        .binding_data("DeliveryCount", &HostValue::Number(i64::from(count)))
        .binding_data(
            "EnqueuedTimeUtc",
            &HostValue::Date("2026-11-30T10:00:00Z".into()),
        )
        .sys("ServiceBusTrigger")
        .body()
}

/// A timer invocation: `TimerInfo` as a POCO.
fn timer_invocation() -> Value {
    let info =
        json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false});
    Invocation::default()
        .input("timer", &HostValue::Object(info))
        .sys("ReconcileTimer")
        .body()
}

#[test]
fn functions_mode_refuses_to_start_without_an_api_key() {
    let argv = [
        "handler",
        "functions",
        "--subscription-id",
        "s",
        "--resource-group",
        "r",
        "--location",
        "l",
        "--mongo-uri",
        "mongodb://x",
    ];
    let Some(Command::Functions(a)) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let err = a.settings().unwrap_err().to_string();
    assert!(err.contains("EDA_API_KEY"), "{err}");
}

#[tokio::test]
async fn a_plain_string_message_spawns_once_and_a_redelivery_does_not_spawn_again() {
    let h = harness("plain", &[]).await;
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("hello world", "mid-1", 1))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["Outputs"], json!({}));
    assert_eq!(r["ReturnValue"], Value::Null);
    assert!(r["Logs"][0].as_str().unwrap().contains("Started"), "{r}");

    let id = derived_id("mid-1");
    let t = h.task(&id).await;
    assert_eq!(
        (t.state, t.attempt, t.work.as_str()),
        (TaskState::Provisioning, 1, "hello world")
    );
    let name = model::naming::container_name(&id, 1);
    let spec = h.runtime.spec(&name).unwrap();
    let env: HashMap<_, _> = spec.env.iter().cloned().collect();
    assert_eq!(env["MESSAGE"], "hello world");
    assert_eq!(
        env["CALLBACK_URL"],
        format!("https://app.example/api/tasks/{id}/state")
    );
    assert_eq!(spec.secret_env[0].0, "TASK_TOKEN");

    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("hello world", "mid-1", 2))
        .await;
    assert_eq!(status, 200);
    assert!(
        r["Logs"][0].as_str().unwrap().contains("AlreadyRunning"),
        "{r}"
    );
    assert_eq!(h.runtime.creates(), 1);
    h.running.stop().await;
}

#[tokio::test]
async fn json_envelopes_are_read_as_objects_and_as_strings() {
    let h = harness("envelope", &[]).await;
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb_value(
                &HostValue::Object(json!({"id": "env-1", "work": "obj"})),
                "m-a",
                1,
            ),
        )
        .await;
    assert_eq!(status, 200);
    let text = json!({"id": "env-2", "work": "str", "max_attempts": 1}).to_string();
    let (status, _) = h
        .invoke("ServiceBusTrigger", sb_text(&text, "m-b", 1))
        .await;
    assert_eq!(status, 200);
    let a = h.task(&TaskId::parse("env-1").unwrap()).await;
    let b = h.task(&TaskId::parse("env-2").unwrap()).await;
    assert_eq!((a.work.as_str(), a.state), ("obj", TaskState::Provisioning));
    assert_eq!((b.work.as_str(), b.max_attempts), ("str", 1));

    let (status, r) = h
        .invoke("ServiceBusTrigger", json!({"Data": {}, "Metadata": {}}))
        .await;
    assert_eq!(status, 400);
    assert!(r["Logs"][0].as_str().unwrap().contains("message"));
    h.running.stop().await;
}

#[tokio::test]
async fn spawn_errors_fail_the_invocation_and_the_last_delivery_dead_letters() {
    let h = harness("dead", &[]).await;
    h.runtime.fail_every_create(Some(Fault::Rejected));
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("doomed", "m-d", 1))
        .await;
    assert_eq!(status, 500, "Service Bus must redeliver: {r}");
    assert!(r["Logs"][0]
        .as_str()
        .unwrap()
        .contains("container rejected"));
    let id = derived_id("m-d");
    assert_ne!(h.task(&id).await.state, TaskState::DeadLettered);

    let (status, _) = h
        .invoke("ServiceBusTrigger", sb_text("doomed", "m-d", 3))
        .await;
    assert_eq!(
        status, 500,
        "the last delivery still fails, so it lands in the DLQ"
    );
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::DeadLettered);
    assert!(t
        .reason
        .unwrap()
        .contains("dead-lettered after 3 deliveries"));
    h.running.stop().await;
}

#[tokio::test]
async fn the_http_api_answers_through_res_and_enqueues_through_message() {
    let h = harness("http", &[]).await;
    let key = json!({"x-api-key": ["k3y"], "Content-Type": ["application/json"]});
    let (res, outputs) = h
        .api(
            "POST",
            "/api/work",
            key.clone(),
            Some(r#"{"work": "compute 42"}"#),
        )
        .await;
    assert_eq!(res["statusCode"], 202, "{res}");
    assert!(res["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("application/json"));
    let submitted: SubmitResponse = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    let task = &submitted.tasks[0];
    assert_eq!(
        (task.state, task.work.as_str()),
        (TaskState::Pending, "compute 42")
    );
    let messages = outputs["message"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    let env: Envelope = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!((&env.id, env.work.as_str()), (&task.id, "compute 42"));

    let (res, outputs) = h
        .api("GET", "/api/tasks?state=active", key.clone(), None)
        .await;
    assert_eq!(res["statusCode"], 200);
    assert!(outputs.get("message").is_none(), "reads enqueue nothing");
    let page: TaskPage = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(page.tasks[0].id, task.id);
    assert_eq!(page.counts[&TaskState::Pending], 1);

    let (res, _) = h.api("GET", "/api/tasks", json!({}), None).await;
    assert_eq!(res["statusCode"], 401, "the API key is enforced: {res}");

    let (res, _) = h.api("GET", "/api/events", key.clone(), None).await;
    assert_eq!(res["statusCode"], 200);
    assert!(res["body"].as_str().unwrap().starts_with("retry: 5000\n"));

    // The enqueued envelope, delivered back by Service Bus, spawns the task.
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb_text(messages[0].as_str().unwrap(), "m-env", 1),
        )
        .await;
    assert_eq!(status, 200);
    let spawned = h.task(&task.id).await;
    assert_eq!(spawned.state, TaskState::Provisioning);
    // The invocation's receipt and the container's start are on the attempt's clock.
    let clock = spawned.clock(1).expect("attempt 1's clock");
    assert!(clock.at(model::Phase::Dequeued) <= clock.at(model::Phase::Asked));
    assert!(clock.at(model::Phase::Started).is_some(), "{clock:?}");

    // Prometheus reaches the series the way it reaches the API: HttpApi, behind the key.
    let (res, _) = h.api("GET", "/api/metrics", key.clone(), None).await;
    assert_eq!(res["statusCode"], 200, "{res}");
    let text = res["body"].as_str().unwrap();
    assert!(
        text.contains("eda_tasks{state=\"Provisioning\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("eda_phase_duration_seconds_count{phase=\"started\"} 1\n"));
    let (res, _) = h.api("GET", "/api/metrics", json!({}), None).await;
    assert_eq!(res["statusCode"], 401, "the same key rules: {res}");
    h.running.stop().await;
}

#[tokio::test]
async fn the_timer_settles_exits_sends_due_retries_and_samples() {
    let h = harness("timer", &[]).await;
    for (msg, id) in [("ok", "m-ok"), ("bad", "m-bad"), ("busy", "m-busy")] {
        let (status, _) = h.invoke("ServiceBusTrigger", sb_text(msg, id, 1)).await;
        assert_eq!(status, 200);
    }
    let (ok, bad, busy) = (
        derived_id("m-ok"),
        derived_id("m-bad"),
        derived_id("m-busy"),
    );
    h.runtime.exit(&model::naming::container_name(&ok, 1), 0);
    h.runtime.exit(&model::naming::container_name(&bad, 1), 3);

    let timer = timer_invocation();
    let (status, r) = h.invoke("ReconcileTimer", timer.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["Logs"][0].as_str().unwrap().starts_with("reconciled"));
    assert_eq!(h.task(&ok).await.state, TaskState::Done);
    let retried = h.task(&bad).await;
    assert_eq!((retried.state, retried.attempt), (TaskState::Pending, 1));
    let messages = r["Outputs"]["message"]
        .as_array()
        .expect("the retry is sent");
    assert_eq!(messages.len(), 1, "sent once: {messages:?}");
    let env: Envelope = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!(env.id, bad);
    assert_eq!(h.running.app.tasks().metrics(&busy).await.unwrap().len(), 1);
    let logs = h.running.app.tasks().logs(&ok).await.unwrap().unwrap();
    assert!(logs.text.contains("output of eda-"));

    let (status, r) = h.invoke("ReconcileTimer", timer).await;
    assert_eq!(status, 200);
    assert_eq!(
        h.running.app.tasks().metrics(&busy).await.unwrap().len(),
        1,
        "a point already stored is not stored twice"
    );
    assert_eq!(
        r["Outputs"]["message"].as_array().map(Vec::len),
        None,
        "a due retry is sent once, not on every tick: {r}"
    );
    h.running.stop().await;
}

/// A task stored by `POST /api/work` whose Service Bus message the host never sent: the timer
/// sends its envelope once it is older than the grace period; a fresh task and one waiting for
/// a scheduled retry are left alone, and a re-sent task is not sent again within the grace.
#[tokio::test]
async fn the_timer_resends_old_pending_tasks_that_never_spawned() {
    let h = harness("resend", &["--pending-resend-secs", "120"]).await;
    let now = handler::clock::now_ms();
    let resources = model::Resources {
        cpu: 1.0,
        memory_mb: 256,
    };
    let task = |id: &str, age_ms: i64| {
        let id = TaskId::parse(id).unwrap();
        model::Task::new(id, format!("work {age_ms}"), resources, 3, 60, now - age_ms)
    };
    let old = task("old", 10 * 60_000);
    let fresh = task("fresh", 1_000);
    let mut scheduled = task("scheduled", 10 * 60_000);
    scheduled.retry_at_ms = Some(now + 3_600_000);
    let store = &h.running.app.tasks();
    store
        .insert(&[old.clone(), fresh, scheduled])
        .await
        .unwrap();

    let timer = timer_invocation();
    let (status, r) = h.invoke("ReconcileTimer", timer.clone()).await;
    assert_eq!(status, 200, "{r}");
    let messages = r["Outputs"]["message"].as_array().expect("a message: {r}");
    assert_eq!(messages.len(), 1, "{messages:?}");
    let env: Envelope = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
    assert_eq!(
        (env.id.as_str(), env.work.as_str(), env.max_attempts),
        ("old", old.work.as_str(), Some(3))
    );
    assert!(
        r["Logs"][0]
            .as_str()
            .unwrap()
            .contains("1 waiting tasks sent"),
        "{r}"
    );

    let (status, r) = h.invoke("ReconcileTimer", timer).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["Outputs"]["message"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
        0,
        "not again within the grace period: {r}"
    );

    // The re-sent envelope spawns the task like the original would have.
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb_text(messages[0].as_str().unwrap(), "m-resent", 1),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.task(&old.id).await.state, TaskState::Provisioning);
    assert_eq!(h.runtime.creates(), 1);
    h.running.stop().await;
}

/// The global cap (`--concurrency`) is counted in the store: at the cap a message's task stays
/// `Pending`, the message is completed (200, no delivery spent), and the timer sends it again
/// only when there is room, once.
#[tokio::test]
async fn at_the_global_cap_a_message_waits_pending_and_the_timer_sends_it_when_there_is_room() {
    let h = harness("cap", &["--concurrency", "1", "--pending-resend-secs", "1"]).await;
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("first", "m-cap-1", 1))
        .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("second", "m-cap-2", 1))
        .await;
    assert_eq!(status, 200, "completed, not failed: {r}");
    assert!(
        r["Logs"][0]
            .as_str()
            .unwrap()
            .contains("the global cap is 1"),
        "{r}"
    );
    let (first, second) = (derived_id("m-cap-1"), derived_id("m-cap-2"));
    let waiting = h.task(&second).await;
    assert_eq!((waiting.state, waiting.attempt), (TaskState::Pending, 0));
    assert_eq!(h.runtime.creates(), 1, "one container at cap 1");

    // While the first runs there is no room: the timer sends nothing, however often it ticks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let (status, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
        assert_eq!(status, 200, "{r}");
        assert!(r["Outputs"].get("message").is_none(), "no room: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The first ends: the next tick has room for one and sends the waiting task, once.
    h.runtime.exit(&model::naming::container_name(&first, 1), 0);
    let (_, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
    let sent = r["Outputs"]["message"]
        .as_array()
        .expect("sent when room frees: {r}")
        .clone();
    assert_eq!(sent.len(), 1, "{r}");
    let env: Envelope = serde_json::from_str(sent[0].as_str().unwrap()).unwrap();
    assert_eq!(
        (env.id.clone(), env.work.as_str()),
        (second.clone(), "second")
    );
    let (_, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
    assert!(r["Outputs"].get("message").is_none(), "sent once: {r}");
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb_text(sent[0].as_str().unwrap(), "m-cap-3", 1),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.task(&second).await.state, TaskState::Provisioning);
    h.running.stop().await;
}

/// A transient runtime error (ARM throttling) on the LAST allowed delivery neither fails the
/// invocation nor dead-letters: the task waits `Pending` with a backoff, the attempt that got no
/// container is not counted, and the timer sends it again once the backoff is over.
#[tokio::test]
async fn transient_runtime_errors_defer_the_spawn_instead_of_dead_lettering() {
    let h = harness("transient", &["--retry-backoff-ms", "1000"]).await;
    h.runtime.fail_every_create(Some(Fault::Throttled(None)));
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("patient", "m-t", 3))
        .await;
    assert_eq!(status, 200, "not a failed delivery: {r}");
    assert!(r["Logs"][0].as_str().unwrap().contains("deferred"), "{r}");
    let id = derived_id("m-t");
    let t = h.task(&id).await;
    assert_eq!((t.state, t.attempt), (TaskState::Pending, 0), "{t:?}");
    assert!(t.retry_at_ms.is_some());
    assert!(t.reason.as_deref().unwrap().contains("throttled"), "{t:?}");
    assert_eq!(t.billed_seconds, 0, "nothing ran, nothing billed");

    h.runtime.fail_every_create(None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sent = loop {
        let (_, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
        if let Some(m) = r["Outputs"]["message"].as_array() {
            break m.clone();
        }
        assert!(std::time::Instant::now() < deadline, "never sent again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb_text(sent[0].as_str().unwrap(), "m-t2", 1),
        )
        .await;
    assert_eq!(status, 200);
    let t = h.task(&id).await;
    assert_eq!((t.state, t.attempt), (TaskState::Provisioning, 1));
    h.running.stop().await;
}

/// The deferral waits at least what ARM asked for (`Retry-After`, kept by the ACI runtime as
/// `RuntimeError::Throttled::retry_after`) when that is longer than the policy's backoff; the
/// message is completed all the same, whatever its delivery count.
#[tokio::test]
async fn a_throttled_spawn_is_deferred_by_the_retry_after_arm_gave() {
    let h = harness("throttled", &["--retry-backoff-ms", "1000"]).await;
    h.runtime.fail_every_create(Some(Fault::Throttled(Some(
        std::time::Duration::from_secs(45),
    ))));
    let before = handler::clock::now_ms();
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("slow down", "m-429", 3))
        .await;
    assert_eq!(status, 200, "completed, not a failed delivery: {r}");
    assert!(
        r["Logs"][0].as_str().unwrap().contains("deferred 45 s"),
        "{r}"
    );
    let t = h.task(&derived_id("m-429")).await;
    assert_eq!((t.state, t.attempt), (TaskState::Pending, 0), "{t:?}");
    let wait = t.retry_at_ms.unwrap() - before;
    assert!(
        (45_000..50_000).contains(&wait),
        "due after Retry-After: {wait} ms"
    );
    assert_eq!(h.runtime.creates(), 0);
    h.running.stop().await;
}

/// Until the store connects, the server still answers: HttpApi with a 503 that says which
/// store and why, the timer with a failed invocation; nothing is half-done.
#[tokio::test]
async fn before_the_store_connects_invocations_get_a_clear_error() {
    use handler::functions::lazy::{Connect, LazyStore};
    let a = args(&[]);
    let connect: Connect = Box::new(|| {
        Box::pin(async { Err("server selection timed out: 127.0.0.1:9 refused".to_string()) })
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let store = LazyStore::spawn(connect, stop.clone());
    let runtime = Arc::new(FakeRuntime::default());
    let app = functions::assemble(a.settings().unwrap(), store.clone(), runtime.clone());
    let gate = functions::Gate(Some(store));
    let running = functions::start_gated(
        app,
        gate,
        "127.0.0.1:0".parse().unwrap(),
        None,
        std::time::Duration::ZERO,
    )
    .unwrap();
    let dir = tempdir::Dir::new("notready");
    let h = Harness {
        running,
        runtime,
        http: reqwest::Client::new(),
        _dir: dir,
    };
    let key = json!({"x-api-key": ["k3y"]});
    let (res, outputs) = h
        .api("POST", "/api/work", key, Some(r#"{"work": "x"}"#))
        .await;
    assert_eq!(res["statusCode"], 503, "{res}");
    assert_eq!(res["headers"]["Retry-After"], "5");
    let err: model::ApiError = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(err.code, "store_unavailable");
    assert!(
        err.message.contains("not reachable yet") && err.message.contains("127.0.0.1:9"),
        "{err:?}"
    );
    assert!(outputs.get("message").is_none(), "nothing queued");
    let (status, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
    assert_eq!(status, 503, "{r}");
    assert_eq!(h.runtime.creates(), 0);
    stop.cancel();
    h.running.stop().await;
}

/// Racing deliveries all pass the first look at the cap (nothing is active yet); the
/// claim-then-check makes all but one give their task back before any container exists.
#[tokio::test]
async fn racing_deliveries_at_the_cap_create_no_more_containers_than_the_cap() {
    let h = harness("race", &["--concurrency", "1"]).await;
    let calls = (0..8).map(|i| {
        let body = sb_text(&format!("racer {i}"), &format!("m-race-{i}"), 1);
        h.invoke("ServiceBusTrigger", body)
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(h.runtime.creates() <= 1, "more containers than the cap");
    let mut pending = 0;
    for i in 0..8 {
        let t = h.task(&derived_id(&format!("m-race-{i}"))).await;
        match t.state {
            TaskState::Pending => {
                pending += 1;
                assert_eq!(t.attempt, 0, "{t:?}");
            }
            TaskState::Provisioning => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(pending >= 7, "{pending} pending");
    h.running.stop().await;
}

/// A Service Bus delivery that arrives while the store is still connecting waits for it (up to
/// 20 s) instead of failing, so a short start-up costs the message no delivery.
#[tokio::test]
async fn a_delivery_during_start_up_waits_for_the_store_instead_of_failing() {
    use handler::functions::lazy::{Connect, LazyStore};
    use std::sync::atomic::{AtomicU32, Ordering};
    let dir = tempdir::Dir::new("startup");
    let db = dir.0.join("eda.db");
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let connect: Connect = Box::new(move || {
        let n = t.fetch_add(1, Ordering::SeqCst);
        let db = db.clone();
        Box::pin(async move {
            if n < 2 {
                return Err("connection refused".to_string());
            }
            let s: Arc<dyn handler::store::TaskStore> = Arc::new(SqliteStore::open(&db).unwrap());
            Ok(s)
        })
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let store = LazyStore::spawn(connect, stop.clone());
    assert!(!store.is_ready());
    let a = args(&[]);
    let runtime = Arc::new(FakeRuntime::default());
    let app = functions::assemble(a.settings().unwrap(), store.clone(), runtime.clone());
    let running = functions::start_gated(
        app,
        functions::Gate(Some(store)),
        "127.0.0.1:0".parse().unwrap(),
        None,
        std::time::Duration::ZERO,
    )
    .unwrap();
    let h = Harness {
        running,
        runtime,
        http: reqwest::Client::new(),
        _dir: dir,
    };
    // Connected on the third attempt (0.5 s + 1 s of backoff): the invocation waited.
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb_text("early", "m-early", 1))
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    assert_eq!(
        h.task(&derived_id("m-early")).await.state,
        TaskState::Provisioning
    );
    stop.cancel();
    h.running.stop().await;
}

/// Retention in Functions mode: each `ReconcileTimer` invocation removes the tasks that finished
/// longer ago than `--retention-secs`, with their logs, and says so in its log line; a task
/// still running stays.
#[tokio::test]
async fn the_timer_purges_finished_tasks_older_than_the_retention() {
    let h = harness("retention", &["--retention-secs", "1"]).await;
    for (msg, id) in [("ok", "m-old"), ("busy", "m-running")] {
        let (status, _) = h.invoke("ServiceBusTrigger", sb_text(msg, id, 1)).await;
        assert_eq!(status, 200);
    }
    let (old, running) = (derived_id("m-old"), derived_id("m-running"));
    h.runtime.exit(&model::naming::container_name(&old, 1), 0);
    let (status, _) = h.invoke("ReconcileTimer", timer_invocation()).await;
    assert_eq!(status, 200);
    assert_eq!(h.task(&old).await.state, TaskState::Done);
    assert!(h.running.app.tasks().logs(&old).await.unwrap().is_some());
    let line = e2e::eventually(
        std::time::Duration::from_secs(20),
        "a timer invocation to remove the old task",
        || async {
            let (status, r) = h.invoke("ReconcileTimer", timer_invocation()).await;
            assert_eq!(status, 200, "{r}");
            let line = r["Logs"][0].as_str().unwrap().to_string();
            line.contains("1 old finished tasks removed")
                .then_some(line)
        },
    )
    .await;
    assert!(line.starts_with("reconciled"), "{line}");
    let tasks = h.running.app.tasks();
    assert!(tasks.get(&old).await.unwrap().is_none(), "the task is gone");
    assert!(tasks.logs(&old).await.unwrap().is_none(), "its logs too");
    assert!(
        tasks.metrics(&old).await.unwrap().is_empty(),
        "its metrics too"
    );
    assert!(
        !h.task(&running).await.state.is_terminal(),
        "a running task stays"
    );
    h.running.stop().await;
}
