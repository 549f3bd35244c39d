//! The whole Azure path on this machine, with the Functions host played by the harness in
//! `e2e::host` (ported from azure-functions-host; see its docs) and every Azure dependency replaced
//! by a stand-in that speaks the documented protocol:
//!
//! - the Function App is the zip xtask writes (`xtask/src/appzip.rs`, the code behind
//!   `cargo xtask package`), around this build's handler; `EDA_FUNCTIONAPP_ZIP` points the test
//!   at a zip made by `cargo xtask package` instead; host.json and every function.json are read
//!   from it;
//! - ARM, Azure Monitor and the managed-identity endpoint: `e2e::arm` (the ACI runtime's
//!   requests go there through `azure_identity` and the real HTTP client);
//! - MongoDB / Cosmos DB: the wire-protocol stand-in (`tests/mongo-standin`);
//! - a container group's container: the stand-in only records the group, so
//!   `e2e::aci_containers` runs the real static worker binary (`EDA_WORKER_MUSL`) as the group's
//!   container, with the command and environment (secureValue included) of the PUT body, and
//!   reports its exit to the stand-in as ACI's `instanceView.currentState` would show it.
//!
//! It replaces the earlier `functions_process.rs`, whose checks (the `azure_identity` token
//! request and cache, the `secureValue`, the Azure Monitor sample) are kept here.
//!
//! Needs MongoDB (`EDA_TEST_MONGO_URI`, or the stand-in's Python modules): skipped loudly
//! without it, failed when `CI=true` (`e2e::need`). Runs the debug `handler` binary, which
//! `cargo test --workspace` (and `cargo xtask test`) builds; alone, run `cargo build -p handler`
//! first. The musl worker is `EDA_WORKER_MUSL`, or built once (`e2e::runtimes::musl_worker`).

#[allow(dead_code)]
#[path = "../../xtask/src/appzip.rs"]
mod appzip;

