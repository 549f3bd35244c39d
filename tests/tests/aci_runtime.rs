//! The ACI runtime against a local stand-in for ARM, Azure Monitor and App Service's
//! managed-identity endpoint, over real HTTP. The stand-in speaks the documented protocol and
//! records every request, so each test checks method, path, api-version, headers and body.
//!
//! Every stand-in behaviour is cited in `tests/src/arm.rs` ([SPEC], [ASYNC], [STATES], ...); the
//! body check below lists the fields of the 2025-09-01 spec the group body may use.
//!
//! The token comes through the runtime's seam, an `azure_core` `TokenCredential`: here
//! `e2e::arm::StandInCredential` (uncached, so each ARM call shows the token it was given).
//! `azure_identity`'s own credential reads `IDENTITY_ENDPOINT` from the process environment, so
//! it is exercised, with its cache, by `functions_host.rs` on the real binary.

use e2e::arm::{
    print, runtime, runtime_with, set_state, stand_in, Seen, StandIn, StandInCredential,
    BICEP_ROLE_ACTIONS, IDENTITY_SECRET, RG, SUB,
};
use handler::runtime::aci::API_VERSION;
use handler::runtime::{ContainerRuntime, ContainerSpec, Created, Phase, RuntimeError};
use model::Resources;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "myacr.azurecr.io/eda-worker:1".into(),
        args: vec!["--seconds".into(), "5".into()],
        env: vec![
            ("MESSAGE".into(), "hello".into()),
            ("TASK_ID".into(), "t1".into()),
        ],
        secret_env: vec![("TASK_TOKEN".into(), "s3cret".into())],
        resources: Resources {
            cpu: 0.5,
            memory_mb: 1536,
        },
    }
}

fn seen(s: &StandIn) -> Vec<Seen> {
    s.world.lock().unwrap().seen.clone()
}

const GROUP_PATH: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ContainerInstance/containerGroups/eda-t1-1";

#[actix_web::test]
async fn create_is_one_put_polled_to_success_with_the_documented_body() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    assert_eq!(rt.create(&spec("eda-t1-1")).await.unwrap(), Created::New);

    let all = seen(&s);
    let token_req = &all[0];
    assert_eq!(
        (token_req.method.as_str(), token_req.path.as_str()),
        ("GET", "/identity")
    );
    assert_eq!(token_req.query["resource"], "https://management.azure.com/");
    assert_eq!(token_req.query["api-version"], "2019-08-01");
    assert_eq!(token_req.identity_header.as_deref(), Some(IDENTITY_SECRET));

    let arm: Vec<&Seen> = all.iter().filter(|r| r.path != "/identity").collect();
    let calls: Vec<(&str, &str)> = arm
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET", GROUP_PATH),
            ("PUT", GROUP_PATH),
            ("GET", "/ops/eda-t1-1"),
            ("GET", "/ops/eda-t1-1")
        ]
    );
    // Each ARM call carries the token the credential fetched just before it.
    let mut issued = 0;
    for r in &all {
        if r.path == "/identity" {
            issued += 1;
            continue;
        }
        let expected = format!("Bearer tok-{issued}");
        assert_eq!(r.auth, Some(expected), "{} {}", r.method, r.path);
    }
    for r in &arm[..2] {
        assert_eq!(r.query["api-version"], "2025-09-01");
    }
    assert_eq!(
        API_VERSION, "2025-09-01",
        "the newest stable version in the specs"
    );

    let body = &arm[1].body;
    assert_eq!(body["location"], "westeurope");
    let props = &body["properties"];
    assert_eq!(props["osType"], "Linux");
    assert_eq!(props["restartPolicy"], "Never");
    assert_eq!(
        props["imageRegistryCredentials"][0]["server"],
        "myacr.azurecr.io"
    );
    assert!(props["imageRegistryCredentials"][0]["identity"]
        .as_str()
        .unwrap()
        .ends_with("/userAssignedIdentities/pull"));
    assert!(props["imageRegistryCredentials"][0]
        .get("password")
        .is_none());
    assert_eq!(body["identity"]["type"], "UserAssigned");
    let c = &props["containers"][0];
    assert_eq!(c["name"], "eda-t1-1");
    assert_eq!(c["properties"]["image"], "myacr.azurecr.io/eda-worker:1");
    assert_eq!(
        c["properties"]["command"],
        json!(["/worker", "--seconds", "5"])
    );
    assert_eq!(
        c["properties"]["resources"]["requests"],
        json!({"cpu": 0.5, "memoryInGB": 1.5})
    );
    let env = c["properties"]["environmentVariables"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "MESSAGE", "value": "hello"})));
    assert!(env.contains(&json!({"name": "TASK_TOKEN", "secureValue": "s3cret"})));
    assert!(
        !env.iter()
            .any(|e| e["name"] == "TASK_TOKEN" && e.get("value").is_some()),
        "the token must only travel as a secureValue"
    );
}

