//! The real `handler functions` binary, started the way the Functions host starts it (settings
//! in the environment, `FUNCTIONS_CUSTOMHANDLER_PORT`), with every Azure dependency replaced by
//! a local stand-in: ARM, Azure Monitor and the managed-identity endpoint (`common::arm`) and
//! MongoDB (`tests/mongo-standin`, mongomock behind the wire protocol). One task goes the whole
//! Azure path: HttpApi enqueue -> ServiceBusTrigger spawn (ACI PUT) -> worker report through
//! HttpApi with its token -> ReconcileTimer sample, exit, logs, delete.
//!
//! The ARM token comes from `azure_identity`'s `AppServiceManagedIdentityCredential`, which
//! reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the child's environment itself: the test
//! checks the request the crate made (it alone sends `Metadata: true`), that its token reached
//! ARM, and that the crate's cache made it the only token request of the whole run.
//!
//! Needs MongoDB: `EDA_TEST_MONGO_URI` (CI sets it to the stand-in), or the stand-in's Python
//! modules (`pymongo`, `mongomock`) to start one; skipped loudly without either.

mod common;

use common::arm::{set_state, stand_in, IDENTITY_SECRET, RG, SUB};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The handler process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`, or fails after `limit`.
async fn wait_listening(port: u16, child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("handler functions exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "handler did not listen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Host {
    http: reqwest::Client,
    base: String,
}

impl Host {
    /// POSTs an invocation like the Functions host does.
    async fn invoke(&self, function: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/{function}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// An HttpApi invocation; returns `Outputs`.
    async fn api(&self, method: &str, path: &str, auth: &str, body: Option<Value>) -> Value {
        let req = json!({
            "Url": format!("https://app.example{path}"),
            "Method": method,
            "Headers": {"Authorization": [auth], "Content-Type": ["application/json"]},
            "Body": body.map(|b| b.to_string()),
        });
        let (status, r) = self
            .invoke("HttpApi", json!({"Data": {"req": req}, "Metadata": {}}))
            .await;
        assert_eq!(status, 200, "{r}");
        r["Outputs"].clone()
    }
}

fn body(outputs: &Value) -> Value {
    serde_json::from_str(outputs["res"]["body"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_binary_runs_the_azure_path_against_stand_ins() {
    let Some((_stand_in, mongo_uri)) = common::mongo::server() else {
        eprintln!(
            "SKIPPED: no MongoDB (set EDA_TEST_MONGO_URI, or install pymongo + mongomock; see tests/mongo-standin)"
        );
        return;
    };
    let arm = stand_in(3600).await;
    let port = free_port();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pull = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("functions")
        .env_clear()
        .envs([
            ("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
            ("EDA_SUBSCRIPTION_ID", SUB.into()),
            ("EDA_RESOURCE_GROUP", RG.into()),
            ("EDA_LOCATION", "westeurope".into()),
            ("EDA_MONGO_URI", mongo_uri.clone()),
            ("EDA_MONGO_DB", format!("eda_proc_{nanos}")),
            ("EDA_ARM_ENDPOINT", arm.base.clone()),
            ("IDENTITY_ENDPOINT", format!("{}/identity", arm.base)),
            ("IDENTITY_HEADER", IDENTITY_SECRET.into()),
            ("EDA_ACI_POLL_MS", "20".into()),
            ("EDA_IMAGE", "myacr.azurecr.io/eda-worker:1".into()),
            ("EDA_REGISTRY_SERVER", "myacr.azurecr.io".into()),
            ("EDA_REGISTRY_IDENTITY", pull),
            ("WEBSITE_HOSTNAME", "app.example".into()),
            ("EDA_API_KEY", "k3y".into()),
            ("RUST_LOG", "warn".into()),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, Duration::from_secs(30)).await;
    let _proc = Proc(child);
    let host = Host {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };

    // Enqueue through HttpApi: the envelope comes back as the Service Bus output.
    let out = host
        .api(
            "POST",
            "/api/work",
            "Bearer k3y",
            Some(json!({"work": "w1"})),
        )
        .await;
    assert_eq!(out["res"]["statusCode"], 202, "{out}");
    let id = body(&out)["tasks"][0]["id"].as_str().unwrap().to_string();
    let envelope = out["message"][0].clone();

    // Service Bus delivers it: one container group is PUT, with the token as a secureValue.
    let sb = json!({"Data": {"message": envelope}, "Metadata": {"MessageId": "m-1", "DeliveryCount": 1}});
    let (status, r) = host.invoke("ServiceBusTrigger", sb).await;
    assert_eq!(status, 200, "{r}");
    let name = format!("eda-{id}-1");
    let put = {
        let w = arm.world.lock().unwrap();
        let puts: Vec<_> = w
            .seen
            .iter()
            .filter(|s| s.method == "PUT")
            .cloned()
            .collect();
        assert_eq!(puts.len(), 1);
        puts[0].clone()
    };
    assert!(put.path.ends_with(&format!("/containerGroups/{name}")));
    assert_eq!(put.auth.as_deref(), Some("Bearer tok-1"));
    let env = put.body["properties"]["containers"][0]["properties"]["environmentVariables"]
        .as_array()
        .unwrap()
        .clone();
    let var = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
    assert_eq!(
        var("CALLBACK_URL")["value"],
        format!("https://app.example/api/tasks/{id}/state")
    );
    let token = var("TASK_TOKEN")["secureValue"]
        .as_str()
        .unwrap()
        .to_string();

    // The worker reports through HttpApi with its token (the API key is not needed there).
    let out = host
        .api(
            "POST",
            &format!("/api/tasks/{id}/state"),
            &format!("Bearer {token}"),
            Some(json!({"state": "InProgress", "container": name})),
        )
        .await;
    assert_eq!(out["res"]["statusCode"], 204, "{out}");
    let wrong = host
        .api(
            "POST",
            &format!("/api/tasks/{id}/state"),
            "Bearer not-the-token",
            Some(json!({"state": "Done", "exit_code": 0})),
        )
        .await;
    assert_eq!(wrong["res"]["statusCode"], 403, "{wrong}");

    // The timer samples the running container from Azure Monitor.
    let timer = json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}});
    let (status, r) = host.invoke("ReconcileTimer", timer.clone()).await;
    assert_eq!(status, 200, "{r}");
    let out = host
        .api(
            "GET",
            &format!("/api/tasks/{id}/metrics"),
            "Bearer k3y",
            None,
        )
        .await;
    assert_eq!(body(&out)["samples"][0]["cpu_percent"], 50.0, "{out}");

    // The container exits 0; the timer finishes the task, keeps its logs, deletes the group.
    set_state(
        &mut arm.world.lock().unwrap(),
        &name,
        json!({"state": "Terminated", "exitCode": 0, "detailStatus": "Completed"}),
    );
    let (status, r) = host.invoke("ReconcileTimer", timer).await;
    assert_eq!(status, 200, "{r}");
    let task = body(
        &host
            .api("GET", &format!("/api/tasks/{id}"), "Bearer k3y", None)
            .await,
    );
    assert_eq!(task["state"], "Done", "{task}");
    let logs = body(
        &host
            .api("GET", &format!("/api/tasks/{id}/logs"), "Bearer k3y", None)
            .await,
    );
    assert_eq!(logs["text"], "starting\nworking on it\ndone\n");
    let w = arm.world.lock().unwrap();
    assert!(
        !w.groups.contains_key(&name),
        "the container group was deleted"
    );
    assert!(w
        .seen
        .iter()
        .all(|s| s.path == "/identity" || s.auth.as_deref() == Some("Bearer tok-1")));

    // The token request is azure_identity's, made from the environment the host gives.
    let identity: Vec<_> = w.seen.iter().filter(|s| s.path == "/identity").collect();
    assert_eq!(
        identity.len(),
        1,
        "the crate caches the token: {identity:?}"
    );
    let t = identity[0];
    assert_eq!(t.method, "GET");
    assert_eq!(t.query["api-version"], "2019-08-01");
    assert_eq!(t.query["resource"], "https://management.azure.com/");
    assert_eq!(t.identity_header.as_deref(), Some(IDENTITY_SECRET));
    assert_eq!(
        t.metadata.as_deref(),
        Some("true"),
        "sent by azure_identity"
    );
    assert_eq!(w.tokens_issued, 1);
    let arm_calls = w.seen.iter().filter(|s| s.path != "/identity").count();
    assert!(
        arm_calls >= 5,
        "ARM saw the token on every call: {arm_calls}"
    );
}

/// Without the managed-identity variables App Service sets, the binary refuses to start and says
/// which ones (before it tries to reach MongoDB, so no server is needed here).
#[test]
fn the_handler_binary_refuses_to_start_without_a_managed_identity() {
    let out = Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("functions")
        .env_clear()
        .envs([
            ("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string()),
            ("EDA_SUBSCRIPTION_ID", SUB.to_string()),
            ("EDA_RESOURCE_GROUP", RG.to_string()),
            ("EDA_LOCATION", "westeurope".to_string()),
            ("EDA_MONGO_URI", "mongodb://127.0.0.1:9/".to_string()),
            ("EDA_API_KEY", "k3y".to_string()),
            ("IDENTITY_HEADER", IDENTITY_SECRET.to_string()),
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