use e2e::aci_containers::Driver;
use e2e::arm::{stand_in, IDENTITY_SECRET, RG, SUB};
use e2e::{host, mongo, need, TempDir};
use handler::spawn::derived_id;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the tests that need MongoDB say when there is none.
const MONGO: &str = "a MongoDB server (EDA_TEST_MONGO_URI, or pymongo + mongomock for the stand-in; see tests/mongo-standin)";

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The Function App zip: `EDA_FUNCTIONAPP_ZIP`, or one written here by xtask's own zip code
/// around this build's handler binary.
fn function_app_zip(dir: &Path) -> PathBuf {
    if let Some(zip) = handler::config::env("EDA_FUNCTIONAPP_ZIP") {
        return PathBuf::from(zip);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The debug handler is hundreds of MB and the test profile's deflate is unoptimised, so the
    // zip's `handler` is a launcher that execs this build's binary with the same arguments,
    // environment and working directory.
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

/// The queue's `MaxDeliveryCount` as the deployment sets it (`param maxDeliveryCount` in
/// infra/main.bicep), else Service Bus' default of 10.
fn max_delivery_count() -> u32 {
    let bicep = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/main.bicep");
    std::fs::read_to_string(bicep)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("param maxDeliveryCount int = "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(10)
}

/// App settings as the Bicep template writes them, pointed at the stand-ins.
fn settings(
    arm: &str,
    mongo: &str,
    db: &str,
    front: &str,
    queue: &str,
) -> BTreeMap<String, String> {
    let pull = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull");
    [
        ("EDA_SUBSCRIPTION_ID", SUB.to_string()),
        ("EDA_RESOURCE_GROUP", RG.into()),
        ("EDA_LOCATION", "westeurope".into()),
        ("EDA_MONGO_URI", mongo.into()),
        ("EDA_MONGO_DB", db.into()),
        ("EDA_ARM_ENDPOINT", arm.into()),
        ("IDENTITY_ENDPOINT", format!("{arm}/identity")),
        ("IDENTITY_HEADER", IDENTITY_SECRET.into()),
        ("EDA_ACI_POLL_MS", "20".into()),
        ("EDA_IMAGE", "myacr.azurecr.io/eda-worker:1".into()),
        ("EDA_REGISTRY_SERVER", "myacr.azurecr.io".into()),
        ("EDA_REGISTRY_IDENTITY", pull),
        ("EDA_PUBLIC_URL", front.into()),
        ("EDA_API_KEY", "k3y".into()),
        ("EDA_QUEUE_NAME", queue.into()),
        ("EDA_RECONCILE_SCHEDULE", "*/1 * * * * *".into()),
        ("EDA_MAX_DELIVERIES", max_delivery_count().to_string()),
        ("EDA_CONCURRENCY", "4".into()),
        ("EDA_PENDING_RESEND_SECS", "30".into()),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "sb.example".into(),
        ),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http
        .get(url)
        .header("x-api-key", "k3y")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_path_runs_end_to_end_under_the_host_harness() {
    let Some((_mongo, mongo_uri)) = mongo::server() else {
        need(MONGO, false);
        return;
    };
    let worker = e2e::runtimes::musl_worker().to_path_buf();
    let dir = TempDir::new("e2e");
    let zip = function_app_zip(&dir.0);
    let arm = stand_in(3600).await;
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let queue = format!("work-{}", nanos());
    let db = format!("eda_host_{}", nanos());
    let s = settings(&arm.base, &mongo_uri, &db, &front_url, &queue);
    let root = dir.0.join("wwwroot");
    let host = host::Host::start(&zip, &root, s, front, max_delivery_count(), 1).await;

    // The app is what the zip says, and the handler started as the host starts it.
    let mut names: Vec<&str> = host.app.functions.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Dashboard",
            "HttpApi",
            "ReconcileTimer",
            "ServiceBusTrigger"
        ]
    );
    assert!(host.app.entries.contains(&"handler".to_string()));
    eprintln!(
        "custom handler answered {:?} after start",
        host.handler.started_in
    );
    assert!(
        host.handler.started_in < Duration::from_secs(30),
        "within InitializationTimeout"
    );

    // The store connects behind the listening handler; clients wait out its 503 + Retry-After.
    let http = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get_json(&http, &format!("{front_url}/api/tasks")).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < ready_by,
            "the store never connected: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A plain producer drops a message; a user enqueues one through the HttpApi function.
    let plain_id = format!("plain-{}", nanos());
    host.queue(&queue)
        .send(Some(plain_id.clone()), b"plain producer work".to_vec());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{front_url}/api/work"))
        .header("x-api-key", "k3y")
        .json(&json!({"work": "api work"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let submitted: Value = r.json().await.unwrap();
    let api_id = submitted["tasks"][0]["id"].as_str().unwrap().to_string();
    let plain_task = derived_id(&plain_id).to_string();
    // A message that can never become a task: redelivered until MaxDeliveryCount, then DLQ.
    host.queue(&queue)
        .send(Some(format!("poison-{}", nanos())), b"   ".to_vec());

    // Containers run the real worker; it reports through the front end and HttpApi; the timer
    // (every second, from the resolved %EDA_RECONCILE_SCHEDULE%) finishes and cleans up.
    let _containers = Driver::start(arm.world.clone(), worker);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut done = false;
    while Instant::now() < deadline {
        let mut states = Vec::new();
        for id in [&plain_task, &api_id] {
            let (status, t) = get_json(&http, &format!("{front_url}/api/tasks/{id}")).await;
            states.push(if status == 200 {
                t["state"].clone()
            } else {
                json!(null)
            });
        }
        let groups_left = arm.world.lock().unwrap().groups.len();
        if states.iter().all(|s| s == "Done")
            && groups_left == 0
            && host.queue(&queue).in_flight() == 0
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "not done in time; invocations: {:#?}",
        host.records
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
    );

    for id in [&plain_task, &api_id] {
        let (_, t) = get_json(&http, &format!("{front_url}/api/tasks/{id}")).await;
        assert_eq!(
            (t["state"].as_str(), t["attempt"].as_u64()),
            (Some("Done"), Some(1)),
            "{t}"
        );
        assert_eq!(t["exit_code"], 0, "{t}");
        // The reconciler captured the group's log through ARM (what the stand-in holds for it).
        let (status, logs) = get_json(&http, &format!("{front_url}/api/tasks/{id}/logs")).await;
        assert_eq!(status, 200, "{logs}");
        assert!(logs["text"].is_string(), "{logs}");
    }
    let (_, plain) = get_json(&http, &format!("{front_url}/api/tasks/{plain_task}")).await;
    assert_eq!(
        plain["work"], "plain producer work",
        "the message text, decoded once"
    );
    let (_, api) = get_json(&http, &format!("{front_url}/api/tasks/{api_id}")).await;
    assert_eq!(api["work"], "api work", "our envelope read as the envelope");

    // One container group per task, each PUT once (the worker's token as a secureValue, the
    // callback through the front end), and all of them deleted.
    {
        let w = arm.world.lock().unwrap();
        let puts: Vec<_> = w.seen.iter().filter(|s| s.method == "PUT").collect();
        assert_eq!(puts.len(), 2, "{puts:?}");
        for id in [&plain_task, &api_id] {
            let put = puts
                .iter()
                .find(|p| p.path.ends_with(&format!("/containerGroups/eda-{id}-1")))
                .unwrap_or_else(|| panic!("no PUT for {id}"));
            let env = put.body["properties"]["containers"][0]["properties"]["environmentVariables"]
                .as_array()
                .unwrap();
            let var = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
            assert_eq!(
                var("CALLBACK_URL")["value"],
                format!("{front_url}/api/tasks/{id}/state")
            );
            let token = var("TASK_TOKEN");
            assert!(token["secureValue"].is_string() && token.get("value").is_none());
        }
        assert!(w.groups.is_empty());

        // The ARM token comes from azure_identity's App Service credential, which read
        // IDENTITY_ENDPOINT/IDENTITY_HEADER from the environment the host gave the handler
        // (only that crate sends `Metadata: true`); its cache makes it one request for the run,
        // and that token is on every ARM call.
        let identity: Vec<_> = w.seen.iter().filter(|s| s.path == "/identity").collect();
        assert_eq!(
            identity.len(),
            1,
            "the crate caches the token: {identity:?}"
        );
        let t = identity[0];
        assert_eq!(
            (t.method.as_str(), t.query["api-version"].as_str()),
            ("GET", "2019-08-01")
        );
        assert_eq!(t.query["resource"], "https://management.azure.com/");
        assert_eq!(t.identity_header.as_deref(), Some(IDENTITY_SECRET));
        assert_eq!(
            t.metadata.as_deref(),
            Some("true"),
            "sent by azure_identity"
        );
        assert!(w
            .seen
            .iter()
            .all(|s| s.path == "/identity" || s.auth.as_deref() == Some("Bearer tok-1")));
    }

    // The timer sampled the running containers from Azure Monitor (the stand-in's series).
    let mut sampled = 0;
    for id in [&plain_task, &api_id] {
        let (_, m) = get_json(&http, &format!("{front_url}/api/tasks/{id}/metrics")).await;
        sampled += m["samples"].as_array().map_or(0, Vec::len);
    }
    assert!(sampled >= 1, "no Azure Monitor sample stored");

    // The poison message: delivered MaxDeliveryCount times, then dead-lettered by the broker.
    // Blank work can never be a task, so none was stored.
    let dlq = host.queue(&queue).dead_letters();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].reason, "MaxDeliveryCountExceeded");
    assert_eq!(dlq[0].message.delivery_count, max_delivery_count());
    let poison = derived_id(&dlq[0].message.id);
    let (status, _) = get_json(&http, &format!("{front_url}/api/tasks/{poison}")).await;
    assert_eq!(status, 404);

    // The state is in MongoDB: the two tasks, in the database the settings name.
    let client = mongodb::Client::with_uri_str(&mongo_uri).await.unwrap();
    let n = client
        .database(&db)
        .collection::<mongodb::bson::Document>("tasks")
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(n, 2);

    // The dashboard is served through the forwarded Dashboard function (a handler built before
    // `cargo xtask dashboard` answers its 503 "dashboard not built" page instead: still the
    // handler's dashboard service, reached by forwarding; CI builds the dashboard first).
    let r = http.get(format!("{front_url}/")).send().await.unwrap();
    let status = r.status().as_u16();
    let html = r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html");
    let body = r.text().await.unwrap();
    assert!(html, "{body}");
    if status == 503 && body.contains("dashboard not built") {
        need(
            "the dashboard built into this handler (cargo xtask dashboard)",
            false,
        );
    } else {
        assert_eq!(status, 200, "{body}");
    }

    // Every Service Bus invocation the host made got an answer it could read; the timer ran.
    let records = host.records.lock().unwrap().clone();
    let sb: Vec<_> = records
        .iter()
        .filter(|r| r.function == "ServiceBusTrigger")
        .collect();
    assert!(sb.iter().filter(|r| r.result.is_ok()).count() >= 2);
    assert_eq!(
        sb.iter().filter(|r| r.result.is_err()).count() as u32,
        max_delivery_count(),
        "only the poison message failed, once per delivery"
    );
    assert!(records
        .iter()
        .any(|r| r.function == "ReconcileTimer" && r.result.is_ok()));
    client.database(&db).drop().await.unwrap();
}

/// The global cap holds across scaled-out instances: two handler processes behind the harness
/// (invocations handed to each in turn) share the MongoDB store; with `EDA_CONCURRENCY=1` and
/// four messages dropped at once, the store never shows more than one task holding a container
/// group, ARM gets one PUT per task, and all four end Done, one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_holds_across_two_instances() {
    let Some((_mongo, mongo_uri)) = mongo::server() else {
        need(MONGO, false);
        return;
    };
    let worker = e2e::runtimes::musl_worker().to_path_buf();
    let dir = TempDir::new("cap");
    let zip = function_app_zip(&dir.0);
    let arm = stand_in(3600).await;
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let queue = format!("work-cap-{}", nanos());
    let db = format!("eda_cap_{}", nanos());
    let mut s = settings(&arm.base, &mongo_uri, &db, &front_url, &queue);
    s.insert("EDA_CONCURRENCY".into(), "1".into());
    s.insert("EDA_PENDING_RESEND_SECS".into(), "2".into());
    let host = host::Host::start(&zip, &dir.0.join("wwwroot"), s, front, 10, 2).await;
    assert_eq!(host.others.len(), 1);

    // Both instances have connected to the store once four calls in a row answer.
    let http = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 4 {
        let (status, body) = get_json(&http, &format!("{front_url}/api/tasks")).await;
        in_a_row = if status == 200 { in_a_row + 1 } else { 0 };
        assert!(
            Instant::now() < ready_by,
            "the store never connected: {body}"
        );
    }

    let ids: Vec<String> = (0..4)
        .map(|i| {
            let id = format!("cap-{i}-{}", nanos());
            host.queue(&queue)
                .send(Some(id.clone()), format!("capped work {i}").into_bytes());
            derived_id(&id).to_string()
        })
        .collect();
    let _containers = Driver::start(arm.world.clone(), worker);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, page) = get_json(&http, &format!("{front_url}/api/tasks?limit=1")).await;
        if page["counts"]["Done"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "not done in time: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let puts = arm
        .world
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.method == "PUT")
        .count();
    assert_eq!(puts, 4, "one container group per task");
    // Each task held its container group from its last claim (the `Provisioning` that was not
    // given back) to `Done`; at cap 1 those spans never overlap. A claim that was given back
    // shows in the timeline as `Provisioning` then `Pending`, with the check's reason.
    let mut spans = Vec::new();
    let mut given_back = 0;
    for id in &ids {
        let (_, t) = get_json(&http, &format!("{front_url}/api/tasks/{id}")).await;
        assert_eq!(
            (t["state"].as_str(), t["attempt"].as_u64()),
            (Some("Done"), Some(1)),
            "{t}"
        );
        let tl = t["transitions"].as_array().unwrap();
        let at = |i: usize| tl[i]["at_ms"].as_i64().unwrap();
        let claim = tl
            .iter()
            .rposition(|x| x["state"] == "Provisioning")
            .unwrap();
        let done = tl.iter().rposition(|x| x["state"] == "Done").unwrap();
        spans.push((at(claim), at(done)));
        given_back += tl
            .iter()
            .filter(|x| {
                x["state"] == "Pending"
                    && x["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("global cap"))
            })
            .count();
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "two container groups at once at cap 1: {spans:?}"
        );
    }
    eprintln!("4 tasks at cap 1 on 2 instances: {given_back} racing claims given back");
    assert!(host.queue(&queue).dead_letters().is_empty());
    let client = mongodb::Client::with_uri_str(&mongo_uri).await.unwrap();
    client.database(&db).drop().await.unwrap();
}

/// The handler listens before its store is reachable (the host gives it 30 s), and answers with
/// a clear error until then: the real binary, started by the harness from the zip, with a
/// MongoDB URI nothing answers on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_listens_before_its_store_is_reachable() {
    let dir = TempDir::new("lazy");
    let zip = function_app_zip(&dir.0);
    let arm = stand_in(3600).await;
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let dead = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300&connectTimeoutMS=300";
    let mut s = settings(&arm.base, dead, "eda_unused", &front_url, "work-lazy");
    s.insert("EDA_RECONCILE_SCHEDULE".into(), "0 */5 * * * *".into());
    let host = host::Host::start(&zip, &dir.0.join("wwwroot"), s, front, 10, 1).await;
    eprintln!(
        "listening {:?} after start with no store",
        host.handler.started_in
    );
    assert!(host.handler.started_in < Duration::from_secs(5));

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = http
            .post(format!("{front_url}/api/work"))
            .header("x-api-key", "k3y")
            .json(&json!({"work": "w"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
        let body: Value = r.json().await.unwrap();
        // The first answers may come before the first connection attempt failed.
        if !body["message"].as_str().unwrap().contains("first attempt") || Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["code"], "store_unavailable", "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(
        m.contains("not reachable yet") && m.contains("127.0.0.1:9"),
        "{m}"
    );
    assert_eq!(host.queue("work-lazy").in_flight(), 0, "nothing was queued");
}

/// The Functions path on a laptop (issue 10): the same zip, host and invocations, with the
/// store and the runtime chosen by configuration (`EDA_STORE=sqlite`, `EDA_RUNTIME=process`)
/// instead of Cosmos DB and ACI, so nothing of Azure is needed. A task enqueued through
/// `HttpApi` goes out through the output binding, comes back through `ServiceBusTrigger`, runs
/// as a real worker process whose reports come through the front end, and the timer settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_path_runs_on_sqlite_and_the_process_runtime() {
    let worker = e2e::worker_bin();
    on_a_laptop("process", &worker, &[]).await;
}

/// `handler functions --store sqlite --runtime docker`, as the README shows it: the worker
/// image is built from the static worker (a tag of this test's own, removed afterwards), the
/// task containers run on the host network to reach the front end, and the timer removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_path_runs_on_sqlite_and_docker() {
    if !need("a Docker Engine", e2e::docker_available()) {
        return;
    }
    let worker = e2e::worker_bin();
    let image = TestImage(format!("eda-fn-laptop:{}", nanos()));
    on_a_laptop("docker", &worker, &[("EDA_IMAGE", image.0.as_str())]).await;
}