/// Every field of the PUT body, as a path (`[]` for array items, `*` for map keys).
fn leaf_paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if at.ends_with("userAssignedIdentities") => {
            for (_, v) in m {
                leaf_paths(v, format!("{at}.*"), out);
            }
            if m.is_empty() {
                out.push(at);
            }
        }
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                leaf_paths(v, p, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| leaf_paths(v, format!("{at}[]"), out)),
        _ => out.push(at),
    }
}

/// Item 11: the body uses only fields that exist in the 2025-09-01 spec, with allowed enum values.
/// Source: azure-rest-api-specs
/// `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/2025-09-01/containerInstance.json`,
/// definitions `Resource` (location, tags), `ContainerGroupProperties` (identity, properties:
/// containers, imageRegistryCredentials, restartPolicy, osType), `ContainerGroupIdentity`
/// (type enum, userAssignedIdentities map of `UserAssignedIdentities`, all read-only: `{}`),
/// `Container` (name, properties), `ContainerProperties` (image, command,
/// environmentVariables, resources), `EnvironmentVariable` (name, value, secureValue),
/// `ResourceRequirements`/`ResourceRequests` (requests: cpu, memoryInGB), and
/// `ImageRegistryCredential` (server, identity).
#[actix_web::test]
async fn the_body_uses_only_fields_of_the_2025_09_01_spec() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    let body = serde_json::to_value(rt.group_body(&spec("eda-t1-1"))).unwrap();
    let allowed = [
        "location",
        "tags.eda",
        "identity.type",
        "identity.userAssignedIdentities.*",
        "properties.osType",
        "properties.restartPolicy",
        "properties.imageRegistryCredentials[].server",
        "properties.imageRegistryCredentials[].identity",
        "properties.containers[].name",
        "properties.containers[].properties.image",
        "properties.containers[].properties.command[]",
        "properties.containers[].properties.environmentVariables[].name",
        "properties.containers[].properties.environmentVariables[].value",
        "properties.containers[].properties.environmentVariables[].secureValue",
        "properties.containers[].properties.resources.requests.cpu",
        "properties.containers[].properties.resources.requests.memoryInGB",
    ];
    let mut paths = Vec::new();
    leaf_paths(&body, String::new(), &mut paths);
    for p in &paths {
        assert!(
            allowed.contains(&p.as_str()),
            "{p} is not in the 2025-09-01 spec: {body}"
        );
    }
    assert!(paths.len() >= 14, "{paths:?}");
    let props = &body["properties"];
    assert!(["Always", "OnFailure", "Never"].contains(&props["restartPolicy"].as_str().unwrap()));
    assert!(["Windows", "Linux"].contains(&props["osType"].as_str().unwrap()));
    let types = [
        "SystemAssigned",
        "UserAssigned",
        "SystemAssigned, UserAssigned",
        "None",
    ];
    assert!(types.contains(&body["identity"]["type"].as_str().unwrap()));
    assert!(body["tags"]["eda"].is_string(), "tags are a map of strings");
}

#[actix_web::test]
async fn re_create_finds_the_group_and_does_not_put_again() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    assert_eq!(
        rt.create(&spec("eda-t1-1")).await.unwrap(),
        Created::AlreadyExisted
    );
    let puts = seen(&s).iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 1);
}

