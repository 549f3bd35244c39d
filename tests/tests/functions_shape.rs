//! Issue 12 on the Azure path: delay, concurrency keys, priority, backpressure and the run's
//! context, through the custom-handler server on port 0, fed the invocations the Functions host
//! sends (built by the host harness's port of azure-functions-host's encoding,
//! `e2e::host::wire`, with the Service Bus metadata the extension puts in the binding data).
//!
//! The app is the real one (the SQLite store, the real admission, spawn, API and reconcile
//! code) with the in-memory container runtime, except for the context test, which runs the ACI
//! runtime against the ARM stand-in (`e2e::arm`) and reads the container group PUT body it
//! recorded. Service Bus cannot take a scheduled message from a custom handler (docs/AZURE.md,
//! "Priority, delay, keys and backpressure"), so every "later" here is the `ReconcileTimer`
//! sending the task through its output binding when it is due and there is room. Sources: the
//! host hands output items to the extension as bodies (azure-functions-host
//! `src/WebJobs.Script/Binding/ExtensionBinding.cs`); the extension builds a message with the
//! body only (azure-sdk-for-net `sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/
//! Bindings/StringToMessageConverter.cs`, `UserTypeToMessageConverter.cs`); the converter that
//! reads `ScheduledEnqueueTime` needs the internal `ServiceBusAttribute.IncludeMetadata`, which
//! function.json cannot set (azure-webjobs-sdk `src/Microsoft.Azure.WebJobs.Host/Bindings/
//! AttributeCloner.cs`); Azure/azure-sdk-for-net#21884 was closed as not actionable.

#[allow(dead_code)]
#[path = "../../xtask/src/appzip.rs"]
mod appzip;

