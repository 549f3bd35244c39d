//! The custom-handler server, running on port 0, fed the invocation payloads the Functions host
//! sends (Service Bus trigger with a JSON envelope and with a plain string, the HTTP API through
//! the wrapper, the timer) over real HTTP; each answer is checked field by field.
//!
//! The app is the real one (SQLite store, the real spawn, API and reconcile code) with a small
//! in-memory container runtime, since the ACI runtime has its own tests against an ARM stand-in.

use async_trait::async_trait;
use clap::Parser;
use handler::config::{Cli, Command, FunctionsArgs};
use handler::functions::{self, Running};
use handler::runtime::{
    ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase, RuntimeError,
};
use handler::spawn::derived_id;
use handler::store::sqlite::SqliteStore;
use model::{Envelope, Logs, MetricSample, SubmitResponse, TaskId, TaskPage, TaskState};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One container the fake runtime holds.
#[derive(Clone)]
struct Box_ {
    spec: ContainerSpec,
    phase: Phase,
    exit: Option<i64>,
}

/// Containers in memory; `reject` makes every create fail permanently.
#[derive(Default)]
struct FakeRuntime {
    boxes: Mutex<HashMap<String, Box_>>,
    creates: Mutex<u32>,
    reject: Mutex<bool>,
}

impl FakeRuntime {
    fn finish(&self, name: &str, code: i64) {
        let mut b = self.boxes.lock().unwrap();
        let c = b.get_mut(name).expect("container exists");
        c.phase = Phase::Exited;
        c.exit = Some(code);
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn kind(&self) -> &'static str {
        "fake"
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        if *self.reject.lock().unwrap() {
            return Err(RuntimeError::Rejected("quota exceeded".into()));
        }
        let mut b = self.boxes.lock().unwrap();
        if b.contains_key(&spec.name) {
            return Ok(Created::AlreadyExisted);
        }
        *self.creates.lock().unwrap() += 1;
        b.insert(
            spec.name.clone(),
            Box_ {
                spec: spec.clone(),
                phase: Phase::Running,
                exit: None,
            },
        );
        Ok(Created::New)
    }
    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        Ok(self
            .boxes
            .lock()
            .unwrap()
            .get(name)
            .map(|b| ContainerStatus {
                phase: b.phase,
                exit_code: b.exit,
                oom_killed: false,
                detail: None,
            }))
    }
    async fn kill(&self, name: &str) -> Result<(), RuntimeError> {
        if let Some(b) = self.boxes.lock().unwrap().get_mut(name) {
            b.phase = Phase::Exited;
            b.exit.get_or_insert(137);
        }
        Ok(())
    }
    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.boxes.lock().unwrap().remove(name);
        Ok(())
    }
    async fn logs(&self, name: &str, _max: usize) -> Result<Logs, RuntimeError> {
        Ok(Logs {
            text: format!("output of {name}\n"),
            truncated: false,
        })
    }
    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError> {
        let running = self
            .boxes
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|b| b.phase == Phase::Running);
        Ok(running.then_some(MetricSample {
            at_ms: 1_000,
            cpu_percent: 12.5,
            memory_bytes: 4096,
        }))
    }
    async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.boxes.lock().unwrap().keys().cloned().collect())
    }
}

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
        self.running.app.tasks.store.get(id).await.unwrap().unwrap()
    }

    /// An HttpApi invocation as the host sends it when the request is not forwarded.
    async fn api(
        &self,
        method: &str,
        path: &str,
        headers: Value,
        body: Option<&str>,
    ) -> (Value, Value) {
        let (status, r) = self
            .invoke(
                "HttpApi",
                json!({"Data": {"req": {
                    "Url": format!("https://app.example{path}"),
                    "Method": method,
                    "Query": {},
                    "Headers": headers,
                    "Params": {"path": path.trim_start_matches("/api/")},
                    "Body": body,
                }}, "Metadata": {"sys": {"MethodName": "HttpApi"}}}),
            )
            .await;
        assert_eq!(status, 200, "the invocation itself succeeds: {r}");
        assert_eq!(r["ReturnValue"], Value::Null);
        (r["Outputs"]["res"].clone(), r["Outputs"].clone())
    }
}