#[actix_web::test]
async fn status_logs_metrics_list_kill_and_delete() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    assert_eq!(rt.status("eda-t1-1").await.unwrap(), None);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    assert_eq!(
        rt.status("eda-t1-1").await.unwrap().unwrap().phase,
        Phase::Running
    );

    let logs = rt.logs("eda-t1-1", 1 << 20).await.unwrap();
    assert_eq!(logs.text, "starting\nworking on it\ndone\n");
    assert!(!logs.truncated);
    let short = rt.logs("eda-t1-1", 5).await.unwrap();
    assert_eq!((short.text.as_str(), short.truncated), ("done\n", true));
    let log_req = seen(&s)
        .into_iter()
        .rfind(|r| r.path.ends_with("/logs"))
        .unwrap();
    assert_eq!(
        log_req.path,
        format!("{GROUP_PATH}/containers/eda-t1-1/logs")
    );
    assert!(log_req.query["tail"].parse::<u32>().unwrap() > 0);
    assert_eq!(log_req.query["timestamps"], "true");

    let sample = rt.sample("eda-t1-1").await.unwrap().unwrap();
    assert_eq!((sample.cpu_percent, sample.memory_bytes), (50.0, 2_097_152));
    let m = seen(&s)
        .into_iter()
        .rfind(|r| r.path.ends_with("/metrics"))
        .unwrap();
    assert_eq!(
        m.path,
        format!("{GROUP_PATH}/providers/Microsoft.Insights/metrics")
    );
    assert_eq!(m.query["api-version"], "2018-01-01");
    assert_eq!(m.query["metricnames"], "CpuUsage,MemoryUsage");
    assert_eq!(m.query["interval"], "PT1M");

    assert_eq!(rt.list().await.unwrap(), vec!["eda-t1-1".to_string()]);

    rt.kill("eda-t1-1").await.unwrap();
    let st = rt.status("eda-t1-1").await.unwrap().unwrap();
    assert_eq!(
        (st.phase, st.exit_code, st.detail.as_deref()),
        (Phase::Exited, None, Some("container group Stopped")),
        "a stopped group is over even without a container view"
    );

    rt.remove("eda-t1-1").await.unwrap();
    rt.remove("eda-t1-1").await.unwrap();
    assert_eq!(rt.status("eda-t1-1").await.unwrap(), None);
    let deletes = seen(&s)
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == GROUP_PATH)
        .count();
    assert_eq!(deletes, 2);
}

#[actix_web::test]
async fn throttling_is_transient_and_a_failed_pull_is_image_missing() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    {
        let mut w = s.world.lock().unwrap();
        w.throttle = true;
        w.retry_after_secs = 7;
    }
    let err = rt.create(&spec("eda-t1-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Throttled { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(7)),
        "ARM's Retry-After"
    );

    s.world.lock().unwrap().fail_op = Some("InaccessibleImage".into());
    let err = rt.create(&spec("eda-t2-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err:?}");
    let st = rt.status("eda-t2-1").await.unwrap().unwrap();
    assert_eq!(st.phase, Phase::Exited, "a failed group reads as exited");
}

#[actix_web::test]
async fn a_401_clears_the_credentials_cache_and_the_next_call_gets_a_new_token() {
    let s = stand_in(3600).await;
    let credential = Arc::new(StandInCredential::new(&s.base));
    let rt = runtime_with(&s, credential.clone());
    s.world.lock().unwrap().unauthorized = true;
    let err = rt.status("eda-x-1").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Rejected { .. }), "{err:?}");
    assert_eq!(credential.clears.load(Ordering::SeqCst), 1);
    assert_eq!(rt.status("eda-x-1").await.unwrap(), None);
    assert_eq!(credential.clears.load(Ordering::SeqCst), 1);
    let auths: Vec<Option<String>> = seen(&s)
        .into_iter()
        .filter(|r| r.path != "/identity")
        .map(|r| r.auth)
        .collect();
    assert_eq!(
        auths,
        vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]
    );
}

