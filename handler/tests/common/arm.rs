//! A local stand-in for Azure Resource Manager, Azure Monitor and App Service's managed-identity
//! endpoint, speaking the documented protocols over real HTTP and recording every request.
//! Shared by the ACI runtime tests and the functions-mode process test.

#![allow(dead_code)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use azure_core::auth::{AccessToken, TokenCredential};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SUB: &str = "sub-1";
pub const RG: &str = "rg-1";
pub const IDENTITY_SECRET: &str = "identity-secret";

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub auth: Option<String>,
    pub identity_header: Option<String>,
    /// `Metadata: true`: sent by `azure_identity`'s managed-identity credential.
    pub metadata: Option<String>,
    pub body: Value,
}

/// What the stand-in knows and how it should misbehave.
#[derive(Default)]
pub struct World {
    pub seen: Vec<Seen>,
    pub groups: HashMap<String, Value>,
    pub op_polls: HashMap<String, u32>,
    /// Answer 429 to the next ARM request.
    pub throttle: bool,
    /// The create operation ends Failed with this code.
    pub fail_op: Option<String>,
    /// The operation URL answers 403 (it is at subscription scope); the group itself finishes
    /// provisioning on its second read.
    pub op_forbidden: bool,
    /// Reads of a group while it was `Creating`.
    pub creating_reads: u32,
    /// Seconds the identity endpoint's tokens live.
    pub token_ttl: i64,
    pub tokens_issued: u32,
    /// Answer 401 to the next ARM request (a revoked token).
    pub unauthorized: bool,
}

pub type Shared = Arc<Mutex<World>>;

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub async fn identity(req: HttpRequest, w: web::Data<Shared>) -> HttpResponse {
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

pub fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub fn record(w: &mut World, req: &HttpRequest, body: Value) {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    w.seen.push(Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query,
        auth: header(req, "authorization"),
        identity_header: header(req, "x-identity-header"),
        metadata: header(req, "metadata"),
        body,
    });
}

pub fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": {"code": "ResourceNotFound", "message": "not found"}}))
}

/// ARM and Azure Monitor: everything that is not the identity endpoint.
pub async fn arm(req: HttpRequest, body: web::Bytes, w: web::Data<Shared>) -> HttpResponse {
    let mut w = w.lock().unwrap();
    let json_body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&mut w, &req, json_body.clone());
    if std::mem::take(&mut w.unauthorized) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}));
    }
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

pub fn set_state(w: &mut World, name: &str, state: Value) {
    if let Some(g) = w.groups.get_mut(name) {
        g["properties"]["containers"][0]["properties"]["instanceView"] =
            json!({ "currentState": state });
    }
}

/// The create operation: InProgress once, then Succeeded (or Failed when asked to).
pub fn poll_op(w: &mut World, name: &str) -> HttpResponse {
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

pub struct StandIn {
    pub world: Shared,
    pub base: String,
    pub _server: actix_web::dev::ServerHandle,
}

pub async fn stand_in(token_ttl: i64) -> StandIn {
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

/// The in-process tests' [`TokenCredential`]: App Service's protocol against the stand-in's
/// `/identity`, without a cache, so every ARM call shows which token the runtime asked for.
/// (`azure_identity`'s own credential reads its endpoint from the process environment; the
/// process test runs the real binary with it.) Counts `clear_cache` calls.
#[derive(Debug)]
pub struct StandInCredential {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub clears: std::sync::atomic::AtomicU32,
}

impl StandInCredential {
    pub fn new(base: &str) -> Self {
        StandInCredential {
            http: reqwest::Client::new(),
            endpoint: format!("{base}/identity"),
            clears: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for StandInCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let other = |e: reqwest::Error| azure_core::Error::new(azure_core::error::ErrorKind::Io, e);
        let body: Value = self
            .http
            .get(&self.endpoint)
            .query(&[("api-version", "2019-08-01"), ("resource", scopes[0])])
            .header("X-IDENTITY-HEADER", IDENTITY_SECRET)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(other)?
            .json()
            .await
            .map_err(other)?;
        let expires: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
        Ok(AccessToken::new(
            body["access_token"].as_str().unwrap().to_string(),
            time::OffsetDateTime::from_unix_timestamp(expires).unwrap(),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.clears
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