/// A worker image tag of one test: removed on drop with any container left from it (a test that
/// failed half-way leaves the machine as it found it).
struct TestImage(String);

impl Drop for TestImage {
    fn drop(&mut self) {
        let ancestor = format!("ancestor={}", self.0);
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &ancestor])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Whether a container of that name exists.
fn docker_has(name: &str) -> bool {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^{name}$")])
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

/// Runs two tasks (one through the API, one from a plain producer) on the Functions path with
/// SQLite and `runtime`, until both are Done (and, on Docker, their containers removed).
async fn on_a_laptop(runtime: &str, worker: &Path, extra: &[(&str, &str)]) {
    let dir = TempDir::new("laptop");
    let zip = function_app_zip(&dir.0);
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let queue = format!("work-laptop-{}", nanos());
    let data = dir.0.join("data");
    // A completion webhook receiver: functions mode records and sends the events too.
    let hooks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hooks.clone();
    let receiver = actix_web::HttpServer::new(move || {
        let counted = counted.clone();
        actix_web::App::new().default_service(actix_web::web::to(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { actix_web::HttpResponse::NoContent().finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let hook_url = format!("http://127.0.0.1:{}/hook", receiver.addrs()[0].port());
    let receiver = receiver.run();
    let receiver_handle = receiver.handle();
    tokio::spawn(receiver);
    let mut s: BTreeMap<String, String> = [
        ("EDA_WEBHOOK_URLS", hook_url),
        ("EDA_STORE", "sqlite".to_string()),
        ("EDA_RUNTIME", runtime.into()),
        ("EDA_DATA_DIR", data.display().to_string()),
        ("EDA_WORKER_BIN", worker.display().to_string()),
        ("EDA_PUBLIC_URL", front_url.clone()),
        ("EDA_API_KEY", "k3y".into()),
        ("EDA_QUEUE_NAME", queue.clone()),
        ("EDA_RECONCILE_SCHEDULE", "*/1 * * * * *".into()),
        ("EDA_CONCURRENCY", "2".into()),
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "sb.example".into(),
        ),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        s.insert(k.to_string(), v.to_string());
    }
    let host = host::Host::start(&zip, &dir.0.join("wwwroot"), s, front, 10, 1).await;

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{front_url}/api/work"))
        .header("x-api-key", "k3y")
        .json(&json!({"work": "laptop work"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "SQLite answers at once");
    let submitted: Value = r.json().await.unwrap();
    let id = submitted["tasks"][0]["id"].as_str().unwrap().to_string();
    let plain_id = format!("plain-{}", nanos());
    host.queue(&queue)
        .send(Some(plain_id.clone()), b"plain laptop work".to_vec());
    let plain = derived_id(&plain_id).to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = 0;
        for t in [&id, &plain] {
            let (_, t) = get_json(&http, &format!("{front_url}/api/tasks/{t}")).await;
            done += usize::from(t["state"] == "Done");
        }
        if done == 2 && host.queue(&queue).in_flight() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done in time; invocations: {:#?}",
            host.records
                .lock()
                .unwrap()
                .iter()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in [&id, &plain] {
        let (_, t) = get_json(&http, &format!("{front_url}/api/tasks/{t}")).await;
        assert_eq!(
            (t["attempt"].as_u64(), t["exit_code"].as_i64()),
            (Some(1), Some(0)),
            "{t}"
        );
        let reported = t["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["state"] == "InProgress");
        assert!(reported, "the worker reported through HttpApi: {t}");
    }
    assert!(
        data.join("eda.db").is_file(),
        "the store is the SQLite file in EDA_DATA_DIR"
    );
    // Each task's end was POSTed once (the outbox is a table of the same SQLite file).
    for t in [&id, &plain] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, d) = get_json(&http, &format!("{front_url}/api/tasks/{t}/webhooks")).await;
            if d["deliveries"][0]["status"] == "delivered" {
                assert_eq!(d["deliveries"].as_array().unwrap().len(), 1, "{d}");
                break;
            }
            assert!(Instant::now() < deadline, "no webhook delivered: {d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(hooks.load(std::sync::atomic::Ordering::SeqCst), 2);
    receiver_handle.stop(false).await;
    let records = host.records.lock().unwrap().clone();
    assert!(
        records.iter().all(|r| r.result.is_ok()),
        "every invocation succeeded: {records:#?}"
    );
    assert!(host.queue(&queue).dead_letters().is_empty());
    if runtime == "docker" {
        // The timer removes every task container (after capturing its logs).
        let deadline = Instant::now() + Duration::from_secs(20);
        for t in [&id, &plain] {
            let name = format!("eda-{t}-1");
            while docker_has(&name) {
                assert!(Instant::now() < deadline, "{name} was never removed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Without the managed-identity variables App Service sets, the binary refuses to start and says
/// which ones (before it tries to reach MongoDB, so no server is needed here).
#[test]
fn the_handler_binary_refuses_to_start_without_a_managed_identity() {
    let out = Command::new(e2e::faults::handler_bin())
        .arg("functions")
        .env_clear()
        .envs([
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
            ("EDA_SUBSCRIPTION_ID", SUB),
            ("EDA_RESOURCE_GROUP", RG),
            ("EDA_LOCATION", "westeurope"),
            ("EDA_MONGO_URI", "mongodb://127.0.0.1:9/"),
            ("EDA_API_KEY", "k3y"),
            ("IDENTITY_HEADER", IDENTITY_SECRET),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no managed identity") && err.contains("IDENTITY_ENDPOINT"),
        "{err}"
    );
}

/// The harness's own rules against azure-functions-host's unit tests.
mod fixtures {
    use e2e::host::wire::*;
    use serde_json::json;

    /// test/WebJobs.Script.Tests/Workers/ScriptInvocationContextExtensionsTests.cs
    #[test]
    fn get_http_script_invocation_context_value() {
        // GetHttpScriptInvocationContextValueTest_String
        assert_eq!(
            encode(&HostValue::Text("stringTest".into())),
            json!("\"stringTest\"")
        );
        // GetHttpScriptInvocationContextValueTest_POCO
        let poco = json!({"Name": "TestName", "Id": 1234});
        assert_eq!(encode(&HostValue::Object(poco.clone())), poco);
        assert_eq!(
            encode(&HostValue::Bytes(b"hello".to_vec())),
            json!("aGVsbG8=")
        );
    }

    /// test/WebJobs.Script.Tests/HttpWorker/HttpScriptInvocationResultExtensionsTests.cs,
    /// GetHttpOutputBindingResponse_ReturnsExpected, then HttpBinding's reading of the object.
    #[test]
    fn http_output_binding_responses() {
        let status = |v: &str| http_output(&json!(v)).unwrap().status;
        assert_eq!(
            status("{\"statusCode\": \"204\"}"),
            200,
            "no body: not a response object"
        );
        assert_eq!(status("{\"body\": \"hello\", \"statusCode\":\"300\"}"), 300);
        let r = http_output(&json!(
            "{\"body\":\"foobar\",\"statusCode\":\"301\",\"headers\":{\"header1\":\"header1Value\"}}"
        ))
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (301, b"foobar".as_slice()));
        assert_eq!(
            r.headers,
            vec![("header1".to_string(), "header1Value".to_string())]
        );
        assert!(
            http_output(&json!("SomeBlah")).is_err(),
            "InvalidOperationException"
        );
        let ours = http_output(&json!({"statusCode": 202, "headers": {}, "body": "{}"})).unwrap();
        assert_eq!(ours.status, 202, "a number works as well as a string");
    }

    /// HttpWorkerTestUtilities.GetHttpScriptInvocationResultWithJsonRes and
    /// HttpScriptInvocationResultExtensionsTests.ToScripInvocationResultTests: `res` with
    /// statusCode "201" and body "my world", two log lines, the return value kept.
    #[test]
    fn invocation_results() {
        let outs = [OutBinding {
            name: "res".into(),
            kind: "http".into(),
            binary: false,
        }];
        let body = json!({"Logs": ["invocation log1", "invocation log2"],
            "Outputs": {"res": {"statusCode": "201", "body": "my world"}},
            "ReturnValue": "Hello return"});
        let r = read_result(200, body.to_string().as_bytes(), &outs).unwrap();
        assert_eq!(r.logs, ["invocation log1", "invocation log2"]);
        assert_eq!(r.return_value, Some(json!("Hello return")));
        let Some(Output::Http(res)) = r.outputs.get("res") else {
            panic!("{r:?}")
        };
        assert_eq!(
            (res.status, res.body.as_slice()),
            (201, b"my world".as_slice())
        );
        // Newtonsoft reads the property names case-insensitively.
        let lower = json!({"logs": ["l"], "outputs": {}, "returnValue": null});
        assert_eq!(
            read_result(200, lower.to_string().as_bytes(), &outs)
                .unwrap()
                .logs,
            ["l"]
        );
        // GetHttpScriptInvocationResult: a body that is not a result fails the invocation.
        assert!(read_result(200, b"TestMessage", &outs).is_err());
    }

    /// GetBindingValue + ReadAsEnumerable: what a Service Bus output binding sends.
    #[test]
    fn collector_outputs() {
        let msgs = |v| read_as_enumerable(&binding_value(false, &v));
        assert_eq!(
            msgs(json!(["{\"id\":\"a\"}", "b"])),
            vec![b"{\"id\":\"a\"}".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            msgs(json!("abcd")),
            vec![vec![0x69, 0xb7, 0x1d]],
            "valid base64 is decoded"
        );
        assert_eq!(
            msgs(json!("[\"x\",\"y\"]")),
            vec![b"x".to_vec(), b"y".to_vec()]
        );
        assert_eq!(msgs(json!("hello world")), vec![b"hello world".to_vec()]);
        assert!(
            read_result(500, b"{}", &[]).is_err(),
            "EnsureSuccessStatusCode"
        );
    }
}