#[actix_web::test]
async fn an_unreachable_identity_endpoint_is_transient() {
    let s = stand_in(3600).await;
    let credential = Arc::new(StandInCredential {
        endpoint: "http://127.0.0.1:9/identity".into(),
        ..StandInCredential::new(&s.base)
    });
    let err = runtime_with(&s, credential)
        .status("eda-x-1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(seen(&s).is_empty(), "no ARM call without a token");
}

#[actix_web::test]
async fn an_unreadable_operation_falls_back_to_polling_the_group() {
    let s = stand_in(3600).await;
    s.world.lock().unwrap().op_forbidden = true;
    let rt = runtime(&s);
    assert_eq!(rt.create(&spec("eda-t1-1")).await.unwrap(), Created::New);
    let calls: Vec<(String, String)> = seen(&s)
        .into_iter()
        .filter(|r| r.path != "/identity")
        .map(|r| (r.method, r.path))
        .collect();
    let get = ("GET".to_string(), GROUP_PATH.to_string());
    assert_eq!(
        calls,
        vec![
            get.clone(),
            ("PUT".into(), GROUP_PATH.into()),
            ("GET".into(), "/ops/eda-t1-1".into()),
            get.clone(),
            get
        ]
    );
    let g = &s.world.lock().unwrap().groups["eda-t1-1"];
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");
}

/// Item 8 (ACI half): a regional quota reached is throttling, never poison.
#[actix_web::test]
async fn a_container_group_quota_reached_is_transient_throttling() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    s.world.lock().unwrap().quota_reached = true;
    let err = rt.create(&spec("eda-t1-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Throttled { .. }), "{err:?}");
    assert!(err.is_transient() && err.retry_after().is_some(), "{err:?}");
    assert!(
        err.to_string().contains("ContainerGroupQuotaReached"),
        "{err}"
    );
    s.world.lock().unwrap().quota_reached = false;
    assert_eq!(rt.create(&spec("eda-t1-1")).await.unwrap(), Created::New);
}

/// Item 4: 409 MissingSubscriptionRegistration gets its own reason, naming the fix.
#[actix_web::test]
async fn an_unregistered_provider_says_what_to_run() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    s.world.lock().unwrap().unregistered = true;
    let err = rt.create(&spec("eda-t1-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotSetUp { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("az provider register --namespace Microsoft.ContainerInstance")
            && text.contains("MissingSubscriptionRegistration"),
        "{text}"
    );
    assert!(err.is_transient(), "not the message's fault: never poison");
    assert_eq!(rt.registration_state().await.unwrap(), "NotRegistered");
    s.world.lock().unwrap().unregistered = false;
    assert_eq!(rt.registration_state().await.unwrap(), "Registered");
    let perms = rt.permissions().await.unwrap();
    assert_eq!(
        perms[0].0,
        BICEP_ROLE_ACTIONS
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    );
}

/// Item 3: a group that exited reads as exited from the group's state, and is then deleted.
#[actix_web::test]
async fn a_group_that_ran_to_its_end_reads_exited_with_its_code() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    set_state(
        &mut s.world.lock().unwrap(),
        "eda-t1-1",
        json!({"state": "Terminated", "exitCode": 3, "detailStatus": "Error"}),
    );
    let st = rt.status("eda-t1-1").await.unwrap().unwrap();
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(3)));
    assert_eq!(
        s.world.lock().unwrap().groups["eda-t1-1"]["properties"]["instanceView"]["state"],
        "Failed"
    );
    rt.remove("eda-t1-1").await.unwrap();
    assert_eq!(rt.status("eda-t1-1").await.unwrap(), None);
}

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i}")).collect()
}

fn lines_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Item 9: lines read while the container ran are kept when the source later holds only a
/// short tail; nothing was lost, so `truncated` is false.
#[actix_web::test]
async fn logs_captured_while_running_outlive_what_the_source_keeps() {
    let s = stand_in(3600).await;
    let rt = runtime(&s).with_log_capture(100, Duration::ZERO);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    let first = numbered(0, 30);
    let second = numbered(30, 60);
    print(&mut s.world.lock().unwrap(), "eda-t1-1", &lines_of(&first));
    assert_eq!(
        rt.status("eda-t1-1").await.unwrap().unwrap().phase,
        Phase::Running
    );
    print(&mut s.world.lock().unwrap(), "eda-t1-1", &lines_of(&second));
    rt.status("eda-t1-1").await.unwrap();
    {
        let mut w = s.world.lock().unwrap();
        w.log_retained_after_stop = Some(5);
    }
    rt.kill("eda-t1-1").await.unwrap();
    let logs = rt.logs("eda-t1-1", 1 << 20).await.unwrap();
    let expected: String = numbered(0, 60).iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(logs.text, expected);
    assert!(!logs.truncated);
}