use clap::Parser;
use e2e::host::wire::{self, HostValue, HttpRequestData, Invocation};
use handler::config::{Cli, Command, FunctionsArgs};
use handler::functions::{self, Running};
use handler::runtime::fake::FakeRuntime;
use handler::runtime::ContainerRuntime;
use handler::store::sqlite::SqliteStore;
use model::naming::container_name;
use model::{Envelope, SubmitResponse, Task, TaskId, TaskState};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn args(extra: &[&str]) -> FunctionsArgs {
    let mut argv = vec![
        "handler",
        "functions",
        "--subscription-id",
        "sub-1",
        "--resource-group",
        "rg-1",
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
        // First deliveries are never re-sent here: what the timer sends is what it must send.
        "--pending-resend-secs",
        "0",
    ];
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

/// The custom handler on port 0 over a SQLite file in a temp dir and `runtime`.
struct Harness {
    running: Running,
    http: reqwest::Client,
    _dir: e2e::TempDir,
}

async fn harness(tag: &str, extra: &[&str], runtime: Arc<dyn ContainerRuntime>) -> Harness {
    let dir = e2e::TempDir::new(tag);
    let store = Arc::new(SqliteStore::open(&dir.0.join("eda.db")).unwrap());
    harness_on(dir, store, extra, runtime)
}

/// [`harness`] over `store`.
fn harness_on(
    dir: e2e::TempDir,
    store: Arc<dyn handler::store::TaskStore>,
    extra: &[&str],
    runtime: Arc<dyn ContainerRuntime>,
) -> Harness {
    let a = args(extra);
    let app = functions::assemble(a.settings().unwrap(), store, runtime);
    let resend = Duration::from_secs(a.azure.pending_resend_secs);
    let running = functions::start(app, "127.0.0.1:0".parse().unwrap(), None, resend).unwrap();
    Harness {
        running,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Harness {
    /// POSTs an invocation to `/{function}`; the status and the JSON answer.
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

    async fn task(&self, id: &TaskId) -> Task {
        self.running.app.tasks().get(id).await.unwrap().unwrap()
    }

    /// `POST /api/work` through `HttpApi` as the host sends it; the stored tasks and the
    /// envelopes put in `Outputs.message`.
    async fn submit(&self, body: Value) -> (Value, Vec<String>) {
        let req = HttpRequestData {
            url: "https://app.example/api/work".into(),
            method: "POST".into(),
            headers: vec![
                ("x-api-key".into(), vec!["k3y".into()]),
                ("Content-Type".into(), vec!["application/json".into()]),
            ],
            params: vec![("path".into(), "work".into())],
            body: body.to_string().into_bytes(),
            content_type: Some("application/json".into()),
            ..HttpRequestData::default()
        };
        let inv = Invocation::default().http_input("req", &req).sys("HttpApi");
        let (status, r) = self.invoke("HttpApi", inv.body()).await;
        assert_eq!(status, 200, "{r}");
        let res = r["Outputs"]["res"].clone();
        let sent = messages(&r, "message");
        (res, sent)
    }

    /// One `ServiceBusTrigger` invocation for a message with body `text`; the status and the
    /// log line.
    async fn deliver(&self, text: &str, message_id: &str, count: u32) -> (u16, String) {
        let (status, r) = self
            .invoke("ServiceBusTrigger", sb(text, message_id, count))
            .await;
        (
            status,
            r["Logs"][0].as_str().unwrap_or_default().to_string(),
        )
    }

    /// One `ReconcileTimer` invocation; the envelopes it sent.
    async fn tick(&self) -> Vec<Envelope> {
        let info =
            json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false});
        let inv = Invocation::default()
            .input("timer", &HostValue::Object(info))
            .sys("ReconcileTimer");
        let (status, r) = self.invoke("ReconcileTimer", inv.body()).await;
        assert_eq!(status, 200, "{r}");
        messages(&r, "message")
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect()
    }
}

/// The messages of a Service Bus output binding in an answer.
fn messages(r: &Value, binding: &str) -> Vec<String> {
    r["Outputs"][binding]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A Service Bus trigger invocation as the host sends it (`dataType: string`), with the
/// binding data the extension provides, the enqueue time under both of its names.
fn sb(text: &str, message_id: &str, count: u32) -> Value {
    sb_enqueued(text, message_id, count, &wire::iso_now())
}

fn sb_enqueued(text: &str, message_id: &str, count: u32, enqueued: &str) -> Value {
    Invocation::default()
        .input("message", &HostValue::Text(text.into()))
        .binding_data("MessageId", &HostValue::Text(message_id.into()))
        .binding_data("DeliveryCount", &HostValue::Number(i64::from(count)))
        .binding_data("EnqueuedTimeUtc", &wire::host_datetime(enqueued))
        .binding_data("EnqueuedTime", &wire::host_datetime_offset(enqueued))
        .sys("ServiceBusTrigger")
        .body()
}

/// A producer's envelope with the shaping fields.
fn envelope(id: &str, key: Option<&str>, priority: i32) -> String {
    let mut e = json!({"id": id, "work": format!("work of {id}"), "priority": priority});
    if let Some(k) = key {
        e["key"] = json!(k);
    }
    e.to_string()
}

fn now_ms() -> i64 {
    handler::clock::now_ms()
}

fn unique(tag: &str) -> String {
    format!("{tag}-{:x}", now_ms())
}

/// A task submitted with `delay_secs` is stored but not sent; an early delivery of its message
/// (a producer's, or a duplicate) leaves it `Pending` and starts nothing; the timer sends it
/// only once it is due, and then it starts, never before its `not_before`.
#[tokio::test]
async fn a_delayed_task_is_not_sent_or_started_before_its_time_and_the_timer_starts_it_after() {
    let runtime = Arc::new(FakeRuntime::default());
    let h = harness("delay", &[], runtime.clone()).await;
    let (res, sent) = h.submit(json!({"work": "later", "delay_secs": 2})).await;
    assert_eq!(res["statusCode"], 202, "{res}");
    assert!(sent.is_empty(), "not sent before its time: {sent:?}");
    let submitted: SubmitResponse = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    let id = submitted.tasks[0].id.clone();
    let not_before = h
        .task(&id)
        .await
        .not_before_ms
        .expect("not_before_ms stored");
    assert!(not_before >= now_ms() + 1_000, "about 2 s ahead");

    // Its envelope arrives early anyway: nothing starts, the message is completed.
    let early =
        json!({"id": id.as_str(), "work": "later", "not_before_ms": not_before}).to_string();
    let (status, line) = h.deliver(&early, &unique("early"), 1).await;
    assert_eq!(status, 200, "{line}");
    assert!(line.contains("not due"), "{line}");
    assert_eq!(h.task(&id).await.state, TaskState::Pending);
    assert_eq!(runtime.creates(), 0);

    // The timer sends nothing before the time, then the task, once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let env = loop {
        let before = now_ms();
        let sent = h.tick().await;
        if let Some(env) = sent.into_iter().find(|e| e.id == id) {
            assert!(now_ms() >= not_before, "sent before its time");
            break env;
        }
        assert!(
            before < not_before + 3_000,
            "due since 3 s and still not sent"
        );
        assert!(Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(env.not_before_ms, Some(not_before));
    assert!(h.tick().await.is_empty(), "sent once");
    let (status, line) = h
        .deliver(&serde_json::to_string(&env).unwrap(), &unique("due"), 1)
        .await;
    assert_eq!(status, 200, "{line}");
    let t = h.task(&id).await;
    assert_eq!(t.state, TaskState::Provisioning, "{line}");
    let asked = t.provisioned_at_ms.unwrap();
    assert!(
        asked >= not_before,
        "started {} ms early",
        not_before - asked
    );
    assert_eq!(runtime.creates(), 1);
    h.running.stop().await;
}

/// `--key-cap 1`: the key's second task is held `Pending` (its message completed, the reason
/// shown) while the first runs, another key's task starts meanwhile, and the timer sends the
/// held one as soon as the first is gone, once.
#[tokio::test]
async fn a_key_at_its_cap_holds_the_next_task_and_the_timer_sends_it_when_a_slot_frees() {
    let runtime = Arc::new(FakeRuntime::default());
    let h = harness("keycap", &["--key-cap", "1"], runtime.clone()).await;
    key_cap_holds(h, runtime).await;
}

/// The same on the MongoDB store Azure uses (Cosmos DB for MongoDB; here a server in
/// `EDA_TEST_MONGO_URI` or the wire-protocol stand-in): the key's running tasks are counted
/// with `active_with_key` on the `{key, state}` index and the hold is a compare-and-set there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_its_cap_holds_on_the_mongo_store_too() {
    let Some((_standin, uri)) = e2e::mongo::server() else {
        e2e::need(
            "a MongoDB server (EDA_TEST_MONGO_URI, or the stand-in; tests/mongo-standin)",
            false,
        );
        return;
    };
    let db = format!("eda_shape_{:x}", now_ms());
    let store = handler::store::mongo::MongoStore::connect(&uri, &db, "tasks")
        .await
        .expect("connecting to MongoDB");
    let runtime = Arc::new(FakeRuntime::default());
    let dir = e2e::TempDir::new("keycap-mongo");
    let h = harness_on(dir, Arc::new(store), &["--key-cap", "1"], runtime.clone());
    key_cap_holds(h, runtime).await;
    handler::store::mongo::MongoStore::drop_database(&uri, &db)
        .await
        .expect("dropping the test database");
}

async fn key_cap_holds(h: Harness, runtime: Arc<FakeRuntime>) {
    let (first, second, other) = (unique("k-first"), unique("k-second"), unique("other"));
    let (status, line) = h
        .deliver(&envelope(&first, Some("tenant-a"), 0), "m-1", 1)
        .await;
    assert_eq!(status, 200, "{line}");
    let (status, line) = h
        .deliver(&envelope(&second, Some("tenant-a"), 0), "m-2", 1)
        .await;
    assert_eq!(status, 200, "completed, not failed: {line}");
    assert!(line.contains("key tenant-a"), "{line}");
    let held = h.task(&TaskId::parse(&second).unwrap()).await;
    assert_eq!((held.state, held.attempt), (TaskState::Pending, 0));
    assert!(held.reason.unwrap().contains("the key's cap is 1"));
    let (status, line) = h
        .deliver(&envelope(&other, Some("tenant-b"), 0), "m-3", 1)
        .await;
    assert_eq!(status, 200, "{line}");
    let other_task = h.task(&TaskId::parse(&other).unwrap()).await;
    assert_eq!(
        other_task.state,
        TaskState::Provisioning,
        "another key has room"
    );
    assert_eq!(runtime.creates(), 2);

    // While the first runs, the timer sends nothing of tenant-a, however often it ticks.
    for _ in 0..3 {
        assert!(h.tick().await.is_empty());
    }
    // The first ends and its container is gone: the next tick sends the held task, once.
    let first_id = TaskId::parse(&first).unwrap();
    runtime.exit(&container_name(&first_id, 1), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let sent = h.tick().await;
        if !sent.is_empty() {
            break sent;
        }
        assert!(Instant::now() < deadline, "the held task was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].id.as_str(), second);
    assert!(h.tick().await.is_empty(), "sent once");
    let (status, line) = h
        .deliver(&serde_json::to_string(&sent[0]).unwrap(), "m-4", 1)
        .await;
    assert_eq!(status, 200, "{line}");
    let t = h.task(&TaskId::parse(&second).unwrap()).await;
    assert_eq!(t.state, TaskState::Provisioning, "{line}");
    assert_eq!(runtime.creates(), 3);
    h.running.stop().await;
}

/// `--concurrency 1`, full: a low and a high priority task wait; when the slot frees, a new
/// delivery of the low one is held because the high one waits for the slot, and the timer
/// sends the high one alone.
#[tokio::test]
async fn with_the_global_cap_full_the_freed_slot_goes_to_the_higher_priority_task() {
    let runtime = Arc::new(FakeRuntime::default());
    let h = harness("priority", &["--concurrency", "1"], runtime.clone()).await;
    priority_takes_the_freed_slot(h, runtime).await;
}

/// The same on the MongoDB store (the whole-board counts and the unfinished tasks read there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_freed_slot_goes_to_the_higher_priority_task_on_the_mongo_store_too() {
    let Some((_standin, uri)) = e2e::mongo::server() else {
        e2e::need(
            "a MongoDB server (EDA_TEST_MONGO_URI, or the stand-in; tests/mongo-standin)",
            false,
        );
        return;
    };
    let db = format!("eda_prio_{:x}", now_ms());
    let store = handler::store::mongo::MongoStore::connect(&uri, &db, "tasks")
        .await
        .expect("connecting to MongoDB");
    let runtime = Arc::new(FakeRuntime::default());
    let dir = e2e::TempDir::new("priority-mongo");
    let h = harness_on(
        dir,
        Arc::new(store),
        &["--concurrency", "1"],
        runtime.clone(),
    );
    priority_takes_the_freed_slot(h, runtime).await;
    handler::store::mongo::MongoStore::drop_database(&uri, &db)
        .await
        .expect("dropping the test database");
}

async fn priority_takes_the_freed_slot(h: Harness, runtime: Arc<FakeRuntime>) {
    let (blocker, low, high) = (unique("blocker"), unique("low"), unique("high"));
    let (status, _) = h.deliver(&envelope(&blocker, None, 0), "p-1", 1).await;
    assert_eq!(status, 200);
    for (id, prio, mid) in [(&low, 0, "p-2"), (&high, 7, "p-3")] {
        let (status, line) = h.deliver(&envelope(id, None, prio), mid, 1).await;
        assert_eq!(status, 200, "{line}");
        assert!(line.contains("the global cap is 1"), "{line}");
    }
    assert!(h.tick().await.is_empty(), "no room while the blocker runs");
    let blocker_id = TaskId::parse(&blocker).unwrap();
    runtime.exit(&container_name(&blocker_id, 1), 0);
    // The blocker's container goes at the next sweep; wait for the room without sending
    // anything in between by reading the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let sent = h.tick().await;
        if !sent.is_empty() {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was sent when the slot freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<&str> = sent.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [high.as_str()],
        "the one free slot goes to the higher priority"
    );
    // Before the high one's message arrives, the low one's is delivered again: the slot is
    // kept for the higher priority.
    let (status, line) = h.deliver(&envelope(&low, None, 0), "p-4", 1).await;
    assert_eq!(status, 200, "{line}");
    assert!(line.contains("higher priority"), "{line}");
    assert_eq!(
        h.task(&TaskId::parse(&low).unwrap()).await.state,
        TaskState::Pending
    );
    let (status, line) = h
        .deliver(&serde_json::to_string(&sent[0]).unwrap(), "p-5", 1)
        .await;
    assert_eq!(status, 200, "{line}");
    assert_eq!(
        h.task(&TaskId::parse(&high).unwrap()).await.state,
        TaskState::Provisioning
    );
    assert_eq!(runtime.creates(), 2);
    h.running.stop().await;
}

/// The context of the run reaches the ACI container group: the PUT body the ARM stand-in
/// recorded has the task's size and image and every context variable, `ENQUEUED_AT` from the
/// Service Bus metadata and the token only as a `secureValue`.
#[tokio::test]
async fn the_context_env_reaches_the_aci_container_group_spec() {
    let arm = e2e::arm::stand_in(3600).await;
    let runtime = Arc::new(e2e::arm::runtime(&arm));
    let image = "myacr.azurecr.io/tools:2";
    let h = harness(
        "context",
        &[
            "--allowed-image",
            image,
            "--max-cpu",
            "4",
            "--max-memory-mb",
            "8192",
        ],
        runtime,
    )
    .await;
    let id = unique("ctx");
    let env = json!({
        "id": id, "work": "echo hi", "priority": 3, "key": "tenant-a",
        "labels": {"team": "blue", "run_kind": "nightly"},
        "image": image, "cpu": 2.0, "memory_mb": 3072,
    })
    .to_string();
    let (status, line) = h
        .invoke(
            "ServiceBusTrigger",
            sb_enqueued(&env, "msg-ctx", 2, "2026-11-30T10:00:00Z"),
        )
        .await;
    assert_eq!(status, 200, "{line}");
    let task_id = TaskId::parse(&id).unwrap();
    let name = container_name(&task_id, 1);
    let put = arm
        .world
        .lock()
        .unwrap()
        .seen
        .iter()
        .find(|s| s.method == "PUT" && s.path.ends_with(&format!("/containerGroups/{name}")))
        .map(|s| s.body.clone())
        .expect("a container group PUT");
    let c = &put["properties"]["containers"][0]["properties"];
    assert_eq!(c["image"], image);
    assert_eq!(c["resources"]["requests"]["cpu"], 2.0);
    assert_eq!(c["resources"]["requests"]["memoryInGB"], 3.0);
    let vars: BTreeMap<String, Value> = c["environmentVariables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let plain = |k: &str| {
        vars.get(k)
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("{k} missing in {vars:?}"))
            .to_string()
    };
    let want: HashMap<&str, String> = [
        ("TASK_ID", id.clone()),
        ("ATTEMPT", "1".into()),
        ("MAX_ATTEMPTS", "3".into()),
        ("MESSAGE_ID", "msg-ctx".into()),
        ("ENQUEUED_AT", "2026-11-30T10:00:00.000Z".into()),
        ("DELIVERY_COUNT", "2".into()),
        ("KEY", "tenant-a".into()),
        ("PRIORITY", "3".into()),
        ("LABEL_TEAM", "blue".into()),
        ("LABEL_RUN_KIND", "nightly".into()),
        ("MESSAGE", "echo hi".into()),
    ]
    .into_iter()
    .collect();
    for (k, v) in &want {
        assert_eq!(&plain(k), v, "{k}");
    }
    let token = &vars["TASK_TOKEN"];
    assert!(token["secureValue"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        token.get("value").is_none_or(Value::is_null),
        "the token only as a secureValue"
    );
    h.running.stop().await;
}

/// `--max-queued 1` with one task waiting: `POST /api/work` through `HttpApi` answers 429 with
/// `Retry-After` and sends nothing, and a producer's plain message is refused with the reason
/// on every delivery, nothing stored, until Service Bus (the host harness's queue, with the
/// peek-lock and `MaxDeliveryCount` rules of `e2e::host::bus`) moves it to the dead-letter
/// queue.
#[tokio::test]
async fn over_the_queue_cap_the_api_answers_429_and_a_foreign_message_is_dead_lettered() {
    let runtime = Arc::new(FakeRuntime::default());
    let h = harness("backpressure", &["--max-queued", "1"], runtime.clone()).await;
    let (res, sent) = h.submit(json!({"work": "waits", "delay_secs": 600})).await;
    assert_eq!(res["statusCode"], 202, "{res}");
    assert!(sent.is_empty());
    let (res, sent) = h.submit(json!({"work": "one too many"})).await;
    assert_eq!(res["statusCode"], 429, "{res}");
    let retry_after = res["headers"]["retry-after"]
        .as_str()
        .or_else(|| res["headers"]["Retry-After"].as_str())
        .unwrap_or_else(|| panic!("no Retry-After: {res}"));
    assert!(retry_after.parse::<u64>().unwrap() > 0);
    assert!(
        res["body"].as_str().unwrap().contains("max_queued"),
        "{res}"
    );
    assert!(sent.is_empty(), "nothing sent for a refused batch");

    let queue = e2e::host::bus::Queue::new("work", 3);
    let message_id = unique("foreign");
    queue.send(Some(message_id.clone()), b"a producer's work".to_vec());
    let mut answers = Vec::new();
    while queue.dead_letters().is_empty() {
        assert!(
            answers.len() < 3,
            "more deliveries than MaxDeliveryCount: {answers:?}"
        );
        let (token, m) = queue.receive().await;
        let body = String::from_utf8(m.body.clone()).unwrap();
        let (status, line) = h.deliver(&body, &m.id, m.delivery_count).await;
        if status == 200 {
            queue.complete(token);
        } else {
            queue.abandon(token);
        }
        answers.push((status, line));
    }
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (status, line) in &answers {
        assert_eq!(*status, 500, "{line}");
        assert!(
            line.contains("max_queued") && line.contains("dead-letter"),
            "{line}"
        );
    }
    assert_eq!(queue.dead_letters()[0].message.id, message_id);
    let id = handler::spawn::derived_id(&message_id);
    assert!(
        h.running.app.tasks().get(&id).await.unwrap().is_none(),
        "nothing of a refused message is stored"
    );
    assert_eq!(runtime.creates(), 0);
    h.running.stop().await;
}

/// A task that fits the ACI standby pool's profile is started by a claim PUT; its context goes
/// in the container's `EDA_ASSIGNMENT` config map with the rest of its environment (a pooled
/// group's environment was fixed before the task existed), as the claim body the ARM stand-in
/// recorded shows.
#[tokio::test]
async fn a_standby_claim_carries_the_context_in_its_config_map() {
    use e2e::arm::{RG, SUB};
    use handler::runtime::aci::{AciConfig, AciRuntime, Standby};
    let arm = e2e::arm::stand_in(3600).await;
    let image = "myacr.azurecr.io/eda-worker:1";
    let profile = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroupProfiles/eda-worker");
    let pool = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/eda-pool");
    // The profile and the pool as infra/main.bicep makes them (through ARM), as in
    // `aci_standby.rs`.
    let http = reqwest::Client::new();
    let put = |id: &str, v: &str, body: Value| {
        http.put(format!("{}{id}?api-version={v}", arm.base))
            .json(&body)
            .send()
    };
    let r = put(
        &profile,
        "2025-09-01",
        json!({"location": "westeurope", "properties": {
        "containers": [{"name": "worker", "properties": {"image": image, "command": ["/worker"],
            "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}}}}],
        "osType": "Linux", "restartPolicy": "Never", "sku": "Standard"}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = put(
        &pool,
        "2025-03-01",
        json!({"location": "westeurope", "properties": {
        "elasticityProfile": {"maxReadyCapacity": 1, "refillPolicy": "always"},
        "containerGroupProperties": {"containerGroupProfile": {"id": profile, "revision": 1}}}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let cfg = AciConfig {
        standby: Some(Standby {
            pool: pool.clone(),
            profile: profile.clone(),
            revision: 1,
        }),
        ..e2e::arm::aci_config(&arm)
    };
    let credential = Arc::new(e2e::arm::StandInCredential::new(&arm.base));
    let runtime = Arc::new(AciRuntime::new(reqwest::Client::new(), cfg, credential));
    let h = harness(
        "standby",
        &["--image", image, "--cpu", "1", "--memory-mb", "1536"],
        runtime,
    )
    .await;
    let id = unique("warm");
    let env = json!({"id": id, "work": "echo warm", "priority": 2, "key": "tenant-w",
        "labels": {"team": "green"}})
    .to_string();
    let (status, r) = h
        .invoke(
            "ServiceBusTrigger",
            sb_enqueued(&env, "msg-warm", 1, "2026-11-30T10:00:00Z"),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let name = container_name(&TaskId::parse(&id).unwrap(), 1);
    let body = arm
        .world
        .lock()
        .unwrap()
        .seen
        .iter()
        .find(|s| s.method == "PUT" && s.path.ends_with(&format!("/containerGroups/{name}")))
        .map(|s| s.body.clone())
        .expect("a container group PUT");
    assert_eq!(
        body["properties"]["standbyPoolProfile"]["id"], pool,
        "a claim, not a cold create: {body}"
    );
    let text = body["properties"]["containers"][0]["properties"]["configMap"]["keyValuePairs"]
        [model::standby::ASSIGNMENT_KEY]
        .as_str()
        .expect("the assignment in the config map")
        .to_string();
    let assignment: model::standby::Assignment = serde_json::from_str(&text).unwrap();
    let vars: HashMap<String, String> = assignment.env.into_iter().collect();
    for (k, v) in [
        ("TASK_ID", id.as_str()),
        ("MESSAGE_ID", "msg-warm"),
        ("ENQUEUED_AT", "2026-11-30T10:00:00.000Z"),
        ("DELIVERY_COUNT", "1"),
        ("KEY", "tenant-w"),
        ("PRIORITY", "2"),
        ("LABEL_TEAM", "green"),
        ("ATTEMPT", "1"),
    ] {
        assert_eq!(vars.get(k).map(String::as_str), Some(v), "{k} in {vars:?}");
    }
    h.running.stop().await;
}

/// The Function App zip around this build's handler (a launcher script, as
/// `functions_host.rs` makes it: the debug binary is too large to deflate in a test).
fn function_app_zip(dir: &std::path::Path) -> std::path::PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let launcher = dir.join("handler-launcher");
    let script = format!(
        "#!/bin/sh\nexec '{}' \"$@\"\n",
        e2e::faults::handler_bin().display()
    );
    std::fs::write(&launcher, script).unwrap();
    let out = dir.join("functionapp.zip");
    appzip::write_zip(&repo, &launcher, None, &out).unwrap();
    out
}

/// The whole Azure path on a laptop (the host harness: function.json bindings, a peek-lock
/// queue dispatching up to `maxConcurrentCalls` deliveries at once, the timer; the handler
/// binary on SQLite and the process runtime): six tasks of two keys in one `POST /api/work`,
/// `EDA_KEY_CAP=1`. The racing deliveries must never run two tasks of one key at once (the
/// admission and the claim-then-check of the key's cap), every task ends `Done`, and no
/// message is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_deliveries_never_run_two_tasks_of_a_capped_key_at_once() {
    let worker = e2e::runtimes::musl_worker().to_path_buf();
    let dir = e2e::TempDir::new("shape-host");
    let zip = function_app_zip(&dir.0);
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let queue = unique("work-shape");
    let s: BTreeMap<String, String> = [
        ("EDA_STORE", "sqlite".to_string()),
        ("EDA_RUNTIME", "process".into()),
        ("EDA_DATA_DIR", dir.0.join("data").display().to_string()),
        ("EDA_WORKER_BIN", worker.display().to_string()),
        ("EDA_PUBLIC_URL", front_url.clone()),
        ("EDA_API_KEY", "k3y".into()),
        ("EDA_QUEUE_NAME", queue.clone()),
        ("EDA_RECONCILE_SCHEDULE", "*/1 * * * * *".into()),
        ("EDA_CONCURRENCY", "4".into()),
        ("EDA_KEY_CAP", "1".into()),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "sb.example".into(),
        ),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let host = e2e::host::Host::start(&zip, &dir.0.join("wwwroot"), s, front, 10, 1).await;
    let items: Vec<Value> = (0..6)
        .map(|n| json!({"work": format!("task {n}"), "key": if n % 2 == 0 { "alpha" } else { "beta" }}))
        .collect();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{front_url}/api/work"))
        .header("x-api-key", "k3y")
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let submitted: SubmitResponse = r.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let tasks = loop {
        let mut tasks = Vec::new();
        for t in &submitted.tasks {
            let r = http
                .get(format!("{front_url}/api/tasks/{}", t.id))
                .header("x-api-key", "k3y")
                .send()
                .await
                .unwrap();
            tasks.push(r.json::<Task>().await.unwrap());
        }
        if tasks.iter().all(|t| t.state.is_terminal()) {
            break tasks;
        }
        assert!(Instant::now() < deadline, "not all done: {tasks:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for t in &tasks {
        assert_eq!(t.state, TaskState::Done, "{t:#?}");
    }
    // Each task's run: from its last claim (`Provisioning`) to its end.
    let span = |t: &Task| {
        let start = t
            .transitions
            .iter()
            .rev()
            .find(|x| x.state == TaskState::Provisioning)
            .unwrap()
            .at_ms;
        (start, t.finished_at_ms.unwrap())
    };
    for key in ["alpha", "beta"] {
        let mut spans: Vec<(i64, i64)> = tasks
            .iter()
            .filter(|t| t.key.as_deref() == Some(key))
            .map(span)
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "two tasks of {key} ran at once: {spans:?}"
            );
        }
    }
    let all: Vec<(i64, i64)> = tasks.iter().map(span).collect();
    let overlap = all
        .iter()
        .map(|(s, _)| all.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(overlap >= 2, "the two keys ran side by side: {all:?}");
    assert!(host.queue(&queue).dead_letters().is_empty());
    let held = host
        .records_of("ServiceBusTrigger")
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .filter(|r| r.logs.iter().any(|l| l.contains("the key's cap is 1")))
        .count();
    eprintln!("deliveries held or given back at a key's cap: {held}");
    assert!(held > 0, "the burst met the key's cap");
}