fn sb(message: Value, id: &str, count: u32) -> Value {
    json!({"Data": {"message": message},
           "Metadata": {"MessageId": id, "DeliveryCount": count, "EnqueuedTimeUtc": "2026-11-30T10:00:00Z"}})
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
        .invoke("ServiceBusTrigger", sb(json!("hello world"), "mid-1", 1))
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
    let spec = h.runtime.boxes.lock().unwrap()[&name].spec.clone();
    let env: HashMap<_, _> = spec.env.iter().cloned().collect();
    assert_eq!(env["MESSAGE"], "hello world");
    assert_eq!(
        env["CALLBACK_URL"],
        format!("https://app.example/api/tasks/{id}/state")
    );
    assert_eq!(spec.secret_env[0].0, "TASK_TOKEN");

    let (status, r) = h
        .invoke("ServiceBusTrigger", sb(json!("hello world"), "mid-1", 2))
        .await;
    assert_eq!(status, 200);
    assert!(
        r["Logs"][0].as_str().unwrap().contains("AlreadyRunning"),
        "{r}"
    );
    assert_eq!(*h.runtime.creates.lock().unwrap(), 1);
    h.running.stop().await;
}

#[tokio::test]
async fn json_envelopes_are_read_as_objects_and_as_strings() {
    let h = harness("envelope", &[]).await;
    let (status, _) = h
        .invoke(
            "ServiceBusTrigger",
            sb(json!({"id": "env-1", "work": "obj"}), "m-a", 1),
        )
        .await;
    assert_eq!(status, 200);
    let text = json!({"id": "env-2", "work": "str", "max_attempts": 1}).to_string();
    let (status, _) = h
        .invoke("ServiceBusTrigger", sb(json!(text), "m-b", 1))
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
    *h.runtime.reject.lock().unwrap() = true;
    let (status, r) = h
        .invoke("ServiceBusTrigger", sb(json!("doomed"), "m-d", 1))
        .await;
    assert_eq!(status, 500, "Service Bus must redeliver: {r}");
    assert!(r["Logs"][0].as_str().unwrap().contains("quota exceeded"));
    let id = derived_id("m-d");
    assert_ne!(h.task(&id).await.state, TaskState::DeadLettered);

    let (status, _) = h
        .invoke("ServiceBusTrigger", sb(json!("doomed"), "m-d", 3))
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
        .invoke("ServiceBusTrigger", sb(messages[0].clone(), "m-env", 1))
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.task(&task.id).await.state, TaskState::Provisioning);
    h.running.stop().await;
}

#[tokio::test]
async fn the_timer_settles_exits_sends_due_retries_and_samples() {
    let h = harness("timer", &[]).await;
    for (msg, id) in [("ok", "m-ok"), ("bad", "m-bad"), ("busy", "m-busy")] {
        let (status, _) = h.invoke("ServiceBusTrigger", sb(json!(msg), id, 1)).await;
        assert_eq!(status, 200);
    }
    let (ok, bad, busy) = (
        derived_id("m-ok"),
        derived_id("m-bad"),
        derived_id("m-busy"),
    );
    h.runtime.finish(&model::naming::container_name(&ok, 1), 0);
    h.runtime.finish(&model::naming::container_name(&bad, 1), 3);

    let timer = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true},
        "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {}});
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
    assert_eq!(
        h.running
            .app
            .tasks
            .store
            .metrics(&busy)
            .await
            .unwrap()
            .len(),
        1
    );
    let logs = h.running.app.tasks.store.logs(&ok).await.unwrap().unwrap();
    assert!(logs.text.contains("output of eda-"));

    let (status, r) = h.invoke("ReconcileTimer", timer).await;
    assert_eq!(status, 200);
    assert_eq!(
        h.running
            .app
            .tasks
            .store
            .metrics(&busy)
            .await
            .unwrap()
            .len(),
        1,
        "a point already stored is not stored twice"
    );
    assert_eq!(
        r["Outputs"]["message"].as_array().map(Vec::len),
        Some(1),
        "still due: {r}"
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
    let store = &h.running.app.tasks.store;
    store
        .insert(&[old.clone(), fresh, scheduled])
        .await
        .unwrap();

    let timer = json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}});
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
        r["Logs"][0].as_str().unwrap().contains("1 stalled re-sent"),
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
        .invoke("ServiceBusTrigger", sb(messages[0].clone(), "m-resent", 1))
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.task(&old.id).await.state, TaskState::Provisioning);
    assert_eq!(*h.runtime.creates.lock().unwrap(), 1);
    h.running.stop().await;
}