/// Item 9: read only after exit, a log longer than one answer is reported cut.
#[actix_web::test]
async fn logs_read_only_after_exit_say_when_the_source_cut_them() {
    let s = stand_in(3600).await;
    let rt = runtime(&s).with_log_capture(10, Duration::ZERO);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    print(
        &mut s.world.lock().unwrap(),
        "eda-t1-1",
        &lines_of(&numbered(0, 30)),
    );
    rt.kill("eda-t1-1").await.unwrap();
    let logs = rt.logs("eda-t1-1", 1 << 20).await.unwrap();
    let expected: String = numbered(20, 30).iter().map(|l| format!("{l}\n")).collect();
    assert_eq!((logs.text, logs.truncated), (expected, true));
}

/// Item 9: more lines between two reads than one answer holds: the gap is reported.
#[actix_web::test]
async fn a_gap_between_two_reads_marks_the_logs_truncated() {
    let s = stand_in(3600).await;
    let rt = runtime(&s).with_log_capture(10, Duration::ZERO);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    print(
        &mut s.world.lock().unwrap(),
        "eda-t1-1",
        &lines_of(&numbered(0, 5)),
    );
    rt.status("eda-t1-1").await.unwrap();
    print(
        &mut s.world.lock().unwrap(),
        "eda-t1-1",
        &lines_of(&numbered(5, 40)),
    );
    rt.status("eda-t1-1").await.unwrap();
    set_state(
        &mut s.world.lock().unwrap(),
        "eda-t1-1",
        json!({"state": "Terminated", "exitCode": 0, "detailStatus": "Completed"}),
    );
    let logs = rt.logs("eda-t1-1", 1 << 20).await.unwrap();
    assert!(logs.truncated);
    assert!(logs.text.starts_with("line 0\nline 1\n") && logs.text.ends_with("line 39\n"));
    assert!(
        !logs.text.contains("line 20\n"),
        "lost in the gap: {}",
        logs.text
    );
}

/// A folder removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Item 3 through the reconciler: a task that runs past its timeout has its group stopped
/// (`POST .../stop`); the stopped group ([STATES]: `Stopped`, no container view left) reads as
/// over, its logs are kept, and it is DELETEd, so it stops counting against the quota.
#[actix_web::test]
async fn a_timed_out_task_has_its_group_stopped_then_logged_and_deleted() {
    use clap::Parser;
    use handler::config::{Cli, Command};
    use handler::spawn::{self, Delivery};
    use handler::store::sqlite::SqliteStore;
    use model::TaskState;

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = TempDir(std::env::temp_dir().join(format!("eda-aci-{}-{nanos}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let argv = [
        "handler",
        "functions",
        "--subscription-id",
        SUB,
        "--resource-group",
        RG,
        "--location",
        "westeurope",
        "--mongo-uri",
        "mongodb://unused",
        "--public-url",
        "https://app.example",
        "--api-key",
        "k3y",
        "--timeout-secs",
        "1",
        "--max-attempts",
        "1",
    ];
    let Some(Command::Functions(args)) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let s = stand_in(3600).await;
    let store = Arc::new(SqliteStore::open(&dir.0.join("eda.db")).unwrap());
    let app = handler::functions::assemble(args.settings().unwrap(), store, Arc::new(runtime(&s)));
    let d = Delivery {
        message_id: format!("m-{nanos}"),
        body: "work".into(),
        delivery_count: 1,
        enqueued_at_ms: None,
    };
    let id = match spawn::handle(&app, &d).await.unwrap() {
        spawn::Outcome::Started(id) => id,
        other => panic!("{other:?}"),
    };
    let name = app
        .tasks()
        .get(&id)
        .await
        .unwrap()
        .unwrap()
        .container
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.world.lock().unwrap().groups.contains_key(&name) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped group was never deleted"
        );
        handler::reconcile::sweep(&app).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task = app.tasks().get(&id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::TimedOut);
    let calls: Vec<(String, String)> = seen(&s)
        .into_iter()
        .filter(|r| r.path.ends_with(&name) || r.path.ends_with(&format!("{name}/stop")))
        .map(|r| (r.method, r.path))
        .collect();
    let stop = calls
        .iter()
        .position(|(m, p)| m == "POST" && p.ends_with("/stop"));
    let delete = calls.iter().position(|(m, _)| m == "DELETE");
    assert!(
        stop.is_some() && delete.is_some() && stop < delete,
        "{calls:?}"
    );
    let logs = app.tasks().logs(&id).await.unwrap().unwrap();
    assert_eq!(logs.text, "starting\nworking on it\ndone\n");
}
