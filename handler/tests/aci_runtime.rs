//! The ACI runtime against a local stand-in for ARM, Azure Monitor and App Service's
//! managed-identity endpoint, over real HTTP. The stand-in speaks the documented protocol and
//! records every request, so each test checks method, path, api-version, headers and body.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use handler::runtime::aci::{AciConfig, AciRuntime, ManagedIdentity};
use handler::runtime::{ContainerRuntime, ContainerSpec, Created, Phase, RuntimeError};
use model::Resources;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SUB: &str = "sub-1";
const RG: &str = "rg-1";
const IDENTITY_SECRET: &str = "identity-secret";

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    auth: Option<String>,
    identity_header: Option<String>,
    body: Value,
}

/// What the stand-in knows and how it should misbehave.
#[derive(Default)]
struct World {
    seen: Vec<Seen>,
    groups: HashMap<String, Value>,
    op_polls: HashMap<String, u32>,
    /// Answer 429 to the next ARM request.
    throttle: bool,
    /// The create operation ends Failed with this code.
    fail_op: Option<String>,
    /// The operation URL answers 403 (it is at subscription scope); the group itself finishes
    /// provisioning on its second read.
    op_forbidden: bool,
    /// Reads of a group while it was `Creating`.
    creating_reads: u32,
    /// Seconds the identity endpoint's tokens live.
    token_ttl: i64,
    tokens_issued: u32,
}

type Shared = Arc<Mutex<World>>;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn identity(req: HttpRequest, w: web::Data<Shared>) -> HttpResponse {
    let mut w = w.lock().unwrap();
    record(&mut w, &req, Value::Null);
    if header(&req, "x-identity-header").as_deref() != Some(IDENTITY_SECRET) {
        return HttpResponse::BadRequest().finish();
    }
    w.tokens_issued += 1;
    HttpResponse::Ok().json(json!({
        "access_token": format!("tok-{}", w.tokens_issued),
        "expires_on": (now_secs() + w.token_ttl).to_string(),
        "resource": "https://management.azure.com/",
        "token_type": "Bearer",
    }))
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn record(w: &mut World, req: &HttpRequest, body: Value) {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    w.seen.push(Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query,
        auth: header(req, "authorization"),
        identity_header: header(req, "x-identity-header"),
        body,
    });
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": {"code": "ResourceNotFound", "message": "not found"}}))
}

/// ARM and Azure Monitor: everything that is not the identity endpoint.
async fn arm(req: HttpRequest, body: web::Bytes, w: web::Data<Shared>) -> HttpResponse {
    let mut w = w.lock().unwrap();
    let json_body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&mut w, &req, json_body.clone());
    if std::mem::take(&mut w.throttle) {
        return HttpResponse::TooManyRequests()
            .json(json!({"error": {"code": "TooManyRequests", "message": "slow down"}}));
    }
    let path = req.path().to_string();
    if let Some(name) = path.strip_prefix("/ops/") {
        if w.op_forbidden {
            return HttpResponse::Forbidden()
                .json(json!({"error": {"code": "AuthorizationFailed", "message": "no"}}));
        }
        return poll_op(&mut w, name);
    }
    let prefix = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups"
    );
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found();
    };
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let method = req.method().as_str();
    match (method, parts.as_slice()) {
        ("GET", [""]) => {
            let value: Vec<Value> = w.groups.values().cloned().collect();
            HttpResponse::Ok().json(json!({ "value": value }))
        }
        ("GET", [name]) => {
            let creating = match w.groups.get(*name) {
                None => return not_found(),
                Some(g) => g["properties"]["provisioningState"] == "Creating",
            };
            if creating {
                w.creating_reads += 1;
                if w.creating_reads >= 2 {
                    w.groups.get_mut(*name).unwrap()["properties"]["provisioningState"] =
                        json!("Succeeded");
                }
            }
            HttpResponse::Ok().json(&w.groups[*name])
        }
        ("PUT", [name]) => {
            let mut g = json_body;
            g["name"] = json!(name);
            g["id"] = json!(format!("{prefix}/{name}"));
            g["properties"]["provisioningState"] = json!("Creating");
            w.groups.insert(name.to_string(), g.clone());
            let host = req.connection_info().host().to_string();
            HttpResponse::Created()
                .insert_header(("Azure-AsyncOperation", format!("http://{host}/ops/{name}")))
                .insert_header(("Retry-After", "0"))
                .json(g)
        }
        ("DELETE", [name]) => match w.groups.remove(*name) {
            Some(_) => HttpResponse::Accepted().finish(),
            None => HttpResponse::NoContent().finish(),
        },
        ("POST", [name, "stop"]) if w.groups.contains_key(*name) => {
            set_state(
                &mut w,
                name,
                json!({"state": "Terminated", "exitCode": 137, "detailStatus": "Killed"}),
            );
            HttpResponse::NoContent().finish()
        }
        ("GET", [name, "containers", _, "logs"]) if w.groups.contains_key(*name) => {
            HttpResponse::Ok().json(json!({"content": "starting\nworking on it\ndone\n"}))
        }
        ("GET", [name, "providers", "Microsoft.Insights", "metrics"])
            if w.groups.contains_key(*name) =>
        {
            HttpResponse::Ok().json(json!({"value": [
                {"name": {"value": "CpuUsage"}, "unit": "Count", "timeseries": [{"data": [
                    {"timeStamp": "2026-11-30T10:00:00Z", "average": 120.0},
                    {"timeStamp": "2026-11-30T10:01:00Z", "average": 500.0}]}]},
                {"name": {"value": "MemoryUsage"}, "unit": "Bytes", "timeseries": [{"data": [
                    {"timeStamp": "2026-11-30T10:01:00Z", "average": 2097152.0}]}]}]}))
        }
        _ => not_found(),
    }
}

fn set_state(w: &mut World, name: &str, state: Value) {
    if let Some(g) = w.groups.get_mut(name) {
        g["properties"]["containers"][0]["properties"]["instanceView"] =
            json!({ "currentState": state });
    }
}

/// The create operation: InProgress once, then Succeeded (or Failed when asked to).
fn poll_op(w: &mut World, name: &str) -> HttpResponse {
    let polls = w.op_polls.entry(name.to_string()).or_default();
    *polls += 1;
    if *polls == 1 {
        return HttpResponse::Ok().json(json!({"status": "InProgress"}));
    }
    if let Some(code) = w.fail_op.clone() {
        if let Some(g) = w.groups.get_mut(name) {
            g["properties"]["provisioningState"] = json!("Failed");
        }
        return HttpResponse::Ok()
            .json(json!({"status": "Failed", "error": {"code": code, "message": "cannot pull"}}));
    }
    if let Some(g) = w.groups.get_mut(name) {
        g["properties"]["provisioningState"] = json!("Succeeded");
    }
    set_state(w, name, json!({"state": "Running", "detailStatus": ""}));
    HttpResponse::Ok().json(json!({"status": "Succeeded"}))
}

struct StandIn {
    world: Shared,
    base: String,
    _server: actix_web::dev::ServerHandle,
}

async fn stand_in(token_ttl: i64) -> StandIn {
    let world: Shared = Arc::new(Mutex::new(World {
        token_ttl,
        ..World::default()
    }));
    let data = web::Data::new(world.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/identity", web::get().to(identity))
            .default_service(web::to(arm))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    StandIn {
        world,
        base: format!("http://{addr}"),
        _server: handle,
    }
}

fn runtime(s: &StandIn) -> AciRuntime {
    let http = reqwest::Client::new();
    let identity = ManagedIdentity::new(
        http.clone(),
        &format!("{}/identity", s.base),
        IDENTITY_SECRET,
        "https://management.azure.com/",
    );
    let cfg = AciConfig {
        arm_endpoint: s.base.clone(),
        arm_resource: "https://management.azure.com/".into(),
        subscription_id: SUB.into(),
        resource_group: RG.into(),
        location: "westeurope".into(),
        registry_server: Some("myacr.azurecr.io".into()),
        registry_identity: Some("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull".into()),
        entrypoint: "/worker".into(),
        poll: Duration::from_millis(20),
        create_wait: Duration::from_secs(10),
    };
    AciRuntime::new(http, cfg, identity)
}

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
    for r in &arm {
        assert_eq!(
            r.auth.as_deref(),
            Some("Bearer tok-1"),
            "{} {}",
            r.method,
            r.path
        );
    }
    for r in &arm[..2] {
        assert_eq!(r.query["api-version"], "2024-05-01-preview");
    }

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
    assert_eq!(
        s.world.lock().unwrap().tokens_issued,
        1,
        "the token is cached"
    );
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
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(137)));

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
    s.world.lock().unwrap().throttle = true;
    let err = rt.create(&spec("eda-t1-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());

    s.world.lock().unwrap().fail_op = Some("InaccessibleImage".into());
    let err = rt.create(&spec("eda-t2-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing(_)), "{err:?}");
    let st = rt.status("eda-t2-1").await.unwrap().unwrap();
    assert_eq!(st.phase, Phase::Exited, "a failed group reads as exited");
}

#[actix_web::test]
async fn a_token_near_expiry_is_renewed() {
    let s = stand_in(60).await;
    let rt = runtime(&s);
    rt.status("eda-x-1").await.unwrap();
    rt.status("eda-x-1").await.unwrap();
    assert_eq!(s.world.lock().unwrap().tokens_issued, 2);
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
